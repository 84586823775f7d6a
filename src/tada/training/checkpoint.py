"""Training checkpoints: model and optimizer tensors as safetensors, the rest as a small JSON state.

A checkpoint is a directory swapped in whole (written beside, then renamed), so a job
killed mid-write leaves the previous checkpoint intact. Optimizer state is flattened to
``<param index>.<name>`` tensors with its param groups in the file's metadata: no pickle.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from ..errors import TadaError
from ..files import write_safetensors

MODEL, OPTIMIZER, STATE = "model.safetensors", "optimizer.safetensors", "state.json"


def save(
    directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    directory = Path(directory)
    tmp, old = directory.with_name(directory.name + ".tmp"), directory.with_name(directory.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_safetensors(tmp / MODEL, model.state_dict())
    opt = optimizer.state_dict()
    tensors = {f"{index}.{name}": value for index, entries in opt["state"].items() for name, value in entries.items()}
    write_safetensors(tmp / OPTIMIZER, tensors, {"param_groups": json.dumps(opt["param_groups"])})
    (tmp / STATE).write_text(json.dumps(state))
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def latest(directory: str | Path) -> Path | None:
    """The checkpoint directory to resume from, if any (the previous one if a swap was interrupted)."""
    directory = Path(directory)
    for candidate in (directory, directory.with_name(directory.name + ".old")):
        if (candidate / STATE).is_file():
            return candidate
    return None


def load(directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore ``model`` and ``optimizer`` in place; return the JSON state."""
    directory = Path(directory)
    try:
        state = json.loads((directory / STATE).read_text())
        model.load_state_dict(load_file(str(directory / MODEL)))
        with safe_open(str(directory / OPTIMIZER), "pt") as handle:
            groups = json.loads(handle.metadata()["param_groups"])
            entries: dict[int, dict[str, torch.Tensor]] = {}
            for key in handle.keys():
                index, name = key.split(".", 1)
                entries.setdefault(int(index), {})[name] = handle.get_tensor(key)
        optimizer.load_state_dict({"state": entries, "param_groups": groups})
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        raise TadaError(f"checkpoint {directory} is unreadable ({exc}); delete it to start over") from None
    return state
