"""tada bench: plan, store, stages, resume after a kill, and the Ray executor agreeing with the local one."""

from __future__ import annotations

import html
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tada.bench.plan import BenchSettings, Variant, linear_grid, parse_variants, switch_grid
from tada.bench.prompts import GROUPS, TUNING_PROMPTS, all_test_prompts, concept_words_in, group_of
from tada.bench.prompts import test_prompts as first_test_prompts
from tada.bench.store import BenchStore, ClipRow
from tada.concepts import BASE_PROMPTS
from tada.errors import TadaError

TINY = {
    "model": "random-tiny:tada-mini",
    "concepts": ["piano"],
    "variants": ["prompt-switch-global", "prompt-switch-local", "caa-global", "caa-local"],
    "prompts": 2,
    "seeds": 2,
    "points": 2,
    "seconds": 1.0,
    "steps": 4,
    "batch": 4,
    "tuning_prompts": 2,
    "fit_pairs": 2,
    "localise_pairs": 2,
    "reference_clips": 20,
}


def test_prompts_are_neutral_spread_and_held_out():
    prompts = all_test_prompts()
    assert len(GROUPS) == 10 and all(len(g) == 10 for g in GROUPS.values())
    assert len(set(prompts)) == 100 and len(set(prompts) | set(TUNING_PROMPTS)) == 120
    assert not [p for p in [*prompts, *TUNING_PROMPTS] if concept_words_in(p)]
    assert not set(prompts + list(TUNING_PROMPTS)) & set(BASE_PROMPTS)
    assert {group_of(p) for p in first_test_prompts(10)} == set(GROUPS)
    assert concept_words_in("a fast song with piano") == ["piano", "fast"]
    with pytest.raises(TadaError, match="1 to 100"):
        first_test_prompts(101)


def test_variants_and_grids():
    names = [v.name for v in parse_variants("caa", "global,local")]
    assert names == ["prompt-switch-global", "prompt-switch-local", "caa-global", "caa-local"]
    assert [v.name for v in parse_variants("sae-local,prompt-switch-global", "global")] == [
        "sae-local",
        "prompt-switch-global",
    ]
    assert Variant.parse("caa-local").label == "CAA (loc.)"
    assert Variant.parse("caa-global").label == "CAA (all layers)"
    for bad in ("caa", "caa-everywhere", "nothing-global"):
        with pytest.raises(TadaError) as err:
            Variant.parse(bad)
        assert "\n" not in str(err.value)
    assert switch_grid(8, 8) == [k / 8 for k in range(1, 9)]
    assert switch_grid(4, 8) == [0.25, 0.5, 0.75, 1.0]
    assert switch_grid(8, 6) == [k / 6 for k in range(1, 7)]  # never more points than steps
    assert linear_grid(-2.0, 4) == [-0.5, -1.0, -1.5, -2.0]


def test_settings_chunks():
    s = BenchSettings(**{**TINY, "prompts": 5, "batch": 4})
    assert s.prompts_per_chunk == 2 and s.prompt_chunks() == [(0, 2), (2, 4), (4, 5)]
    with pytest.raises(TadaError, match="overshoot"):
        BenchSettings(**{**TINY, "overshoot": 0.5}).check()


def _row(variant: str, alpha: float, prompt: int, seed: int, value: float) -> ClipRow:
    return ClipRow(variant, "piano", alpha, prompt, seed, abs(alpha) * value, np.full(4, value), {"probe": value})


def test_store_keeps_units_and_refuses_other_settings(tmp_path):
    path = tmp_path / "bench.sqlite"
    with BenchStore(path, {"prompts": 1, "seeds": 2}) as store:
        store.finish("baseline/piano/0-1", "baseline", {"clips": 2}, [_row("baseline", 0.0, 0, s, 0.1) for s in (0, 1)])
        store.finish("sweep/a", "sweep", {"ok": 1}, [_row("caa-global", 1.0, 0, 0, 0.5)], variant="caa-global")
    with BenchStore(path, {"seeds": 2, "prompts": 1}) as store:  # same settings, other key order: resumes
        assert store.done("baseline/piano/0-1") and store.result("sweep/a") == {"ok": 1}
        rows = store.sweep("caa-global", "piano", [0.0, 1.0], 1, [0, 1], ["probe"])
        assert not rows.complete  # alpha 1, seed 1 is missing
        assert rows.preservation[0].tolist() == [[0.0, 0.0]] and rows.preservation[1, 0, 0] == 0.5
        assert np.isnan(rows.preservation[1, 0, 1])
        assert rows.alignment["probe"][0, 0, 0] == pytest.approx(0.1)
        assert rows.embeddings.shape == (2, 1, 2, 4)
    with pytest.raises(TadaError) as err:
        BenchStore(path, {"prompts": 2, "seeds": 2})
    assert "prompts: 1 there, 2 now" in str(err.value) and "\n" not in str(err.value)


