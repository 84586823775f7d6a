"""Driving tada studio in a real headless Chromium (Debian's chromium and chromedriver, through
selenium): shared by the browser tests and ``benchmarks/studio_latency.py``."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# the flags a closed network needs: no background connections, no updates, no sync
FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking "
    "--disable-component-update --disable-sync --disable-dev-shm-usage --autoplay-policy=no-user-gesture-required "
    "--window-size=1400,1800"
).split()


def browser_available() -> bool:
    return Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="tada-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class StudioPage:
    """The studio page in a driver: the few gestures a person makes, and what they see."""

    def __init__(self, driver, url: str):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.d, self.By, self.Wait = driver, By, WebDriverWait
        driver.get(url)
        self.wait(lambda: self.all("#tada-generate"), 60)

    def all(self, css: str):
        return self.d.find_elements(self.By.CSS_SELECTOR, css)

    def one(self, css: str):
        return self.d.find_element(self.By.CSS_SELECTOR, css)

    def wait(self, condition, seconds: float = 120):
        return self.Wait(self.d, seconds, poll_frequency=0.1).until(lambda _d: condition())

    def js(self, script: str, *args):
        return self.d.execute_script(script, *args)

    def choose(self, dropdown: str, index: int = 0) -> None:
        """Pick option ``index`` of a gradio dropdown (``#tada-chosen``, ``#tada-grid-slider``)."""
        self.one(f"{dropdown} input").click()
        self.wait(lambda: self.all(f"{dropdown} [role=option]"), 10)[index].click()

    def set_number(self, elem_id: str, value: float) -> None:
        """Type a value into a gradio Number (``#tada-seconds``, ``#tada-grid-points``)."""
        from selenium.webdriver.common.keys import Keys

        box = self.one(f"#{elem_id} input")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(f"{value:g}")
        box.send_keys(Keys.TAB)

    def set_slider(self, value: float, index: int = 0) -> None:
        from selenium.webdriver.common.keys import Keys

        self.wait(lambda: len(self.all(".tada-slider input[type=number]")) > index, 20)
        box = self.all(".tada-slider input[type=number]")[index]
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(f"{value:g}")
        box.send_keys(Keys.ENTER)

    def players(self) -> list:
        return self.all("#tada-ab audio")

    def steered_source(self) -> str:
        audio = self.all("#tada-ab .tada-ab-b")
        return audio[0].get_attribute("src") if audio else ""

    def title(self) -> str:
        """The shown take's title: "Take N" or "Pre-rendered grid point"."""
        text = self.one("#tada-scores").text
        return text.splitlines()[0] if text else ""

    def generate(self, timeout: float = 180) -> float:
        """Press Generate; seconds until the new take's views are in the page."""
        before = self.title()
        index = int(before.split()[-1]) + 1 if before.startswith("Take ") else None
        start = time.perf_counter()
        self.one("#tada-generate").click()
        self.wait(
            lambda: self.title().startswith("Take ") and (index is None or self.title() == f"Take {index}"), timeout
        )
        return time.perf_counter() - start

    def scrub_ms(self, value: float, index: int = 0) -> float:
        """Milliseconds, measured in the page, from committing a slider value to a different steered
        clip in the player (a MutationObserver on the player, started in the same script)."""
        box = self.all(".tada-slider input[type=number]")[index]
        self.js(
            "const box = arguments[0];"
            "const source = () => { const b = document.querySelector('#tada-ab .tada-ab-b'); return b ? b.src : ''; };"
            "const before = source();"
            "window.tadaChanged = null;"
            "const observer = new MutationObserver(() => {"
            "  if (window.tadaChanged === null && source() !== before) {"
            "    window.tadaChanged = performance.now() - window.tadaStart; observer.disconnect(); }"
            "});"
            "observer.observe(document.querySelector('#tada-ab'), {subtree: true, childList: true, attributes: true});"
            "box.value = String(arguments[1]);"
            "window.tadaStart = performance.now();"
            "box.dispatchEvent(new Event('input', {bubbles: true}));"
            "box.dispatchEvent(new Event('change', {bubbles: true}));"
            "box.blur();",
            box,
            value,
        )
        self.wait(lambda: self.js("return window.tadaChanged") is not None, 30)
        return float(self.js("return window.tadaChanged"))


def piano_studio(model: str, folder: Path, extra: bool = False):
    """A :class:`~tada.studio.Studio` on ``model`` with one slider, ``piano.safetensors`` (a random
    unit vector that carries the piano concept, so takes are scored with its probe), saved in
    ``folder``; with ``extra``, a second vector (``other``) and one made for another model
    (``foreign``) in the folder too."""
    from conftest import random_vector, xattn_aliases

    from tada.adapters import load_model
    from tada.concepts import CONCEPTS
    from tada.studio import Studio

    studio = Studio(model)
    vector = random_vector(studio.adapter, xattn_aliases(studio.adapter))
    vector.decorations = CONCEPTS["piano"]
    vector.save(folder / "piano.safetensors")
    if extra:
        random_vector(studio.adapter, xattn_aliases(studio.adapter), seed=1).save(folder / "other.safetensors")
        foreign = load_model("random-tiny:stable-audio")
        random_vector(foreign, xattn_aliases(foreign)).save(folder / "foreign.safetensors")
    studio.add_folder(folder)
    return studio
