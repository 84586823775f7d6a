"""Prompt-level baselines: prompt switching and text-embedding arithmetic.

Both rewrite the text input of cross-attention layers (all of them: global; the fitted
sites: localised) from the positive and negative decorations of the prompt being
generated. A prompt in the concept's neutral wrap ("lofi, with instrument") is
decorated from its base ("lofi, with piano"); any other prompt is decorated as it is.
Fitting stores the decorations and the sites: there is nothing to learn.
"""

from __future__ import annotations

from typing import Any

from ..conditioning import Conditioning, ConditioningBank, SwapConditioning, capture_conditioning, union_mask
from ..engine import SteeringHandle
from ..schedules import ALWAYS, LastSteps
from .base import ApplyOptions, FitRequest, Method, MethodArtifact


def fit_conditioning_method(method: Method, model: Any, request: FitRequest) -> MethodArtifact:
    """The artifact of a method that needs only the decorations and the layers' text inputs."""
    request.concept.require_templates(method.name)
    return method.new_artifact(model, request, [s.alias for s in model.layer_sites(request.sites, "xattn_in")])


def swap_plan(model: Any, artifact: MethodArtifact, build: Any, schedule: Any = ALWAYS) -> SteeringHandle:
    """Give each of the artifact's layers the text ``build(model, prompts, settings)`` makes for the prompts
    being generated (conditional rows, where ``schedule`` is on)."""
    bank = ConditioningBank(build)
    return model.engine.add({model.site(a): SwapConditioning(bank, "cond", schedule) for a in artifact.sites})


def input_claims(artifact: MethodArtifact, how: str) -> dict[str, str]:
    return {f"the text input of {alias}": how for alias in artifact.sites}


class PromptSwitch(Method):
    name = "prompt-switch"
    changes = "conditioning"
    summary = (
        "generates from the prompt as given, then feeds the chosen layers its positive (alpha > 0) or "
        "negative (alpha < 0) decoration for the final steps."
    )
    alpha_convention = "fraction of the final steps switched, in [-1, 1]; |alpha| = 1 swaps the prompt throughout"
    alpha_range = (-1.0, 1.0)

    def fit(self, model: Any, request: FitRequest) -> MethodArtifact:
        return fit_conditioning_method(self, model, request)

    def apply(self, artifact: MethodArtifact, model: Any, alpha: float, options: ApplyOptions) -> SteeringHandle:
        alpha = self.checked(artifact, model, alpha, options)
        if alpha == 0.0:
            return model.engine.add({})
        concept = artifact.decorations
        decorate = concept.positive_prompt if alpha > 0 else concept.negative_prompt
        sites = [model.site(alias) for alias in artifact.sites]

        def build(model: Any, prompts: list[str], settings: dict[str, Any]) -> dict[str, Conditioning]:
            return capture_conditioning(model, [decorate(p) for p in prompts], sites, **settings)

        return swap_plan(model, artifact, build, LastSteps(abs(alpha)))

    def claims(self, artifact: MethodArtifact, model: Any) -> dict[str, str]:
        return input_claims(artifact, "replace")


class TextEmbedding(Method):
    name = "text-embedding"
    changes = "conditioning"
    summary = (
        "feeds the chosen layers e_prompt + alpha * (e_positive - e_negative): the three prompts' text "
        "states, token-aligned by encoding them together."
    )
    alpha_convention = "multiples of the positive-minus-negative text states, in [-10, 10]; 0 is off"
    alpha_range = (-10.0, 10.0)

    def fit(self, model: Any, request: FitRequest) -> MethodArtifact:
        return fit_conditioning_method(self, model, request)

    def apply(self, artifact: MethodArtifact, model: Any, alpha: float, options: ApplyOptions) -> SteeringHandle:
        alpha = self.checked(artifact, model, alpha, options)
        if alpha == 0.0:
            return model.engine.add({})
        concept = artifact.decorations
        sites = [model.site(alias) for alias in artifact.sites]

        def build(model: Any, prompts: list[str], settings: dict[str, Any]) -> dict[str, Conditioning]:
            n = len(prompts)
            batch = (
                prompts + [concept.positive_prompt(p) for p in prompts] + [concept.negative_prompt(p) for p in prompts]
            )
            # one batch: the three prompts share padding, so their states line up token by token
            captured = capture_conditioning(model, batch, sites, **settings)
            out = {}
            for alias, cond in captured.items():
                prompt, pos, neg = (cond.rows(slice(i * n, (i + 1) * n)) for i in range(3))
                states = prompt.states + alpha * (pos.states - neg.states)
                out[alias] = Conditioning(states, union_mask([prompt.mask, pos.mask, neg.mask]))
            return out

        return swap_plan(model, artifact, build)

    def claims(self, artifact: MethodArtifact, model: Any) -> dict[str, str]:
        return input_claims(artifact, "replace")