def test_the_journal_rebuilds_the_index_in_a_fresh_clone(tmp_path):
    path = tmp_path / "run" / "bench.sqlite"
    mixed = [_row("caa-global", 1.0, 0, 0, 0.5), ClipRow("caa-global", "piano", 1.0, 0, 1, 0.25, np.arange(4.0), {})]
    with BenchStore(path, {"prompts": 1, "seeds": 2}) as store:
        store.finish("target/piano", "target", {"pos": {"target": 0.3}}, concept="piano", seconds=1.5, worker="w0")
        store.finish("baseline/piano/0-1", "baseline", {"clips": 2}, [_row("baseline", 0.0, 0, s, 0.1) for s in (0, 1)])
        store.finish("sweep/piano/caa-global/pos/0-1", "sweep", {"ok": 1}, mixed, variant="caa-global", concept="piano")
        with pytest.raises(TadaError, match="safe relative name"):
            store.finish("../escape", "sweep", {})
    with BenchStore(path, {"prompts": 1, "seeds": 2}) as store:
        before = _dump(path.parent), store.units()
    assert sorted(p.relative_to(path.parent / "units").as_posix() for p in (path.parent / "units").rglob("*.*")) == [
        "baseline/piano/0-1.safetensors",
        "settings.json",
        "sweep/piano/caa-global/pos/0-1.safetensors",
        "target/piano.safetensors",
    ]
    for index in path.parent.glob("bench.sqlite*"):  # what git does not carry
        index.unlink()
    with BenchStore(path, {"seeds": 2, "prompts": 1}) as store:
        assert (_dump(path.parent), store.units()) == before  # row for row, float16 embeddings and all
        assert store.result("target/piano") == {"pos": {"target": 0.3}}
        rows = store.sweep("caa-global", "piano", [0.0, 1.0], 1, [0, 1], ["probe"])
        assert rows.complete is False and np.isnan(rows.alignment["probe"][1, 0, 1])  # the clip without a probe
    for index in path.parent.glob("bench.sqlite*"):
        index.unlink()
    with pytest.raises(TadaError) as err:  # the journal's settings bind a fresh index too
        BenchStore(path, {"prompts": 2, "seeds": 2})
    assert "prompts: 1 there, 2 now" in str(err.value)
    # a unit the index holds but the journal lost runs again
    (path.parent / "units" / "target" / "piano.safetensors").unlink()
    with BenchStore(path, {"prompts": 1, "seeds": 2}) as store:
        assert not store.done("target/piano") and store.done("baseline/piano/0-1")
    # a journal file under another unit's name is refused, not indexed under the wrong key
    units = path.parent / "units"
    (units / "baseline" / "piano" / "0-1.safetensors").rename(units / "baseline" / "piano" / "1-2.safetensors")
    for index in path.parent.glob("bench.sqlite*"):
        index.unlink()
    with pytest.raises(TadaError, match="belongs at"):
        BenchStore(path, {"prompts": 1, "seeds": 2})


def test_the_model_dtype_is_a_setting_that_older_float32_runs_resume_without(tmp_path):
    plain, half = BenchSettings(**TINY), BenchSettings(**TINY, dtype="bfloat16")
    assert "dtype" not in plain.as_dict()  # runs made before the dtype setting resume as float32 runs
    assert half.as_dict()["dtype"] == "bfloat16"
    path = tmp_path / "bench.sqlite"
    BenchStore(path, plain.as_dict()).close()
    with pytest.raises(TadaError, match="dtype"):
        BenchStore(path, half.as_dict())
    assert BenchSettings(**plain.as_dict()) == plain  # what an actor rebuilds from the stored record


def test_the_worker_loads_the_model_in_the_settings_dtype_on_its_device(tmp_path):
    import torch

    from tada.bench.worker import Worker

    worker = Worker(BenchSettings(**TINY, dtype="bfloat16"), tmp_path, device="cpu")
    params = list(worker.model.denoiser.parameters())
    assert {p.dtype for p in params} == {torch.bfloat16} and {p.device.type for p in params} == {"cpu"}


