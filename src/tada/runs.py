"""Resumable long jobs: work split into units whose results are written as they finish.

A :class:`UnitStore` is a directory holding the job's configuration and one
``safetensors`` file per finished unit. A killed job, started again with the same
configuration, skips the units already on disk; a different configuration is refused
rather than mixed in.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import TadaError

_CONFIG = "job.json"


class UnitStore:
    def __init__(self, directory: str | Path, config: dict[str, Any]):
        self.directory = Path(directory)
        self.config = json.loads(json.dumps(config, sort_keys=True))
        self.directory.mkdir(parents=True, exist_ok=True)
        config_path = self.directory / _CONFIG
        if config_path.exists():
            try:
                existing = json.loads(config_path.read_text())
            except (OSError, ValueError):
                existing = None
            if existing != self.config:
                raise TadaError(
                    f"{self.directory} holds partial results of a different job; "
                    "remove it or choose another work directory"
                )
        else:
            config_path.write_text(json.dumps(self.config, sort_keys=True, indent=1))

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def done(self, key: str) -> bool:
        return self._path(key).is_file()

    def save(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        path = self._path(key)
        tmp = path.with_name(path.name + ".tmp")
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, path)

    def load(self, key: str) -> dict[str, torch.Tensor]:
        try:
            return load_file(str(self._path(key)))
        except (SafetensorError, OSError) as exc:
            message = f"partial result {self._path(key)} is unreadable ({exc}); delete it to redo that unit"
            raise TadaError(message) from None

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
