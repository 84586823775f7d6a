"""Activation patching (tada.localize): scores, impacts, resume, artifact, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import FAMILIES, FAST, random_vector, run_cli, xattn_aliases

from tada.errors import ArtifactError, TadaError
from tada.interventions import Capture, Replace
from tada.localize import ImpactTable, _block_plan, localize, output_sites, plot_impacts
from tada.patching import columns_for
from tada.schedules import Window

PAIRS = [("a calm piano piece", "a loud drum solo"), ("gentle violin music", "heavy metal guitar")]


class LoudnessScorer:
    """A stand-in scorer: the clip's RMS, for any text (deterministic in the audio)."""

    def similarity(self, clips, sr, texts):
        texts = [texts] if isinstance(texts, str) else list(texts)
        rms = torch.tensor([float(np.sqrt(np.mean(np.square(c)))) for c in clips], dtype=torch.float64)
        return rms[:, None].repeat(1, len(texts))


def _score(model, prompts, seeds, plan=None):
    with model.engine.add(plan or {}):
        audio = model.generate(prompts, seed=seeds, **FAST)
    return LoudnessScorer().similarity(list(audio.samples), audio.sample_rate, "x")[:, 0]


@pytest.mark.parametrize("family", FAMILIES)
def test_scores_are_those_of_the_clean_corrupted_and_patched_runs(family, tiny_models):
    model = tiny_models(family)
    # one column per denoising batch: every patched run is exactly the run that patches one site
    table = localize(model, PAIRS, "probe", LoudnessScorer(), seed=5, max_rows=len(PAIRS), progress=False, **FAST)
    inputs = [s for s in model.sites.values() if s.kind == "xattn_in"]
    assert table.sites == [s.alias for s in inputs] and table.patched.shape == (2, len(inputs))
    clean, corrupt = [p for p, _ in PAIRS], [q for _, q in PAIRS]
    assert torch.equal(table.clean, _score(model, clean, [5, 6]))
    assert torch.equal(table.corrupt, _score(model, corrupt, [5, 6]))
    site = inputs[-1]
    cache = Capture(rows="both", reduce="full")
    _score(model, clean, [5, 6], {site: cache})
    assert torch.equal(table.patched[:, -1], _score(model, corrupt, [5, 6], {site: Replace(cache, rows="both")}))
    expected = (table.patched.mean(0) - table.corrupt.mean()) / (table.clean.mean() - table.corrupt.mean())
    torch.testing.assert_close(table.impact, expected)
    assert table.ranked()[0][1] == float(table.impact.max()) and len(table.top(2)) == 2


# AudioLDM2's tiny model takes about 40 s here; the same property on the other families stays in the default run
@pytest.mark.parametrize(
    "family", [pytest.param(f, marks=pytest.mark.slow) if f == "audioldm2" else f for f in FAMILIES]
)
def test_batched_sweep_scores_equal_site_by_site(family, tiny_models):
    # rows = columns x pairs in one denoising batch: a clip depends on its batch only at float32 rounding
    # (MKL and oneDNN choose GEMM and convolution kernels by batch size; on AVX-512 CPUs a batch of one, or of
    # more rows, sums in another order), so a column's scores are those of the run that patches it alone
    model = tiny_models(family)
    kwargs = {"modes": ("input", "output", "ablate"), "seed": 2, "progress": False, **FAST}
    alone = localize(model, PAIRS, "probe", LoudnessScorer(), max_rows=len(PAIRS), **kwargs)
    batched = localize(model, PAIRS, "probe", LoudnessScorer(), max_rows=64, **kwargs)
    assert batched.patched.shape == (2, 3 * len(xattn_aliases(model)))
    assert torch.equal(batched.clean, alone.clean) and torch.equal(batched.corrupt, alone.corrupt)
    # tada-mini's clips (MiniLM text states, DiT, convolutional decoder, 32 Griffin-Lim iterations) carry that
    # rounding to up to 5e-6 of the RMS on an AVX-512 CPU (measured). Some columns of this tiny random model score
    # as close to each other, so the block layout itself is checked bitwise, in
    # test_one_batch_of_columns_gives_each_block_its_own_columns_activation
    rtol = 5e-5 if family == "tada-mini" else 1e-6
    torch.testing.assert_close(batched.patched, alone.patched, rtol=rtol, atol=1e-9)