# -- the whole pipeline on a tiny random model -------------------------------------------------


def _dump(out: Path) -> list[tuple]:
    """Every stored clip and alignment row of a run directory."""
    db = sqlite3.connect(out / "bench.sqlite")
    try:
        clips = db.execute("SELECT * FROM clips ORDER BY variant, concept, alpha, prompt, seed").fetchall()
        align = db.execute("SELECT * FROM alignment ORDER BY variant, concept, alpha, prompt, seed, metric").fetchall()
        return clips + align
    finally:
        db.close()


class _Killed(Exception):
    pass


class _DyingExecutor:
    """Runs units like the local executor but dies (as a kill would) once ``n`` results were handed over."""

    def __init__(self, inner, n: int):
        self.inner, self.n, self.given = inner, n, 0

    def run(self, units):
        for result in self.inner.run(units):
            if self.given == self.n:
                raise _Killed
            self.given += 1
            yield result


def _run(out: Path, executor: str = "local", die_after: int | None = None, reference: Path | None = None, **ray):
    """Run (or resume) the tiny benchmark in ``out``; ``reference``: a run whose quality reference to reuse
    (rendering the held-out corpus clips is the slowest unit, and its file is the same in every run)."""
    from tada.bench.executors import make_executor
    from tada.bench.run import BenchRun

    if reference is not None and not (out / "quality-reference.safetensors").is_file():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(reference / "quality-reference.safetensors", out / "quality-reference.safetensors")
    settings = BenchSettings(**TINY)
    run = BenchRun(settings, out)
    ex = make_executor(executor, settings, out, threads=1, **ray)
    try:
        if die_after is not None:
            with pytest.raises(_Killed):
                run.run(_DyingExecutor(ex, die_after), progress=False)
            return run
        run.run(ex, progress=False)
        return run
    finally:
        ex.close()
        run.close()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "run"
    _run(out)
    return out


def test_tiny_run_stores_every_clip_and_writes_the_report(tiny_run):
    from tada.bench.report import write_report
    from tada.bench.run import BenchRun

    run = BenchRun(BenchSettings(**TINY), tiny_run)
    try:
        assert all(not run.pending(stage) for stage in ("localise", "fit", "target", "calibrate", "baseline", "sweep"))
        switch = run.store.result("calibrate/piano/prompt-switch-global")
        assert switch["pos"]["grid"] == [0.5, 1.0] and switch["neg"]["grid"] == [-0.5, -1.0]
        caa = run.store.result("calibrate/piano/caa-global")
        target = run.store.result("target/piano")
        for d in ("pos", "neg"):
            assert target[d]["target"] > 0 and caa[d]["target"] == target[d]["target"]
            assert len(caa[d]["grid"]) == 2 and caa[d]["probes"]
            grid = np.abs(caa[d]["grid"])
            assert grid[1] == pytest.approx(2 * grid[0])
        rows = run.store.sweep("caa-local", "piano", [-1.0, 0.0, 1.0], 2, [0, 1], ["probe"])
        assert rows.alphas.tolist() == [-1.0, 0.0, 1.0]
        grid = sorted({0.0, *caa["pos"]["grid"], *caa["neg"]["grid"]})
        rows = run.store.sweep("caa-global", "piano", grid, 2, [0, 1], ["probe"])
        assert rows.complete and (rows.preservation[grid.index(0.0)] == 0).all()
        assert (rows.preservation[[i for i, a in enumerate(grid) if a != 0]] > 0).all()
        example = tiny_run / "audio" / "piano" / "baseline" / "alpha+0.wav"
        assert sf.info(example).subtype == "PCM_16"  # examples are for listening: half the bytes of float
        paths = write_report(run, replicates=100)
        text = paths["markdown"].read_text()
        assert "Mean over concepts" in text and "CAA (loc.)" in text and "prompt switching (all layers)" in text
        # the mean's table counts the concepts each variant's mean covers; a single concept's table does not
        mean_part, piano_part = text.split("\n## piano\n")
        assert "| concepts |" in mean_part and "| CAA (loc.) |" in mean_part and "| 1 |" in mean_part
        assert "| concepts |" not in piano_part.split("\n## ")[0]
        assert (tiny_run / "curves-piano.png").stat().st_size > 10_000
        page = paths["html"].read_text()
        assert "<audio" in page
        # the HTML has every section of the markdown, each with its tables and paragraphs
        headings = [line[3:] for line in text.splitlines() if line.startswith("## ")]
        for expected in ("Mean over concepts", "Paired comparisons on AUC probe", "Beside the paper", "piano", "Cost"):
            assert any(h.startswith(expected) for h in headings), expected
        for heading in headings:
            assert f"<h2>{html.escape(heading)}</h2>" in page, heading
        assert page.count("<table>") == sum(line.startswith("|---|") for line in text.splitlines())
        assert "Rank correlation (Spearman)" in page and "Best: <b>" in page and "End to end:" in page
        strict = json.loads(paths["json"].read_text(), parse_constant=lambda c: pytest.fail(f"{c} in results.json"))
        cost = strict["cost"]
        assert 0 < cost["wall_seconds"] <= cost["worker_seconds"] + 1e-6  # one worker: never more wall than work
        assert "End to end:" in text
    finally:
        run.close()


