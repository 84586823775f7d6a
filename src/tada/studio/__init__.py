"""tada studio: steer a model with sliders and hear the effect (the engine in :mod:`.takes`, the page
in :mod:`.app`). Names load on first use, so ``tada --help`` imports no torch."""

from __future__ import annotations

from typing import Any

__all__ = ["SliderSetting", "Studio", "Take", "TakeSettings"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import takes

        return getattr(takes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
