"""The studio page's handlers and server, without a browser (the browser suite drives the page itself)."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import FAST
from studio_browser import piano_studio

from tada.concepts import CONCEPTS
from tada.errors import TadaError
from tada.studio import Studio
from tada.studio.app import StudioApp, build, launch

MODEL = "random-tiny:tada-mini"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    studio = piano_studio(MODEL, tmp_path_factory.mktemp("artifacts"))
    return StudioApp(studio, tmp_path_factory.mktemp("exports"))


def form(app, alpha: float, prompt: str = "lofi beat"):
    path = next(iter(app.studio.sliders))
    return [prompt, 2, FAST["seconds"], FAST["steps"], None, [path], {path: alpha}]


def test_generate_gives_players_spectrograms_scores_and_history(app):
    player, a, b, spectra, scores, history = app.generate(*form(app, 3.0))
    assert player.count("<audio") == 2 and "data:audio/wav;base64," in player and "tada-ab-switch" in player
    take = app.studio.history[-1]
    assert a[0] == b[0] == take.sample_rate and a[1].dtype == np.int16 and not np.array_equal(a[1], b[1])
    assert spectra.ndim == 3 and spectra.shape[2] == 3 and spectra.shape[1] > spectra.shape[0]
    assert "Preservation distance" in scores and CONCEPTS["piano"].probe in scores
    assert history[-1][0] == len(app.studio.history) - 1 and "+3" in history[-1][3]


def test_scrubbing_needs_a_grid_and_then_only_looks_takes_up(app):
    path = next(iter(app.studio.sliders))
    assert app.scrub(path, 1.0, *form(app, 1.0)) is None
    message = app.render_grid(path, 3, *form(app, 0.0))
    assert "3 takes" in message
    views = app.scrub(path, 9.0, *form(app, 9.0))  # nearest grid point: the top of the range
    grid_take = app.studio.from_grid(app.settings(*form(app, 0.0)), path, 10.0)
    assert views is app.scrub(path, 10.0, *form(app, 2.0))  # drawn once, when the grid was rendered
    # made ahead as files: the steered clip (WAV) and the spectrograms (PNG); the unsteered player is left
    steered, rate = sf.read(views[2], dtype="float32")
    assert rate == grid_take.sample_rate and np.array_equal(steered, grid_take.steered[0])
    assert views[3].endswith(".png") and Path(views[3]).stat().st_size > 10_000
    assert views[1] == {"__type__": "update"}  # gr.skip(): the reference player stays as it is


def test_restore_and_export(app, tmp_path):
    app.generate(*form(app, -2.0, prompt="ambient pad"))
    index = len(app.studio.history) - 1
    prompt, seed, seconds, steps, guidance, chosen, alphas = app.restore(index)
    assert prompt == "ambient pad" and seed == 2 and list(alphas.values()) == [-2.0] and chosen == list(alphas)
    files = app.export()
    assert [f.rsplit(".", 1)[-1] for f in files] == ["wav", "json", "wav"]
    assert json.loads(open(files[1]).read())["prompt"] == "ambient pad"


def test_bad_input_is_a_message(app):
    with pytest.raises(TadaError, match="prompt is empty"):
        app.generate(*form(app, 1.0, prompt=""))
    with pytest.raises(TadaError, match="choose the slider"):
        app.render_grid(None, 3, *form(app, 1.0))
    with pytest.raises(TadaError, match="no take"):
        app.restore(999)


def test_the_page_is_served_on_localhost_and_a_taken_port_is_one_line(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch(app, port=port, prevent_thread_lock=True, quiet=True)
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read().decode()
        assert "tada studio" in page
        with pytest.raises(TadaError, match=f"port {port}.*already taken"):
            launch(app, port=port, prevent_thread_lock=True)
    finally:
        demo.close()


def test_blocks_build_without_sliders(tmp_path):
    studio = Studio(MODEL)
    assert build(StudioApp(studio, tmp_path)) is not None
