"""Model adapters: one shared mechanism, one small spec per family.

The names are imported on first use, so that ``from tada.adapters import model_kinds``
(the CLI's ``tada models``) does not pay for torch and diffusers.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {"Adapter": ".base", "GeneratedAudio": ".base", "load_model": ".registry", "model_kinds": ".kinds"}
__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_WHERE[name], __name__), name)
