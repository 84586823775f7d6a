"""Checks of user input made before any work starts, each failing with one self-contained line.

A bad number or path found after minutes of generation wastes the minutes and, worse, can
be reported as a traceback from deep inside a library. These checks run first, at the
CLI boundary and again in the API functions that take the same values, so every way in
is guarded by the same rules. No torch import at module level: the CLI imports this
before it knows whether a model is needed.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from .errors import TadaError

# Longer than any supported model generates in one go (Stable Audio Open: 47 s, ACE-Step: 240 s);
# the diffusers families allocate latents for the whole length up front, so 1e9 s is terabytes.
MAX_SECONDS = 600.0
MAX_STEPS = 1000  # samplers in this field use 8-200 steps; 1000 is a full DDPM schedule
MAX_GUIDANCE = 100.0  # guidance scales in use are 1-15; beyond 100 the output is numerically meaningless
MAX_SEED = 2**32 - 1  # numpy and the corpus renderer seed with 32 bits; torch accepts that range too


def finite(name: str, value: float, low: float, high: float, why: str, low_open: bool = False) -> float:
    """``value`` as a float if finite and within ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    value = float(value)
    below = value <= low if low_open else value < low
    if not math.isfinite(value) or below or value > high:
        bracket = "(" if low_open else "["
        raise TadaError(f"{name} must be a finite number in {bracket}{low:g}, {high:g}] ({why}); got {value:g}")
    return value


def integer(name: str, value: int, low: int, high: int, why: str) -> int:
    """``value`` if it is an integer within ``[low, high]``."""
    if isinstance(value, bool) or int(value) != value or not low <= value <= high:
        raise TadaError(f"{name} must be an integer in [{low}, {high}] ({why}); got {value}")
    return int(value)


def port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on, before any model or file is loaded."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        if probe.connect_ex((host if host not in ("0.0.0.0", "") else "127.0.0.1", port)) == 0:
            raise TadaError(f"port {port} on {host} is already taken: give another with --port")


def generation(
    seconds: float | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int | None = None,
    n_seeds: int = 1,
) -> None:
    """The sampler settings every generating command shares; None means the model's default."""
    if seconds is not None:
        finite("--seconds", seconds, 0.0, MAX_SECONDS, "a clip length in seconds", low_open=True)
    if steps is not None:
        integer("--steps", steps, 1, MAX_STEPS, "denoising steps")
    if guidance is not None:
        finite("--guidance", guidance, 0.0, MAX_GUIDANCE, "a classifier-free guidance scale")
    if seed is not None:
        integer("--seed", seed, 0, MAX_SEED - max(0, n_seeds - 1), f"the seeds used are seed ... seed+{n_seeds - 1}")


def count(name: str, value: int | None, why: str, high: int = 1_000_000) -> int | None:
    """A count option (pairs, workers, threads, clips): None or at least 1."""
    return None if value is None else integer(name, value, 1, high, why)


def device(name: str) -> str:
    """A torch device this installation can use (imports torch: call only where a model is loaded)."""
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        reason = str(exc).splitlines()[0]
        raise TadaError(f"--device {name!r} is not a torch device ({reason}); use cpu or cuda") from None
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": hasattr(torch.backends, "mps") and torch.backends.mps.is_available(),
    }
    if not available.get(dev.type, False):
        have = ", ".join(kind for kind, ok in available.items() if ok)
        raise TadaError(f"--device {name}: this torch installation cannot use it (available: {have})")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise TadaError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return name


def output_file(path: Path, suffixes: tuple[str, ...], what: str, option: str = "--out") -> Path:
    """A file path tada can write: not a directory, the right suffix, in a directory that takes files.

    Nothing is created here (a later error must leave nothing behind); the nearest existing
    directory is probed with a real temporary file, the only check that catches read-only
    mounts, /proc and missing permissions alike.
    """
    if path.is_dir():
        raise TadaError(f"{option} {path} is a directory; give a file name ending in {suffixes[0]}")
    if path.suffix.lower() not in suffixes:
        raise TadaError(f"{option} {path}: {what} must end in {' or '.join(suffixes)}")
    writable_directory(path.parent, option, f"cannot write {path}")
    return path


def writable_directory(directory: Path, option: str, context: str) -> Path:
    """Prove that ``directory`` (or, if it does not exist yet, its nearest existing parent) takes a file."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".tada-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TadaError(f"{option}: {context}: {reason} ({existing})") from None
    return directory


def work_directory(path: Path, option: str = "--work-dir") -> Path:
    """A place for partial results: not an existing file, and writable (created later, by the job)."""
    if path.exists() and not path.is_dir():
        raise TadaError(f"{option} {path} is a file; partial results need a directory")
    return writable_directory(path, option, "cannot keep partial results there")


def input_file(path: Path, what: str) -> Path:
    """An existing regular file (not a directory, device or pipe)."""
    if not path.exists():
        raise TadaError(f"{what} {path} does not exist")
    if not path.is_file():
        raise TadaError(f"{what} {path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise TadaError(f"{what} {path} is not readable")
    return path