@pytest.mark.parametrize("family", FAMILIES)
def test_patching_with_the_corrupted_runs_own_activations_is_the_corrupted_run(family, tiny_models):
    model = tiny_models(family)
    corrupt = [q for _, q in PAIRS]
    columns = columns_for(model, ("input", "output"))
    captures = {model.site(name): Capture(rows="both", reduce="full") for c in columns for name in c.sites}
    with model.engine.add(captures):
        model.generate(corrupt, seed=[4, 5], **FAST)
    plain = model.generate(corrupt, seed=[4, 5], **FAST).samples
    for column in columns:  # each column alone, in a batch the size of the run it was captured from
        with model.engine.add(_block_plan(model, [column], captures, len(PAIRS))):
            assert np.array_equal(model.generate(corrupt, seed=[4, 5], **FAST).samples, plain), column.label


@pytest.mark.parametrize("family", FAMILIES)
def test_one_batch_of_columns_gives_each_block_its_own_columns_activation(family, tiny_models):
    # numerics aside (a clip's rounding may depend on its batch), the patched site of block b reads exactly the
    # clean run's activation, every step, and no other block reads it there
    model = tiny_models(family)
    clean, corrupt = [p for p, _ in PAIRS], [q for _, q in PAIRS]
    columns = columns_for(model, ("input",))
    captures = {model.site(name): Capture(rows="both", reduce="full") for c in columns for name in c.sites}
    sources = {site: Capture(rows="cond", reduce="full") for site in captures}
    with model.engine.add(captures), model.engine.add(sources):
        model.generate(clean, seed=[4, 5], **FAST)
    seen = {site: Capture(rows="cond", reduce="full") for site in captures}  # installed after the patch
    with model.engine.add(_block_plan(model, columns, captures, len(PAIRS))), model.engine.add(seen):
        model.generate(corrupt * len(columns), seed=[4, 5] * len(columns), **FAST)
    n = len(PAIRS)
    for block, column in enumerate(columns):
        site = model.site(column.sites[0])
        assert sorted(seen[site].records) == sorted(sources[site].records)
        for step, source in sources[site].records.items():
            rows = seen[site].records[step]
            assert rows.shape[0] == n * len(columns)
            for other in range(len(columns)):
                same = torch.equal(rows[other * n : (other + 1) * n], source)
                assert same == (other == block), (column.label, step, other)


@pytest.mark.parametrize("family", FAMILIES)
def test_patching_every_input_with_the_clean_one_is_the_clean_run(family, tiny_models):
    model = tiny_models(family)
    # one column per denoising batch, the clean run's size: bitwise, whatever the CPU's kernels
    table = localize(
        model,
        PAIRS,
        "probe",
        LoudnessScorer(),
        groups=[["all"]],
        modes=("input", "output"),
        max_rows=len(PAIRS),
        progress=False,
        **FAST,
    )
    assert table.sites[0] == "+".join(s.alias for s in model.sites.values() if s.kind == "xattn_in")
    assert torch.equal(table.patched[:, 0], table.clean) and torch.equal(table.patched[:, 1], table.clean)
    assert table.impact.tolist() == [1.0, 1.0]


def test_ablation_and_windows_are_the_runs_they_name(tiny_models):
    model = tiny_models("tada-mini")
    table = localize(
        model,
        PAIRS,
        "probe",
        LoudnessScorer(),
        sites="xattn.1",
        modes=("input", "ablate"),
        windows=[(0.0, 1.0), (0.0, 0.5)],
        seed=7,
        max_rows=len(PAIRS),  # each column in a batch of the size _score runs
        progress=False,
        **FAST,
    )
    assert [c.label for c in table.columns] == [
        "input:xattn_in.1",
        "input:xattn_in.1@0-0.5",
        "ablate:xattn.1",
        "ablate:xattn.1@0-0.5",
    ]
    clean, corrupt = [p for p, _ in PAIRS], [q for _, q in PAIRS]
    site_in, site_out = model.site("xattn_in.1"), model.site("xattn.1")
    cache = Capture(rows="both", reduce="full")
    _score(model, clean, [7, 8], {site_in: cache})
    half = Window(0.0, 0.5)
    assert torch.equal(table.patched[:, 1], _score(model, corrupt, [7, 8], {site_in: Replace(cache, "both", half)}))
    zero = Replace(torch.zeros(0), rows="both")
    zero.edit = lambda act, rows, gain, ctx: torch.zeros_like(act)  # the layer's output set to zero
    assert torch.equal(table.patched[:, 2], _score(model, clean, [7, 8], {site_out: zero}))
    zero.schedule = half
    assert torch.equal(table.patched[:, 3], _score(model, clean, [7, 8], {site_out: zero}))
    # ablation's impact is the share of the contrast it removes
    removed = (table.clean.mean() - table.patched[:, 2].mean()) / table.contrast
    assert float(table.impact[2]) == pytest.approx(float(removed))


