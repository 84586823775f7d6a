"""Sparse autoencoders on cross-attention outputs: cache, train, score concept features, report.

The names below load on first use, so ``tada --help`` and ``tada sae --help`` do not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"SAEConfig": "model", "TopKSAE": "model", "load_saes": "model", "sae_folders": "model"}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tada.sae' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
