"""Learning-rate schedule shared by the trainers."""

from __future__ import annotations

import math
from typing import Any

OPTIONAL_KEYS = ("decay_steps",)


def decay_steps(config: dict[str, Any]) -> int:
    """The step the cosine decay ends at: ``decay_steps`` if set, else ``steps``. Pinning it lets a
    finished run be extended (more ``steps`` at the final learning rate) without changing its past."""
    return int(config.get("decay_steps", config["steps"]))


def learning_rate(config: dict[str, Any], step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` of ``lr`` at
    ``decay_steps`` (default: ``steps``), constant after it."""
    warm = min(1.0, (step + 1) / max(1, config["warmup_steps"]))
    progress = min(1.0, step / max(1, decay_steps(config)))
    ratio = config["min_lr_ratio"]
    return config["lr"] * warm * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
