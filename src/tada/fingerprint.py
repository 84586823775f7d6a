"""A short, stable hash of a module's weights: which model made a set of scores or activations.

Resumed jobs and reused tables record it, so a resume never mixes two models' numbers."""

from __future__ import annotations

import hashlib

import torch


def weights_fingerprint(module: torch.nn.Module) -> str:
    """The first 16 hex digits of a SHA-256 over the module's parameters and buffers, by name
    (the raw bytes of each tensor, so any dtype hashes, bfloat16 included)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
