"""Where in the denoising trajectory an intervention is running.

The context is *set*, never inferred by counting hook calls: the step comes from the
timestep the denoiser was called with, looked up in the scheduler's own timestep list,
and the guidance rows come from the batch layout the model adapter declares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

RowMode = Literal["cond", "uncond", "both"]
ROW_MODES: tuple[str, ...] = ("cond", "uncond", "both")


@dataclass(frozen=True)
class GuidanceLayout:
    """How a model stacks classifier-free guidance passes along the batch.

    ``order`` names the halves of a doubled batch, e.g. ``("uncond", "cond")`` for
    Stable Audio and AudioLDM2, ``("cond", "uncond")`` for ACE-Step. A call whose batch
    equals the number of requested samples is a conditional-only pass.
    """

    order: tuple[str, str]

    def __post_init__(self) -> None:
        if sorted(self.order) != ["cond", "uncond"]:
            raise ValueError(f"guidance order must name 'cond' and 'uncond' once each, got {self.order}")

    def rows(self, n_rows: int, n_samples: int) -> tuple[slice, slice | None]:
        """Return (conditional rows, unconditional rows or None) for one denoiser call."""
        if n_rows == n_samples:
            return slice(0, n_rows), None
        if n_rows == 2 * n_samples:
            first, second = slice(0, n_samples), slice(n_samples, n_rows)
            return (first, second) if self.order[0] == "cond" else (second, first)
        from .errors import TadaError

        raise TadaError(
            f"the denoiser was called with {n_rows} rows for {n_samples} samples; "
            f"expected {n_samples} (no guidance) or {2 * n_samples} (guidance)"
        )


@dataclass(slots=True)
class StepContext:
    """What every intervention knows about the denoiser call it is running in.

    The engine builds one per denoiser call and sets ``site`` and ``original`` as it
    walks the sites, so interventions must read it, not keep it. ``prompts`` are the
    texts of the clips being generated (one per sample); ``inputs`` holds the keyword
    inputs that travel with a site's input (a cross-attention layer's attention mask),
    which an intervention may replace; ``call`` is the denoiser call's (args, kwargs).
    """

    step: int
    num_steps: int
    timestep: float
    n_rows: int
    cond: slice | None  # None: a separate unconditional pass (see HookEngine.guidance_pass)
    uncond: slice | None = None
    site: str = ""
    original: torch.Tensor | None = field(default=None, repr=False, compare=False)
    prompts: tuple[str, ...] = ()
    inputs: dict[str, object] = field(default_factory=dict, repr=False, compare=False)
    call: tuple[tuple, dict] | None = field(default=None, repr=False, compare=False)

    @property
    def progress(self) -> float:
        """Fraction of the trajectory already done when this step starts, in [0, 1)."""
        return self.step / self.num_steps

    def rows(self, mode: str) -> slice | None:
        """The batch rows an intervention in ``mode`` acts on (None: none this call)."""
        if mode == "cond":
            return self.cond
        if mode == "uncond":
            return self.uncond
        if mode == "both":
            return slice(0, self.n_rows)
        raise ValueError(f"unknown row mode {mode!r}; choose one of {', '.join(ROW_MODES)}")
