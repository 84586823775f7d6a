"""Safetensors files written atomically and stamped with a fingerprint of what they were computed from."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file


def save_stamped(
    path: Path, tensors: dict[str, torch.Tensor], stamp: str | None = None, metadata: dict[str, str] | None = None
) -> None:
    """Write beside, then rename: a kill mid-write leaves no torn file."""
    meta = dict(metadata or {})
    if stamp is not None:
        meta["fingerprint"] = stamp
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def read_stamp(path: Path) -> str | None:
    """The fingerprint a file was stamped with; None if missing, unreadable or unstamped."""
    try:
        with safe_open(str(path), "pt") as handle:
            return (handle.metadata() or {}).get("fingerprint")
    except (SafetensorError, OSError):
        return None
