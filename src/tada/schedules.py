"""Strength over the denoising trajectory.

A schedule maps a :class:`~tada.context.StepContext` to a gain in [0, inf); the
intervention's own strength is multiplied by it. A gain of exactly 0 skips the
intervention for that call, so the activation is left bitwise untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .context import StepContext
from .errors import TadaError


class Schedule:
    """Base class: ``schedule(ctx) -> gain``."""

    def __call__(self, ctx: StepContext) -> float:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Schedule):
    """The same gain at every step."""

    value: float = 1.0

    def __call__(self, ctx: StepContext) -> float:
        return self.value


@dataclass(frozen=True)
class Window(Schedule):
    """Full gain while the trajectory's progress is in ``[start, end)``, else 0.

    Progress is the fraction of steps done, so a window means the same part of the
    trajectory at 8 steps or at 60.
    """

    start: float = 0.0
    end: float = 1.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.start < self.end <= 1.0):
            raise TadaError(f"schedule window must satisfy 0 <= start < end <= 1, got {self.start}-{self.end}")

    def __call__(self, ctx: StepContext) -> float:
        return 1.0 if self.start <= ctx.progress < self.end else 0.0


@dataclass(frozen=True)
class LastSteps(Schedule):
    """Full gain on the last ``round(fraction * steps)`` steps of the run, else 0 (prompt switching:
    a fraction of 1 is every step, one small enough to round to no step changes nothing)."""

    fraction: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise TadaError(f"the switched fraction of steps must be in [0, 1], got {self.fraction}")

    def __call__(self, ctx: StepContext) -> float:
        return 1.0 if ctx.step >= ctx.num_steps - round(self.fraction * ctx.num_steps) else 0.0


@dataclass(frozen=True)
class TimestepFunction(Schedule):
    """Any function of the model's own timestep value (e.g. sigma for flow models)."""

    fn: Callable[[float], float]

    def __call__(self, ctx: StepContext) -> float:
        return float(self.fn(ctx.timestep))


ALWAYS = Constant(1.0)


def parse_schedule(text: str | None) -> Schedule:
    """Parse a CLI schedule: ``constant`` or ``START-END`` as trajectory fractions."""
    if text is None or text.strip() in ("", "constant", "all"):
        return ALWAYS
    try:
        start, end = (float(x) for x in text.split("-", 1))
    except ValueError:
        raise TadaError(
            f"cannot read schedule {text!r}: use 'constant' or START-END fractions such as 0.0-0.5"
        ) from None
    return Window(start, end)
