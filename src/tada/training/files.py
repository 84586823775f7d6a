"""Safetensors files stamped with a fingerprint of what they were computed from, written atomically and reproducibly."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..files import write_safetensors


def save_stamped(
    path: Path, tensors: dict[str, torch.Tensor], stamp: str | None = None, metadata: dict[str, str] | None = None
) -> None:
    """Write beside, then rename (:func:`tada.files.write_safetensors`): a kill mid-write leaves no torn file."""
    meta = dict(metadata or {})
    if stamp is not None:
        meta["fingerprint"] = stamp
    write_safetensors(path, tensors, meta)


def read_stamp(path: Path) -> str | None:
    """The fingerprint a file was stamped with; None if missing, unreadable or unstamped."""
    try:
        with safe_open(str(path), "pt") as handle:
            return (handle.metadata() or {}).get("fingerprint")
    except (SafetensorError, OSError):
        return None
