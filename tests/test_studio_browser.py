"""tada studio in a real headless Chromium: load, choose a slider, generate, switch A/B, scrub a grid,
and a bad input that leaves the server serving. (Timings on tada-mini: benchmarks/studio_latency.py.)"""

from __future__ import annotations

import pytest
from studio_browser import StudioPage, browser_available, chromium, free_port, piano_studio

pytestmark = pytest.mark.skipif(
    not browser_available(), reason="needs Debian's chromium and chromium-driver (make installs them)"
)

MODEL = "random-tiny:tada-mini"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tada.studio.app import StudioApp, launch

    studio = piano_studio(MODEL, tmp_path_factory.mktemp("artifacts"))
    port = free_port()
    demo = launch(
        StudioApp(studio, tmp_path_factory.mktemp("exports")), port=port, prevent_thread_lock=True, quiet=True
    )
    try:
        yield studio, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page(served):
    with chromium() as driver:
        yield StudioPage(driver, served[1])


def test_a_slider_and_generate_give_two_playable_clips_and_spectrograms(served, page):
    studio, _ = served
    assert "tada studio" in page.one("h1").text
    page.set_number("tada-seconds", 2)  # short takes keep the suite quick
    page.set_number("tada-steps", 8)
    page.choose("#tada-chosen")
    page.set_slider(4)
    page.generate()
    assert studio.history[-1].settings.sliders[0].alpha == 4.0
    a, b = page.players()
    for audio in (a, b):  # both decode: metadata loaded and the clip's length
        page.wait(lambda audio=audio: page.js("return arguments[0].readyState", audio) >= 1, 30)
        assert page.js("return arguments[0].duration", audio) == pytest.approx(2.0, abs=0.05)
    assert page.js("return arguments[0].src", a) != page.js("return arguments[0].src", b)
    image = page.wait(lambda: page.all("#tada-spectra img"), 30)[0]
    page.wait(lambda: page.js("return arguments[0].naturalWidth", image) > 300, 30)
    assert len(page.all("#tada-audio-a audio, #tada-audio-a [data-testid=waveform-controls]")) >= 1
    assert "Preservation distance" in page.one("#tada-scores").text


def test_the_ab_switch_keeps_the_playhead(page):
    a, b = page.players()
    page.js("arguments[0].currentTime = 1.25", a)
    page.wait(lambda: abs(page.js("return arguments[0].currentTime", a) - 1.25) < 0.01, 10)
    page.one("#tada-ab .tada-ab-switch").click()
    assert page.js("return getComputedStyle(arguments[0]).display", a) == "none"
    assert page.js("return getComputedStyle(arguments[0]).display", b) != "none"
    assert page.js("return arguments[0].currentTime", b) == pytest.approx(1.25, abs=0.01)
    assert "B (steered)" in page.one("#tada-ab .tada-ab-switch").text


def test_scrubbing_a_grid_is_much_faster_than_rendering(served, page):
    render_s = page.generate()  # one slider move, rendered (the reference is cached)
    page.all("button.label-wrap, .label-wrap")[0].click()  # open the grid's accordion
    page.choose("#tada-grid-slider")
    page.set_number("tada-grid-points", 3)
    page.one("#tada-grid").click()
    page.wait(lambda: "ready" in page.one("#tada-grid-status").text, 300)
    scrub_ms = page.scrub_ms(-10)
    assert page.js("return arguments[0].getAttribute('src')", page.players()[1]).startswith("data:audio/wav")
    # side by side in one run: a grid point shows in a small part of what a render takes
    assert scrub_ms < 0.25 * render_s * 1000, (scrub_ms, render_s)


def test_an_empty_prompt_is_a_message_in_the_page_and_the_server_goes_on(served, page):
    from selenium.webdriver.common.keys import Keys

    studio, _ = served
    box = page.one("#tada-prompt textarea, #tada-prompt input")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    page.one("#tada-generate").click()
    page.wait(lambda: "prompt is empty" in page.d.find_element(page.By.TAG_NAME, "body").text, 30)
    box.send_keys("ambient pad")
    taken = len(studio.history)
    page.generate()
    assert len(studio.history) == taken + 1 and studio.history[-1].settings.prompt == "ambient pad"
