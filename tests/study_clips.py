"""Clip folders for the listening-study tests, built in code: items of a reference and steered clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
CONDITIONS = ("caa-local", "sae-local", "prompt-switch-global")


def tone(freq: float, seconds: float = 1.0, level: float = 0.3, seed: int = 0) -> np.ndarray:
    """A tone with some broadband noise (so a low-pass anchor differs from it), ``(frames,)``."""
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (level * np.sin(2 * np.pi * freq * t) + 0.05 * noise).astype(np.float32)


def clip_folder(root: Path, items: int = 2, conditions=CONDITIONS, seconds: float = 1.0) -> Path:
    """``root/<item>/reference.wav`` and one ``<condition>.wav`` per condition, each item with its change."""
    for i in range(items):
        folder = root / f"item{i}"
        folder.mkdir(parents=True)
        sf.write(folder / "reference.wav", tone(220 * (i + 1), seconds, seed=i), SR, subtype="FLOAT")
        for j, condition in enumerate(conditions):
            level = 0.1 * (j + 1)  # different loudness: the study must even it out
            clip = tone(220 * (i + 1) * (1 + 0.5 * (j + 1)), seconds, level, seed=10 * i + j)
            sf.write(folder / f"{condition}.wav", clip, SR, subtype="FLOAT")
        (folder / "item.json").write_text('{"change": "toward more piano"}')
    return root


def bench_folder(root: Path, concepts=("piano", "tempo"), variants=("caa-local", "sae-global")) -> Path:
    """The example audio a `tada bench` run leaves: baseline and each variant's mid and strong alphas."""
    for c, concept in enumerate(concepts):
        base = root / "audio" / concept
        (base / "baseline").mkdir(parents=True)
        sf.write(base / "baseline" / "alpha+0.wav", tone(200 + 50 * c, 0.5), SR, subtype="FLOAT")
        for v, variant in enumerate(variants):
            (base / variant).mkdir()
            for alpha in (1.5 * (v + 1), 4.0 * (v + 1), -2.0, -6.5):
                sf.write(base / variant / f"alpha{alpha:+.4g}.wav", tone(300 + 40 * v + alpha, 0.5), SR)
    return root


class StudyProcess:
    """``tada study serve`` in its own process, so a test can kill it as a crash would."""

    def __init__(self, folder: Path, port: int):
        import sys

        tada = Path(sys.executable).with_name("tada")
        self.command = [str(tada), "study", "serve", str(folder), "--port", str(port)]
        self.url = f"http://127.0.0.1:{port}/"
        self.process = None

    def start(self) -> StudyProcess:
        import os
        import subprocess
        import time
        import urllib.request

        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen(self.command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                with urllib.request.urlopen(self.url, timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.process.kill()
        raise AssertionError(self.process.stdout.read().decode())

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed that was not already committed."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM, which the server takes as Ctrl-C (SIGINT itself is ignored by processes started in the
        background of a non-interactive shell, as a CI runner may start the suite)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
