"""CAA behind the method interface: ``tada fit --method caa`` is ``tada caa``."""

from __future__ import annotations

from typing import Any

from ..artifacts import MAX_ALPHA, SteeringVector
from ..engine import SteeringHandle
from .base import ApplyOptions, FitRequest, Method


class CAA(Method):
    name = "caa"
    changes = "activations"
    summary = (
        "adds a unit direction per step (mean positive minus mean negative cross-attention output) "
        "to every token of the chosen layers' outputs, conditional pass; optional re-normalisation."
    )
    alpha_convention = "multiples of the unit vector; 0 is off, the sign picks the pole"
    alpha_range = (-MAX_ALPHA, MAX_ALPHA)

    def fit(self, model: Any, request: FitRequest) -> SteeringVector:
        from ..caa import compute_caa

        sites = None if request.sites is None else [s.alias for s in model.layer_sites(request.sites, "xattn")]
        return compute_caa(
            model,
            request.pairs,
            sites=sites,
            seconds=request.seconds,
            steps=request.steps,
            guidance=request.guidance,
            seed=request.seed,
            batch_pairs=request.batch_pairs,
            work_dir=request.work_dir,
            concept=request.concept.name,
            prompt_set=request.prompt_set,
            progress=request.progress,
            out=request.out,
            decorations=request.concept,
        )

    def apply(self, artifact: SteeringVector, model: Any, alpha: float, options: ApplyOptions) -> SteeringHandle:
        alpha = self.check_alpha(alpha)
        given = {k: v for k, v in options.__dict__.items() if v is not None}
        return artifact.apply(model, alpha, **given)

    def claims(self, artifact: SteeringVector, model: Any) -> dict[str, str]:
        return artifact.claims(model)
