"""The studio's engine: takes, their reference, scores, grids, history, export and replay."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
from conftest import FAST, run_cli
from studio_browser import piano_studio

from tada.concepts import CONCEPTS
from tada.errors import TadaError
from tada.studio import SliderSetting, TakeSettings

MODEL = "random-tiny:tada-mini"


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("artifacts")
    s = piano_studio(MODEL, folder, extra=True)
    s.folder = folder
    return s


def settings(studio, **sliders: float) -> TakeSettings:
    paths = {p.split("/")[-1].removesuffix(".safetensors"): p for p in studio.sliders}
    return TakeSettings(
        MODEL,
        "lofi beat",
        seed=3,
        **FAST,
        sliders=tuple(SliderSetting(paths[k], v) for k, v in sliders.items()),
    )


def test_a_folder_gives_sliders_and_names_what_cannot_steer_this_model(studio):
    names = sorted(p.split("/")[-1] for p in studio.sliders)
    assert names == ["other.safetensors", "piano.safetensors"]
    assert len(studio.problems) == 1 and "foreign.safetensors" in studio.problems[0]
    assert "stable-audio" in studio.problems[0] and "\n" not in studio.problems[0]
    piano = next(s for s in studio.sliders.values() if s.path.endswith("piano.safetensors"))
    assert piano.probe == CONCEPTS["piano"].probe and piano.low < 0 < piano.high


def test_alpha_zero_is_the_reference_bitwise_and_the_reference_is_the_plain_clip(studio):
    take = studio.render(settings(studio, piano=0.0))
    plain = studio.adapter.generate("lofi beat", seed=3, **FAST).samples[0]
    assert np.array_equal(take.reference, plain) and np.array_equal(take.steered, plain)
    assert take.preservation == pytest.approx(0.0, abs=1e-9)


def test_moving_a_slider_renders_only_the_steered_clip(studio, monkeypatch):
    first = studio.render(settings(studio, piano=2.0))
    calls = []
    real = studio.adapter.generate
    monkeypatch.setattr(studio.adapter, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    second = studio.render(settings(studio, piano=-2.0))
    assert len(calls) == 1  # the reference came from memory
    assert np.array_equal(first.reference, second.reference)
    assert not np.array_equal(first.steered, second.steered) and not np.array_equal(first.steered, first.reference)
    probe = CONCEPTS["piano"].probe
    assert set(second.probes) == {probe} and set(second.probes[probe]) == {"reference", "steered"}
    assert second.preservation > 0 and second.render_seconds > 0


def test_a_grid_gives_the_same_takes_as_rendering_each_alpha(studio):
    base = settings(studio, other=1.0, piano=0.5)
    piano = base.sliders[1].path
    grid = studio.render_grid(base, piano, [-2.0, 0.0, 2.0])
    assert sorted(grid) == [-2.0, 0.0, 2.0]
    direct = studio.render(base.with_alpha(piano, 2.0), remember=False)
    assert np.array_equal(grid[2.0].steered, direct.steered)
    assert studio.from_grid(base, piano, 1.7) is grid[2.0]  # nearest grid point, whatever the slider is at now
    assert studio.from_grid(base.with_alpha(piano, 0.0).with_alpha(piano, 0.3), piano, -0.4) is grid[0.0]
    assert studio.from_grid(replace(base, seed=99), piano, 2.0) is None  # another take: no grid


def test_history_restores_a_take(studio):
    n = len(studio.history)
    wanted = settings(studio, piano=1.5)
    studio.render(wanted)
    assert studio.restore(n) == wanted
    with pytest.raises(TadaError, match="no take"):
        studio.restore(n + 5)


def test_export_and_replay_give_the_same_clip_bitwise(studio, tmp_path):
    take = studio.render(settings(studio, piano=3.0, other=-1.0))
    files = take.export(tmp_path, "mine")
    record = json.loads(files["settings"].read_text())
    assert record["format"] == "tada/take" and record["scores"]["preservation"] == take.preservation
    assert TakeSettings.load(files["settings"]) == take.settings
    out = tmp_path / "again.wav"
    result = run_cli("steer", MODEL, "--replay", str(files["settings"]), "--out", str(out))
    assert result.returncode == 0, result.stderr
    again, sr = sf.read(str(out), dtype="float32", always_2d=True)
    exported, _ = sf.read(str(files["steered"]), dtype="float32", always_2d=True)
    assert sr == take.sample_rate and np.array_equal(again, exported) and np.array_equal(again.T, take.steered)


def test_replay_finds_artifacts_beside_the_take(studio, tmp_path):
    import shutil

    piano = next(p for p in studio.sliders if p.endswith("piano.safetensors"))
    shutil.copy(piano, tmp_path / "piano.safetensors")
    take = studio.render(settings(studio, piano=2.5), remember=False)
    moved = replace(take.settings, sliders=(SliderSetting("piano.safetensors", 2.5),))
    (tmp_path / "take.json").write_text(json.dumps(moved.to_json()))
    out = tmp_path / "again.wav"
    result = run_cli("steer", MODEL, "--replay", str(tmp_path / "take.json"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert np.array_equal(sf.read(str(out), dtype="float32", always_2d=True)[0].T, take.steered)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--prompt", "x"], "leave out --prompt"),
        (["--seed", "4"], "leave out --seed"),
    ],
)
def test_replay_refuses_options_that_would_change_the_take(studio, tmp_path, args, fragment):
    take = studio.render(settings(studio, piano=1.0), remember=False)
    path = take.export(tmp_path)["settings"]
    result = run_cli("steer", MODEL, "--replay", str(path), "--out", str(tmp_path / "x.wav"), *args)
    assert result.returncode != 0 and fragment in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


def test_bad_input_is_one_clear_line(studio, tmp_path):
    with pytest.raises(TadaError, match="prompt is empty"):
        studio.render(replace(settings(studio), prompt="  "))
    with pytest.raises(TadaError, match="unknown artifact"):
        studio.render(replace(settings(studio), sliders=(SliderSetting(str(tmp_path / "nope.safetensors"), 1.0),)))
    with pytest.raises(TadaError, match="studio runs"):
        studio.render(replace(settings(studio), model="random-tiny:audioldm2"))
    with pytest.raises(TadaError, match="foreign.safetensors"):
        studio.add_artifact(studio.folder / "foreign.safetensors")
    with pytest.raises(TadaError, match="no steering artifact"):
        studio.add_artifact(tmp_path / "missing.safetensors")
    with pytest.raises(TadaError, match="range"):
        studio.add_artifact(next(iter(studio.sliders)), low=2.0, high=1.0)
    (tmp_path / "bad.json").write_text('{"format": "tada/take", "format_version": "1", "prompt": "x"}')
    with pytest.raises(TadaError, match="not a readable take"):
        TakeSettings.load(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(TadaError, match="not JSON"):
        TakeSettings.load(tmp_path / "broken.json")
    result = run_cli("steer", MODEL, "--out", str(tmp_path / "x.wav"))
    assert result.returncode != 0 and "--replay" in result.stderr