def test_seeds_give_each_pair_its_own_noise(tiny_models):
    model = tiny_models("tada-mini")
    table = localize(model, PAIRS, "probe", LoudnessScorer(), seeds=2, seed=3, progress=False, **FAST)
    assert table.units.tolist() == [[0, 0], [1, 0], [0, 1], [1, 1]]
    clean = [p for p, _ in PAIRS] * 2
    assert torch.equal(table.clean, _score(model, clean, [3, 4, 5, 6]))
    assert table.settings["seeds"] == 2


def test_patching_every_layer_restores_the_clean_run(tiny_models):
    # the text reaches the model only through these inputs: all of them clean is the clean run
    model = tiny_models("tada-mini")
    inputs = [s for s in model.sites.values() if s.kind == "xattn_in"]
    caches = {s: Capture(rows="both", reduce="full") for s in inputs}
    with model.engine.add(caches):
        clean = model.generate("a calm piano piece", seed=3, **FAST).samples
    with model.engine.add({s: Replace(c, rows="both") for s, c in caches.items()}):
        patched = model.generate("a loud drum solo", seed=3, **FAST).samples
    assert np.array_equal(patched, clean)


@pytest.mark.parametrize("family", FAMILIES)
def test_localisation_resumes_after_a_kill(family, tiny_models, tmp_path, monkeypatch):
    model = tiny_models(family)
    pairs = PAIRS * 2
    layers = xattn_aliases(model)[:2]
    job = {"batch_pairs": 2, "modes": ("input", "ablate"), "sites": layers, "progress": False, **FAST}
    whole = localize(model, pairs, "probe", LoudnessScorer(), **job)
    import tada.runs

    saves, original = [], tada.runs.UnitStore.save

    def dying_save(self, key, tensors):
        if saves:
            raise KeyboardInterrupt
        saves.append(key)
        original(self, key, tensors)

    monkeypatch.setattr(tada.runs.UnitStore, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        localize(model, pairs, "probe", LoudnessScorer(), work_dir=tmp_path / "w", **job)
    monkeypatch.setattr(tada.runs.UnitStore, "save", original)
    assert saves == ["chunk-00000"]
    resumed = localize(model, pairs, "probe", LoudnessScorer(), work_dir=tmp_path / "w", **job)
    assert torch.equal(resumed.patched, whole.patched) and torch.equal(resumed.clean, whole.clean)
    assert not (tmp_path / "w").exists()


def test_bad_requests_fail_with_one_clear_error(tiny_models):
    model = tiny_models("tada-mini")
    with pytest.raises(TadaError, match="at least one"):
        localize(model, [], "probe", LoudnessScorer(), progress=False)
    with pytest.raises(TadaError, match="probe text is empty"):
        localize(model, PAIRS, " ", LoudnessScorer(), progress=False)
    with pytest.raises(TadaError, match="alike"):
        localize(model, [("same", "same")], "probe", LoudnessScorer(), progress=False, **FAST)
    with pytest.raises(TadaError, match="equal length"):  # "{p}, with piano" against "{p}" cannot be patched
        localize(model, [("lofi music, with piano", "lofi music")], "probe", LoudnessScorer(), progress=False, **FAST)


def test_impact_table_round_trip_and_corrupt_files(tiny_models, tmp_path):
    model = tiny_models("tada-mini")
    table = localize(model, PAIRS, "a piano song", LoudnessScorer(), concept="piano", progress=False, **FAST)
    path = table.save(tmp_path / "impact.safetensors")
    back = ImpactTable.load(path)
    assert back.sites == table.sites and back.probe == "a piano song" and back.concept == "piano"
    assert torch.equal(back.impact, table.impact) and back.pairs == [list(p) for p in PAIRS]
    assert plot_impacts([table, back], tmp_path / "heat.png").stat().st_size > 0
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ArtifactError, match="not a readable safetensors"):
        ImpactTable.load(tmp_path / "junk.safetensors")
    vector = random_vector(model, xattn_aliases(model)).save(tmp_path / "vector.safetensors")
    with pytest.raises(ArtifactError, match="not a tada impact table"):
        ImpactTable.load(vector)
    with pytest.raises(ArtifactError, match="no impact table file"):
        ImpactTable.load(tmp_path / "missing.safetensors")


