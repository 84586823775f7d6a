"""The studio page's handlers and server, without a browser (the browser suite drives the page itself)."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import socket
import urllib.request

import numpy as np
import pytest
import soundfile as sf
from conftest import FAST
from PIL import Image
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


def _clip(uri: str) -> np.ndarray:
    audio, _ = sf.read(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), dtype="float32")
    return audio


def test_generate_gives_the_players_first_then_spectrograms_scores_and_history(app):
    player, history = app.generate(*form(app, 3.0))
    take = app.studio.history[-1]
    assert not take.scored  # the clips reach the page before the scoring
    assert player.count("<audio") == 2 and "tada-ab-switch" in player
    uris = re.findall(r'<audio[^>]+src="([^"]+)"', player)
    assert np.allclose(_clip(uris[0]), take.reference[0], atol=1 / 32767)  # A: unsteered, 16-bit
    assert np.allclose(_clip(uris[1]), take.steered[0], atol=1 / 32767)  # B: steered
    assert 'download="take-' in player and history[-1][0] == len(app.studio.history) - 1 and "+3" in history[-1][3]
    view, history = app.describe()
    assert take.scored and take.preservation > 0
    png = base64.b64decode(re.search(r'id="tada-spectra"[^>]* src="data:image/png;base64,([^"]+)"', view).group(1))
    width, height = Image.open(io.BytesIO(png)).size
    assert width > 2 * height > 200  # A, B and B - A side by side
    assert "Preservation distance" in view and CONCEPTS["piano"].probe in view and "Take " in view
    assert history[-1][4] == round(take.preservation, 4)


def test_a_grid_goes_to_the_page_whole_with_what_it_needs_to_swap_points(app):
    path = next(iter(app.studio.sliders))
    message, grid = app.render_grid(path, 3, *form(app, 0.0))
    assert "3 takes" in message
    points = re.findall(
        r'data-alpha="([^"]+)" data-spectra="([^"]+)"[^<]*<audio class="tada-grid-audio"[^>]* src="([^"]+)"', grid
    )
    slider = app.studio.slider(path)
    assert [float(a) for a, _, _ in points] == [slider.low, 0.0, slider.high]
    for alpha, spectra, src in points:
        take = app.studio.from_grid(app.settings(*form(app, 0.0)), path, float(alpha))
        assert np.allclose(_clip(src), take.steered[0], atol=1 / 32767)
        assert spectra.startswith("data:image/png;base64,") and len(spectra) > 10_000
    settings = json.loads(html.unescape(re.search(r'data-settings="([^"]+)"', grid).group(1)))
    assert settings == {
        "label": slider.label,
        "prompt": "lofi beat",
        "seed": 2,
        "seconds": FAST["seconds"],
        "steps": FAST["steps"],
        "guidance": None,
        "others": {},
    }
    assert "Preservation distance" in html.unescape(grid)


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