def test_kill_and_resume_give_identical_results(tiny_run, tmp_path):
    from tada.bench.run import BenchRun

    out = tmp_path / "run"
    # killed among the fits (1 reference + 1 localise + 4 fits + 1 target + 4 calibrations + 1 baseline + 8 sweeps)
    _run(out, die_after=3, reference=tiny_run)
    run = BenchRun(BenchSettings(**TINY), out)
    assert len(run.store.units()) == 3 and run.pending("fit")
    run.close()
    _run(out, die_after=10)  # resumed, killed again among the sweeps
    run = BenchRun(BenchSettings(**TINY), out)
    assert len(run.store.units()) == 13 and run.pending("sweep") and not run.pending("baseline")
    run.close()
    _run(out)
    assert _dump(out) == _dump(tiny_run)


def test_a_fresh_clone_of_a_part_run_resumes_to_identical_results(tiny_run, tmp_path):
    """What git carries of a run (the journal, artifacts, impact tables, quality reference, audio;
    not bench.sqlite or work/) resumes: the index is rebuilt and the missing alpha-0 clips are
    generated again, to the same bits."""
    from tada.bench.run import BenchRun

    out = tmp_path / "clone"
    shutil.copytree(tiny_run, out, ignore=shutil.ignore_patterns("bench.sqlite*", "work"))
    last = sorted((out / "units" / "sweep").rglob("*.safetensors"))[-1]
    last.unlink()  # the run was stopped before this unit landed
    run = BenchRun(BenchSettings(**TINY), out)
    try:
        assert [u.key for u in run.pending("sweep")] == [last.relative_to(out / "units").with_suffix("").as_posix()]
        assert all(not run.pending(stage) for stage in ("localise", "fit", "target", "calibrate", "baseline"))
    finally:
        run.close()
    _run(out)
    assert _dump(out) == _dump(tiny_run)


@pytest.mark.slow  # Ray is an optional executor; `make test-slow` runs this (about 45 s)
def test_ray_executor_agrees_with_local(tiny_run, tmp_path):
    pytest.importorskip("ray", reason="the Ray executor needs ray (installed by make)")
    out = tmp_path / "ray-run"
    _run(out, executor="ray", workers=2, reference=tiny_run)
    assert _dump(out) == _dump(tiny_run)


def test_fitted_artifacts_are_adopted_only_where_they_match(tiny_run, tmp_path):
    from tada.bench.run import BenchRun

    out = tmp_path / "adopting"
    (out / "impact").mkdir(parents=True)
    shutil.copyfile(tiny_run / "impact" / "piano.safetensors", out / "impact" / "piano.safetensors")
    run = BenchRun(BenchSettings(**TINY), out)
    try:
        taken = run.adopt_artifacts(tiny_run / "artifacts")
        assert sorted(taken) == sorted(f"piano/{v}" for v in TINY["variants"])
        assert (out / "artifacts" / "piano" / "caa-local.safetensors").read_bytes() == (
            tiny_run / "artifacts" / "piano" / "caa-local.safetensors"
        ).read_bytes()
    finally:
        run.close()
    other = tmp_path / "other-fit"
    (other / "impact").mkdir(parents=True)
    shutil.copyfile(tiny_run / "impact" / "piano.safetensors", other / "impact" / "piano.safetensors")
    run = BenchRun(BenchSettings(**{**TINY, "fit_pairs": 3}), other)
    try:  # fitted on 2 base prompts, not 3: not this run's artifacts
        assert [t for t in run.adopt_artifacts(tiny_run / "artifacts") if "caa" in t] == []
    finally:
        run.close()
