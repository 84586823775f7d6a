"""Resumable long jobs: work split into units whose results are written as they finish.

A :class:`UnitStore` is a directory holding the job's configuration and one
``safetensors`` file per finished unit. A killed job, started again with the same
configuration, skips the units already on disk; a different configuration is refused
rather than mixed in, unless the directory holds no finished unit (a job that failed
before finishing one leaves nothing worth keeping, so it must not block the corrected
command). While a store is open it holds an exclusive lock on its directory, so a second
process pointed at the same directory is told so instead of interleaving its units; the
operating system drops the lock when the process dies, so a killed job can be resumed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .errors import TadaError
from .files import write_safetensors

_CONFIG = "job.json"
T = TypeVar("T")
_LOCK = ".lock"


class UnitStore:
    def __init__(self, directory: str | Path, config: dict[str, Any]):
        self.directory = Path(directory)
        self.config = json.loads(json.dumps(config, sort_keys=True))
        if self.directory.exists() and not self.directory.is_dir():
            raise TadaError(f"{self.directory} is a file; partial results need a directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = self._acquire_lock()
        try:
            self._claim()
        except BaseException:
            self.close()
            raise

    def _acquire_lock(self) -> int:
        fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise TadaError(
                f"another tada process (pid {owner}) is working in {self.directory}; "
                "wait for it to finish or choose another work directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

    def _claim(self) -> None:
        """Adopt the directory: resume the same job, or start afresh where nothing was finished."""
        config_path = self.directory / _CONFIG
        if config_path.exists():
            try:
                existing = json.loads(config_path.read_text())
            except (OSError, ValueError):
                existing = None
            if existing == self.config:
                return
            if any(self.directory.glob("*.safetensors")):
                raise TadaError(
                    f"{self.directory} holds partial results of a different job; "
                    "remove it or choose another work directory"
                )
        config_path.write_text(json.dumps(self.config, sort_keys=True, indent=1))

    def close(self) -> None:
        """Release the directory's lock (the partial results stay)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> UnitStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def done(self, key: str) -> bool:
        return self._path(key).is_file()

    def save(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        write_safetensors(self._path(key), tensors)

    def load(self, key: str) -> dict[str, torch.Tensor]:
        try:
            return load_file(str(self._path(key)))
        except (SafetensorError, OSError) as exc:
            message = f"partial result {self._path(key)} is unreadable ({exc}); delete it to redo that unit"
            raise TadaError(message) from None

    def remove(self) -> None:
        """Delete the partial results: call only once the job's output is safely written."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def run_resumable(
    work_dir: str | Path | None,
    config: dict[str, Any],
    compute: Callable[[UnitStore | None], T],
    out: str | Path | None,
) -> T:
    """``compute(store)`` with its units kept in ``work_dir`` (if given); the result (anything with
    ``save(path)``) is written to ``out`` before the units are deleted, so a failed final write loses
    nothing and the same call made again completes from the units."""
    store = UnitStore(work_dir, config) if work_dir is not None else None
    try:
        result = compute(store)
        if out is not None:
            result.save(out)
    finally:
        if store is not None:
            store.close()
    if store is not None:
        store.remove()
    return result
