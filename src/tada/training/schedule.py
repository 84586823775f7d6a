"""Learning-rate schedule shared by the trainers."""

from __future__ import annotations

import math
from typing import Any


def learning_rate(config: dict[str, Any], step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` of ``lr`` at ``steps``."""
    warm = min(1.0, (step + 1) / max(1, config["warmup_steps"]))
    progress = min(1.0, step / max(1, config["steps"]))
    ratio = config["min_lr_ratio"]
    return config["lr"] * warm * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
