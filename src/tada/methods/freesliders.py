"""FreeSliders: score-space steering, ``eps = eps_neutral(guided) + alpha * (eps_pos - eps_neg)``.

From a split step on, every denoiser call gets one extra *unguided* pass for the positive
and the negative decoration of each prompt being generated (one nested call of the
denoiser on the conditional rows' inputs, duplicated: positive rows, then negative rows),
and the difference of their predictions, times alpha, is added to the call's output.
Before the split step the generation is plain. The cost is two denoiser rows per clip per
steered step, run as one extra call.

The positive and negative conditioning is given by swapping the text input of
cross-attention layers during the extra pass: every layer's (global, which is the same as
encoding the decorated prompt) or only the fitted layers' (localised).

Where the difference is added: the pipelines combine guidance *after* the denoiser, so the
same ``delta`` is added to the conditional and to the unconditional rows. For linear
classifier-free guidance (tada-mini, Stable Audio, AudioLDM2), ``(u + d) + g * ((c + d) -
(u + d)) = guided + d`` exactly, whatever the scale ``g``, and without guidance the one
conditional row gets ``d``. ACE-Step 1.5 guides with APG (momentum, norm clipping and
removal of the update's component parallel to the conditional prediction): its input
``c - u`` is unchanged, so momentum and clipping are exact, and only the direction that
the parallel component is removed along moves from ``c`` to ``c + d``; the result is
``guided + d`` up to that projection.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..concepts import Concept
from ..conditioning import ConditioningBank, capture_conditioning, predict_with
from ..context import StepContext
from ..engine import Site, SteeringHandle
from ..errors import ArtifactError, TadaError
from ..interventions import Intervention
from ..schedules import Window
from .base import ApplyOptions, FitRequest, Method, MethodArtifact

# The reference implementation's split step is 5 of ACE-Step's 30 steps: the first sixth of the
# trajectory, where the layout of the clip forms, stays plain so the neutral prompt's structure survives.
DEFAULT_FROM_STEP = 5 / 30
FIT_OPTIONS = ("from_step",)


def read_from_step(value: Any) -> float:
    """The split step as a trajectory fraction in [0, 1): the first steered step is the first whose
    progress (steps done / steps) reaches it."""
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        fraction = math.nan
    if not math.isfinite(fraction) or not 0.0 <= fraction < 1.0:
        raise TadaError(
            f"from_step must be a fraction of the trajectory in [0, 1) (0 steers every step); got {value!r}"
        )
    return fraction


def _fit_options(request: FitRequest) -> float:
    unknown = sorted(set(request.options) - set(FIT_OPTIONS))
    if unknown:
        raise TadaError(f"freesliders takes no fit option {', '.join(unknown)} (it takes: {', '.join(FIT_OPTIONS)})")
    return read_from_step(request.options.get("from_step", DEFAULT_FROM_STEP))


def _conditional_rows_twice(value: Any, ctx: StepContext) -> Any:
    """A batch-shaped tensor's conditional rows, stacked twice (positive pass, negative pass); anything else as is."""
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == ctx.n_rows:
        rows = value[ctx.cond]
        return torch.cat([rows, rows])
    return value


class ScoreSlider(Intervention):
    """At the denoiser's output (``model.denoiser_site``): add ``alpha * (eps_pos - eps_neg)`` to the
    rows of every guidance half, from the split step on (see the module docstring for why every half)."""

    rows = "both"

    def __init__(self, model: Any, concept: Concept, sites: list[Site], alpha: float, from_step: float):
        self.model = model
        self.concept = concept
        self.sites = sites
        self.alpha = alpha
        self.schedule = Window(from_step, 1.0)
        self.bank = ConditioningBank(self._decorated_conditioning)

    def _decorated_conditioning(self, model: Any, prompts: list[str], settings: dict[str, Any]) -> dict:
        """Per layer, the positive decorations' text input (rows 0..n) then the negative ones' (rows n..2n)."""
        decorated = [self.concept.positive_prompt(p) for p in prompts] + [
            self.concept.negative_prompt(p) for p in prompts
        ]
        return capture_conditioning(model, decorated, self.sites, **settings)

    def prepare(self, model: Any, prompts: list[str], **settings: Any) -> None:
        self.bank.prepare(model, prompts, **settings)

    def edit(self, act: torch.Tensor, rows: slice, gain: float, ctx: StepContext) -> torch.Tensor:
        positive, negative = self._contrast_passes(ctx)
        delta = (self.alpha * gain) * (positive - negative).to(act.dtype)
        out = act.clone()
        for half in (ctx.cond, ctx.uncond):
            if half is not None:
                out[half] += delta
        return out

    def _contrast_passes(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        """One nested, unguided denoiser call: the conditional rows' inputs twice, the chosen layers reading
        the positive decorations in the first copy and the negative ones in the second."""
        if ctx.call is None:
            raise TadaError("freesliders ran without the denoiser call's inputs; generate through the model adapter")
        if ctx.cond is None:
            raise TadaError(
                "freesliders needs the conditional rows in the same denoiser call as the unconditional ones"
            )
        args, kwargs = ctx.call
        args = tuple(_conditional_rows_twice(a, ctx) for a in args)
        kwargs = {key: _conditional_rows_twice(value, ctx) for key, value in kwargs.items()}
        conditioning = {site.alias: self.bank[site.alias] for site in self.sites}
        prediction = predict_with(self.model, conditioning, args, kwargs)
        n = ctx.cond.stop - ctx.cond.start
        return prediction[:n], prediction[n:]


class FreeSliders(Method):
    name = "freesliders"
    changes = "score"
    summary = (
        "from a split step on, adds alpha * (eps_positive - eps_negative) to the guided prediction, from one "
        "extra unguided pass per clip and step in which the chosen layers read the positive or negative decoration."
    )
    alpha_convention = "multiples of the positive-minus-negative prediction, in [-10, 10]; 0 is off"
    alpha_range = (-10.0, 10.0)

    def fit(self, model: Any, request: FitRequest) -> MethodArtifact:
        """Nothing to learn: the artifact records the decorations, the layers and the split step."""
        request.concept.require_templates(self.name)
        from_step = _fit_options(request)
        sites = model.layer_sites(request.sites, "xattn_in")
        return self.new_artifact(model, request, [s.alias for s in sites], settings={"from_step": from_step})

    def apply(self, artifact: MethodArtifact, model: Any, alpha: float, options: ApplyOptions) -> SteeringHandle:
        alpha = self.checked(artifact, model, alpha, options)
        try:
            from_step = read_from_step(artifact.settings.get("from_step", DEFAULT_FROM_STEP))
        except TadaError as exc:
            raise ArtifactError(f"this freesliders artifact is corrupt: {exc}") from None
        if alpha == 0.0:
            return model.engine.add({})
        sites = [model.site(alias) for alias in artifact.sites]
        slider = ScoreSlider(model, artifact.decorations, sites, alpha, from_step)
        return model.engine.add({model.denoiser_site: slider})

    def claims(self, artifact: MethodArtifact, model: Any) -> dict[str, str]:
        return {"the denoiser output": "add"}
