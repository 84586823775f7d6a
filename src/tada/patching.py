"""What one column of a localisation sweep does, and how many columns share one denoising batch.

A *column* is one intervention on the run of a pair: patch the text input of a group of
cross-attention layers with the clean run's (``input``, the paper's protocol), patch their
output with the clean run's (``output``), or zero their output in the clean run
(``ablate``), each within a window of the trajectory (``0-0.5``: the first half of the
steps). Several columns run in one denoising batch: the batch holds one copy of the pairs
per column, block after block, and :class:`BlockPatch` edits each block's rows at each site
as its column says, leaving the other blocks untouched. Every row keeps its own noise, so a
column's clips are those of the run that patches that column alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from .context import StepContext
from .errors import TadaError
from .interventions import Capture, Intervention
from .schedules import ALWAYS, Schedule, Window

MODES = ("input", "output", "ablate")
FULL = (0.0, 1.0)


@dataclass(frozen=True)
class Column:
    """One patched run per pair: ``mode`` applied to ``sites`` (aliases) during ``window``."""

    mode: str
    sites: tuple[str, ...]
    window: tuple[float, float] = FULL

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise TadaError(f"unknown patching mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if not self.sites:
            raise TadaError("a patched group needs at least one site")

    @property
    def group(self) -> str:
        """The sites as one name: ``xattn_in.2+xattn_in.3``."""
        return "+".join(self.sites)

    @property
    def window_name(self) -> str:
        return format_window(self.window)

    @property
    def label(self) -> str:
        """Unique within a sweep: mode, group and window (``input:xattn_in.3``, ``ablate:xattn.3@0-0.5``)."""
        suffix = "" if self.window == FULL else f"@{self.window_name}"
        return f"{self.mode}:{self.group}{suffix}"

    @property
    def base(self) -> str:
        """Which prompt the patched run generates: the corrupted one, or (ablation) the clean one."""
        return "clean" if self.mode == "ablate" else "corrupt"

    def schedule(self) -> Schedule:
        return ALWAYS if self.window == FULL else Window(*self.window)

    @classmethod
    def from_label(cls, label: str) -> Column:
        mode, _, rest = label.partition(":")
        group, _, window = rest.partition("@")
        return cls(mode, tuple(group.split("+")), parse_window(window) if window else FULL)


def format_window(window: tuple[float, float]) -> str:
    return f"{window[0]:g}-{window[1]:g}"


def parse_window(text: str) -> tuple[float, float]:
    """``0-0.5`` -> (0.0, 0.5): fractions of the trajectory, start included, end excluded."""
    start, sep, end = text.strip().partition("-")
    try:
        window = (float(start), float(end)) if sep else (float("nan"), float("nan"))
    except ValueError:
        window = (float("nan"), float("nan"))
    if not 0.0 <= window[0] < window[1] <= 1.0:
        raise TadaError(f"a step window is START-END with 0 <= START < END <= 1 (e.g. 0-0.5), got {text!r}")
    return window


def layer_site(model, name: str, mode: str):
    """The site that ``mode`` acts on in the layer ``name`` names (``xattn.3`` or ``xattn_in.3``): its text
    input for ``input``, its output for ``output`` and ``ablate``."""
    site = model.site(name)
    kind = "xattn_in" if mode == "input" else "xattn"
    if site.kind == kind:
        return site
    if site.kind not in ("xattn", "xattn_in"):
        raise TadaError(f"site {name} is not a cross-attention layer; patching acts on xattn.N / xattn_in.N")
    for other in model.sites.values():
        if other.kind == kind and other.path == site.path:
            return other
    raise TadaError(f"{model.family} has no {kind} site in the layer of {name}")


def columns_for(
    model,
    modes: Sequence[str],
    groups: Iterable[Sequence[str]] | None = None,
    windows: Sequence[tuple[float, float]] = (FULL,),
) -> list[Column]:
    """Every (mode, group, window) column: each layer on its own (``groups`` None), or the groups given
    (a group of names like ``["xattn.2", "xattn.3"]``; ``["all"]`` is every cross-attention layer)."""
    layers = [s.alias for s in model.sites.values() if s.kind == "xattn"]
    if not layers:
        raise TadaError(f"{model.family} has no cross-attention layers to patch")
    chosen = [[name] for name in layers] if groups is None else [list(g) for g in groups]
    columns = []
    for mode in modes:
        for group in chosen:
            names = layers if list(group) == ["all"] else group
            sites = tuple(layer_site(model, name, mode).alias for name in names)
            if len(set(sites)) != len(sites):
                raise TadaError(f"the group {'+'.join(group)} names one layer twice")
            for window in windows:
                columns.append(Column(mode, sites, tuple(window)))
    labels = [c.label for c in columns]
    if len(set(labels)) != len(labels):
        raise TadaError("the sweep names the same group twice; give each --group once")
    return columns


class BlockPatch(Intervention):
    """Patch (or zero) the rows of chosen blocks of a batch made of ``blocks`` copies of ``n`` samples.

    Sample ``b * n + j`` is block ``b``'s copy of sample ``j``, in every guidance half. ``edits`` maps a
    block to its source, a :class:`Capture` (``rows="both"``, ``reduce="full"``) of the ``n`` samples' run
    whose activation replaces the block's, or None to zero it, and to the schedule of its window. Rows
    of other blocks, and of a block outside its window, are left exactly as they were.
    """

    rows = "both"

    def __init__(self, n: int, edits: dict[int, tuple[Capture | None, Schedule]]):
        self.n = n
        self.edits = edits

    def __call__(self, act: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        due = [(block, source) for block, (source, schedule) in self.edits.items() if schedule(ctx) != 0.0]
        if not due:
            return act
        halves = [half for half in (ctx.cond, ctx.uncond) if half is not None]
        out = act.clone()
        for block, source in due:
            if source is None:
                for half in halves:
                    out[half.start + block * self.n : half.start + (block + 1) * self.n] = 0
                continue
            cached = source.records.get(ctx.step)
            if cached is None:
                raise TadaError(f"no clean activation cached for step {ctx.step} at site {ctx.site}")
            if cached.shape[0] != self.n * len(halves) or cached.shape[1:] != act.shape[1:]:
                raise TadaError(
                    f"the clean run's activation at {ctx.site} has shape {tuple(cached.shape)}; the patched "
                    f"run's blocks need {self.n * len(halves)} rows of {tuple(act.shape[1:])} (twins of equal "
                    "token length, the same guidance)"
                )
            cached = cached.to(device=act.device, dtype=act.dtype)
            for half in halves:
                # the clean run had n samples laid out like this run's halves, in the same order
                first = half.start // (act.shape[0] // len(halves))
                source_rows = cached[first * self.n : (first + 1) * self.n]
                out[half.start + block * self.n : half.start + (block + 1) * self.n] = source_rows
        return out
