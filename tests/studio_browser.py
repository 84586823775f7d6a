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


class BrowserPage:
    """A page in a driver: find, wait (polling at 0.1 s: faster polling takes the CPU it waits for)."""

    def __init__(self, driver):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.d, self.By, self.Wait = driver, By, WebDriverWait

    def all(self, css: str):
        return self.d.find_elements(self.By.CSS_SELECTOR, css)

    def one(self, css: str):
        return self.d.find_element(self.By.CSS_SELECTOR, css)

    def wait(self, condition, seconds: float = 120):
        """Poll ``condition`` until it is truthy. An element that the page replaces between finding it and
        reading it (a new study page, a re-rendered component) is a condition not met yet, not an error."""
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        ignored = (NoSuchElementException, StaleElementReferenceException)
        wait = self.Wait(self.d, seconds, poll_frequency=0.1, ignored_exceptions=ignored)
        return wait.until(lambda _d: condition())


class StudioPage(BrowserPage):
    """The studio page in a driver: the few gestures a person makes, and what they see."""

    def __init__(self, driver, url: str):
        super().__init__(driver)
        driver.get(url)
        self.wait(lambda: self.all("#tada-generate"), 60)

    def js(self, script: str, *args):
        return self.d.execute_script(script, *args)

    def choose(self, dropdown: str, index: int = 0) -> None:
        """Pick option ``index`` of a gradio dropdown (``#tada-chosen``, ``#tada-grid-slider``)."""
        # an accordion that has just been opened renders its contents a moment later
        self.wait(lambda: self.all(f"{dropdown} input"), 20)[0].click()
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

    # A MutationObserver on the A/B player, started in the same script as the gesture it times: the
    # milliseconds until the player holds a different steered clip whose metadata has loaded (playable).
    WATCH = (
        "const source = () => { const b = document.querySelector('#tada-ab .tada-ab-b'); return b ? b.src : ''; };"
        "const before = source();"
        "window.tadaChanged = null;"
        "window.tadaDone = new Promise((resolve) => { window.tadaResolve = resolve; });"
        "const observer = new MutationObserver(() => {"
        "  const b = document.querySelector('#tada-ab .tada-ab-b');"
        "  if (window.tadaChanged !== null || !b || b.src === before) return;"
        "  observer.disconnect();"
        "  const done = () => { if (window.tadaChanged === null) {"
        "    window.tadaChanged = performance.now() - start; window.tadaResolve(window.tadaChanged); } };"
        "  if (b.readyState >= 1) done(); else b.addEventListener('loadedmetadata', done, {once: true});"
        "});"
        "observer.observe(document.querySelector('#tada-ab'), {subtree: true, childList: true, attributes: true});"
        "const start = performance.now();"
    )

    def _watched(self, timeout: float) -> float:
        """Waits in the page, on the observer's promise: no polling from here to take the CPU it measures."""
        self.d.set_script_timeout(15)
        deadline = time.perf_counter() + timeout
        while True:  # 10 s at a time: the driver's HTTP client gives up on a call after 120 s
            value = self.d.execute_async_script(
                "const done = arguments[arguments.length - 1], timer = setTimeout(() => done(null), 10000);"
                "window.tadaDone.then((v) => { clearTimeout(timer); done(v); });"
            )
            if value is not None:
                return float(value)
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no new clip in the player after {timeout:g} s")

    def generate(self, timeout: float = 180) -> tuple[float, float]:
        """Press Generate; seconds until the new take's steered clip is playable in the page (measured in
        the page), and until its spectrograms and scores are shown too. The steered clip must differ from
        the one on show (move a slider first): an identical take changes nothing in the player."""
        before = self.title()
        index = int(before.split()[-1]) + 1 if before.startswith("Take ") else None
        start = time.perf_counter()
        self.js(self.WATCH + "document.querySelector('#tada-generate').click();")
        playable = self._watched(timeout) / 1000
        self.wait(
            lambda: self.title().startswith("Take ") and (index is None or self.title() == f"Take {index}"), timeout
        )
        return playable, time.perf_counter() - start

    def scrub_ms(self, value: float, index: int = 0) -> float:
        """Milliseconds, measured in the page, from committing a slider value to a different steered
        clip, playable, in the player."""
        box = self.all(".tada-slider input[type=number]")[index]
        self.js(
            self.WATCH + "const box = arguments[0];"
            "box.value = String(arguments[1]);"
            "box.dispatchEvent(new Event('input', {bubbles: true}));"
            "box.dispatchEvent(new Event('change', {bubbles: true}));"
            "box.blur();",
            box,
            value,
        )
        return self._watched(30)


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