def test_patched_inputs_map_to_the_same_layers_outputs(tiny_models):
    model = tiny_models("tada-mini")
    inputs = [s.alias for s in model.sites.values() if s.kind == "xattn_in"]
    outputs = output_sites(model, inputs)
    assert outputs == xattn_aliases(model)
    assert all(model.site(i).path == model.site(o).path for i, o in zip(inputs, outputs))
    with pytest.raises(TadaError):
        output_sites(model, [s.alias for s in model.sites.values() if s.kind == "attn"][:1])


def test_cli_localize_writes_the_study_and_reuses_finished_tables(tmp_path, monkeypatch):
    out = tmp_path / "study"
    args = ["localize", "random-tiny:tada-mini", "--concept", "tempo,piano", "--n-pairs", "2", "--seconds", "1"]
    args += ["--steps", "2", "--mode", "input,ablate", "--sites", "xattn.0,xattn.1,xattn.2"]
    args += ["--group", "xattn.0+xattn.1", "--window", "0-0.5"]
    result = run_cli(*args, "--bootstrap", "200", "--out", str(out))
    assert result.returncode == 0, result.stderr
    files = {"tables", "impact.csv", "impact.png", "summary.md", "impact.json", "windows.png"}
    assert {p.name for p in out.iterdir()} == files
    tempo = ImpactTable.load(out / "tables" / "tempo.safetensors")
    assert tempo.probe == "a fast track" and tempo.settings["seeds"] == 1
    # piano's preset negative is the bare prompt: its twins use the neutral wrap of equal length
    assert ImpactTable.load(out / "tables" / "piano.safetensors").pairs[0] == [
        "lofi music, with piano",
        "lofi music, with instrument",
    ]
    rows = (out / "impact.csv").read_text().splitlines()
    assert rows[0] == "site,concept,mode,window,impact,ci_low,ci_high,n"
    # 3 single layers + 1 group, 2 modes, 2 windows, 2 concepts
    assert len(rows) == 1 + 4 * 2 * 2 * 2
    assert any(r.startswith("xattn_in.0+xattn_in.1,tempo,input,0-0.5,") for r in rows)
    assert "| tempo | 2 x 1 |" in result.stdout
    # a second call reuses both finished tables: no generation at all
    import tada.localisation_run

    monkeypatch.setattr(tada.localisation_run, "localize", lambda *a, **k: pytest.fail("recomputed a table"))
    again = run_cli(*args, "--bootstrap", "200", "--json", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["concepts"]["tempo"]["pairs"] == 2
    other = run_cli(*[a if a != "input,ablate" else "input" for a in args], "--out", str(out))
    assert other.returncode == 2 and "other pairs or settings" in other.stderr
    bad = run_cli("localize", "random-tiny:tada-mini", "--concept", "kazoo", "--out", str(out))
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "kazoo" in bad.stderr


def test_scores_of_another_scorer_never_mix_on_resume(tiny_models, tmp_path, monkeypatch):
    from tada.localize import scorer_key
    from tada.scorer import Scorer

    assert scorer_key(Scorer.load()) == {}  # the shipped scorer keeps older tables' settings as they were
    assert len(Scorer.load().fingerprint) == 16

    class Fingerprinted(LoudnessScorer):
        def __init__(self, fingerprint):
            self.fingerprint = fingerprint

    model = tiny_models("tada-mini")
    job = {"batch_pairs": 1, "sites": "xattn.0", "progress": False, **FAST}
    table = localize(model, PAIRS, "probe", Fingerprinted("a" * 16), **job)
    assert table.settings["scorer"] == "a" * 16
    import tada.runs

    original = tada.runs.UnitStore.save

    def dying_save(self, key, tensors):
        original(self, key, tensors)
        raise KeyboardInterrupt

    monkeypatch.setattr(tada.runs.UnitStore, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        localize(model, PAIRS, "probe", Fingerprinted("a" * 16), work_dir=tmp_path / "w", **job)
    monkeypatch.setattr(tada.runs.UnitStore, "save", original)
    with pytest.raises(TadaError, match="different job"):
        localize(model, PAIRS, "probe", Fingerprinted("b" * 16), work_dir=tmp_path / "w", **job)
