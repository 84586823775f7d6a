"""Interventions: plain objects with one method, ``(activation, ctx) -> activation``.

An activation is a ``(rows, tokens, dim)`` tensor read at a site. Each intervention
acts on the guidance rows it was asked for (``rows``), gated by its schedule. When the
effective gain is zero it returns the activation object itself, so steering at
strength 0 is bitwise identical to no steering.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .context import ROW_MODES, StepContext
from .errors import ActivationShapeError, TadaError
from .schedules import ALWAYS, Schedule


def _check_rows(rows: str) -> str:
    if rows not in ROW_MODES:
        raise TadaError(f"unknown guidance mode {rows!r}; choose one of {', '.join(ROW_MODES)}")
    return rows


def _on_rows(act: torch.Tensor, rows: slice, edit: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply ``edit`` to ``act[rows]`` without touching the other rows or ``act`` itself."""
    if rows.start in (0, None) and rows.stop >= act.shape[0]:
        return edit(act)
    out = act.clone()
    out[rows] = edit(act[rows])
    return out


class Intervention:
    """Base class. Subclasses implement :meth:`edit` on the selected rows."""

    rows: str = "cond"
    schedule: Schedule = ALWAYS

    def __call__(self, act: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        gain = self.schedule(ctx)
        sel = ctx.rows(self.rows)
        if gain == 0.0 or sel is None:
            return act
        return self.edit(act, sel, gain, ctx)

    def edit(self, act: torch.Tensor, rows: slice, gain: float, ctx: StepContext) -> torch.Tensor:
        raise NotImplementedError


class TimestepTable:
    """Per-timestep vectors, interpolated linearly in the model's timestep value.

    Storing vectors against timesteps rather than step indices is what lets a vector
    computed at N steps be applied at any other step count. Lookups are cached per
    (timestep, device, dtype): a sampler revisits the same timesteps on every run.
    """

    def __init__(self, timesteps: torch.Tensor, values: torch.Tensor, unit_norm: bool = False):
        if values.ndim == 1:
            values = values[None]
            timesteps = timesteps.reshape(1)
        if timesteps.ndim != 1 or values.ndim != 2 or values.shape[0] != timesteps.shape[0]:
            raise TadaError(f"timestep table shapes disagree: {tuple(timesteps.shape)} vs {tuple(values.shape)}")
        order = torch.argsort(timesteps.double())
        self.timesteps = timesteps.double()[order]
        self.values = values.float()[order]
        self.unit_norm = unit_norm
        self._ts = self.timesteps.tolist()
        self._placed: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._cache: dict[tuple[float, torch.device, torch.dtype], torch.Tensor] = {}

    @property
    def dim(self) -> int:
        return self.values.shape[1]

    def at(self, t: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The vector at timestep ``t`` (clamped to the table's range)."""
        key = (t, device, dtype)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        values = self._placed.get((device, dtype))
        if values is None:
            values = self._placed[(device, dtype)] = self.values.to(device=device, dtype=torch.float32)
        ts = self._ts
        hi = bisect.bisect_left(ts, t)
        if hi == 0 or ts[min(hi, len(ts) - 1)] == t:
            vec = values[min(hi, len(ts) - 1)]
        elif hi == len(ts):
            vec = values[-1]
        else:
            weight = (t - ts[hi - 1]) / (ts[hi] - ts[hi - 1])
            vec = torch.lerp(values[hi - 1], values[hi], weight)
            if self.unit_norm:
                vec = vec / vec.norm().clamp_min(1e-12)
        vec = vec.to(dtype)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = vec
        return vec


def as_table(vector: torch.Tensor | TimestepTable) -> TimestepTable:
    if isinstance(vector, TimestepTable):
        return vector
    return TimestepTable(torch.zeros(1), vector.reshape(1, -1))


class DirectionIntervention(Intervention):
    """Shared state of interventions along a (per-timestep) direction with a strength."""

    def __init__(
        self,
        direction: torch.Tensor | TimestepTable,
        strength: float = 1.0,
        rows: str = "cond",
        schedule: Schedule = ALWAYS,
    ):
        if not math.isfinite(strength):
            raise TadaError(f"strength must be a finite number, got {strength}")
        self.table = as_table(direction)
        self.strength = float(strength)
        self.rows = _check_rows(rows)
        self.schedule = schedule
        self._cache: dict[tuple, torch.Tensor] = {}  # per-step tensors derived from the table

    def _check_width(self, act: torch.Tensor, ctx: StepContext) -> None:
        if act.shape[-1] != self.table.dim:
            raise TadaError(f"site {ctx.site} has width {act.shape[-1]} but the vector has {self.table.dim}")

    def _cached(self, key: tuple, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Derived tensors repeat every run (same timesteps), so build each once."""
        value = self._cache.get(key)
        if value is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            value = self._cache[key] = make()
        return value


class AddVector(DirectionIntervention):
    """Add ``strength * gain * v`` to every token (contrastive activation addition)."""

    def edit(self, act: torch.Tensor, rows: slice, gain: float, ctx: StepContext) -> torch.Tensor:
        scale = self.strength * gain
        if scale == 0.0:
            return act
        self._check_width(act, ctx)
        return act + self._delta(scale, act, rows, ctx.timestep)

    def _delta(self, scale: float, act: torch.Tensor, rows: slice, t: float) -> torch.Tensor:
        """``scale * v`` on the selected rows, zero elsewhere, shaped to broadcast over tokens.

        Cached per step layout, so the edit itself is a single broadcast add.
        """
        n = act.shape[0]

        def make() -> torch.Tensor:
            shape = (n,) + (1,) * (act.ndim - 2) + (act.shape[-1],)
            delta = torch.zeros(shape, device=act.device, dtype=act.dtype)
            delta[rows] = scale * self.table.at(t, act.device, act.dtype)
            return delta

        return self._cached(("delta", t, scale, rows.start, rows.stop, n, act.device, act.dtype, act.ndim), make)


class Renormalize(Intervention):
    """Rescale each token to the norm it had when it entered this site's stack."""

    def __init__(self, rows: str = "cond", schedule: Schedule = ALWAYS):
        self.rows = _check_rows(rows)
        self.schedule = schedule

    def edit(self, act: torch.Tensor, rows: slice, gain: float, ctx: StepContext) -> torch.Tensor:
        if ctx.original is None or ctx.original is act:
            return act
        original = ctx.original

        def rescale(a: torch.Tensor) -> torch.Tensor:
            ref = original[rows] if a.shape[0] != original.shape[0] else original
            target = ref.norm(dim=-1, keepdim=True)
            return a * (target / a.norm(dim=-1, keepdim=True).clamp_min(1e-12))

        return _on_rows(act, rows, rescale)


class ProjectOut(DirectionIntervention):
    """Remove ``strength`` of each token's component along a direction (1 = all of it)."""

    def edit(self, act: torch.Tensor, rows: slice, gain: float, ctx: StepContext) -> torch.Tensor:
        scale = self.strength * gain
        if scale == 0.0:
            return act
        self._check_width(act, ctx)

        def unit() -> torch.Tensor:
            d = self.table.at(ctx.timestep, act.device, act.dtype)
            return d / d.norm().clamp_min(1e-12)

        d = self._cached(("unit", ctx.timestep, act.device, act.dtype), unit)
        return _on_rows(act, rows, lambda a: a - scale * (a @ d)[..., None] * d)


@dataclass
class Capture(Intervention):
    """Record what the site sees, keyed by step; never changes the activation.

    ``reduce="mean"`` keeps the mean over tokens (``(rows, dim)`` per step: what CAA
    needs); ``reduce="full"`` keeps the whole tensor (what activation patching needs).
    """

    rows: str = "cond"
    reduce: str = "mean"
    schedule: Schedule = ALWAYS
    steps: list[int] = field(default_factory=list)
    timesteps: list[float] = field(default_factory=list)
    records: dict[int, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_rows(self.rows)
        if self.reduce not in ("mean", "full"):
            raise TadaError(f"unknown capture reduction {self.reduce!r}; choose 'mean' or 'full'")

    def edit(self, act: torch.Tensor, rows: slice, gain: float, ctx: StepContext) -> torch.Tensor:
        sel = act[rows]
        self.records[ctx.step] = sel.mean(dim=1) if self.reduce == "mean" else sel.detach().clone()
        self.steps.append(ctx.step)
        self.timesteps.append(ctx.timestep)
        return act

    def clear(self) -> None:
        self.steps.clear()
        self.timesteps.clear()
        self.records.clear()


class Replace(Intervention):
    """Swap the selected rows for a cached tensor: a fixed one, or a capture's per-step record.

    With a ``Capture(reduce="full")`` of a clean run as the source this is activation
    patching: the corrupted run sees exactly what the clean run saw at this site.
    """

    def __init__(self, source: torch.Tensor | Capture, rows: str = "cond", schedule: Schedule = ALWAYS):
        if isinstance(source, Capture) and source.reduce != "full":
            raise TadaError("Replace needs a Capture made with reduce='full'")
        self.source = source
        self.rows = _check_rows(rows)
        self.schedule = schedule

    def edit(self, act: torch.Tensor, rows: slice, gain: float, ctx: StepContext) -> torch.Tensor:
        if isinstance(self.source, Capture):
            cached = self.source.records.get(ctx.step)
            if cached is None:
                raise TadaError(f"no cached activation for step {ctx.step} at site {ctx.site}")
        else:
            cached = self.source
        target_shape = act[rows].shape
        if cached.shape != target_shape:
            raise ActivationShapeError(
                f"cached activation at site {ctx.site} has shape {tuple(cached.shape)}, "
                f"the run has {tuple(target_shape)}"
            )
        cached = cached.to(device=act.device, dtype=act.dtype)
        return _on_rows(act, rows, lambda a: cached)
