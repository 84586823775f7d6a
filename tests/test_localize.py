"""Activation patching (tada.localize): scores, impacts, resume, artifact, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAMILIES, FAST, random_vector, run_cli, xattn_aliases

from tada.errors import ArtifactError, TadaError
from tada.interventions import Capture, Replace
from tada.localize import ImpactTable, localize, output_sites, plot_impacts

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
    table = localize(model, PAIRS, "probe", LoudnessScorer(), seed=5, progress=False, **FAST)
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


def test_localisation_resumes_after_a_kill(tiny_models, tmp_path, monkeypatch):
    model = tiny_models("tada-mini")
    pairs = PAIRS * 2
    whole = localize(model, pairs, "probe", LoudnessScorer(), batch_pairs=2, progress=False, **FAST)
    import tada.runs

    saves, original = [], tada.runs.UnitStore.save

    def dying_save(self, key, tensors):
        if saves:
            raise KeyboardInterrupt
        saves.append(key)
        original(self, key, tensors)

    monkeypatch.setattr(tada.runs.UnitStore, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        localize(
            model, pairs, "probe", LoudnessScorer(), batch_pairs=2, work_dir=tmp_path / "w", progress=False, **FAST
        )
    monkeypatch.setattr(tada.runs.UnitStore, "save", original)
    assert saves == ["chunk-00000"]
    resumed = localize(
        model, pairs, "probe", LoudnessScorer(), batch_pairs=2, work_dir=tmp_path / "w", progress=False, **FAST
    )
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


def test_cli_localize(tmp_path):
    out = tmp_path / "impact.safetensors"
    result = run_cli(
        "localize",
        "random-tiny:tada-mini",
        "--concept",
        "tempo",
        "--n-pairs",
        "2",
        "--seconds",
        "1",
        "--steps",
        "2",
        "--out",
        str(out),
        "--plot",
        str(tmp_path / "heat.png"),
    )
    assert result.returncode == 0, result.stderr
    assert ImpactTable.load(out).probe == "a fast track" and (tmp_path / "heat.png").is_file()
    bad = run_cli("localize", "random-tiny:tada-mini", "--concept", "kazoo", "--out", str(out))
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "kazoo" in bad.stderr
