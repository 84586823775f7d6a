"""How far to push: a per-concept alpha range matched to the concept's own prompt edit.

Steering strength means different things for different concepts and models: the same
alpha that barely moves one concept pushes another off the music. The paper sweeps
alphas "calibrated per concept" and cuts its curves at the preservation distance of a
full prompt swap. This module finds, for one direction of one steering vector, the
alpha at which steering moves the audio (mean preservation distance to the unsteered
clip of the same prompt and seed) as far as rewriting the prompt does (mean distance
between the clip of the neutral prompt and that of the edited prompt, same seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import TadaError


@dataclass
class AlphaCalibration:
    """The distance a prompt edit moves the audio, the steering distances probed, and the matching alpha."""

    target: float
    alphas: list[float]
    distances: list[float]
    alpha: float
    reached: bool  # False: even the largest probed alpha moved the audio less; alpha is that largest one
    clips: list[np.ndarray] = field(default_factory=list, repr=False)  # the steered clips, per probed alpha
    edited_clips: np.ndarray | None = field(default=None, repr=False)  # the edited prompts' clips, if generated


def alpha_at_distance(alphas: Sequence[float], distances: Sequence[float], target: float) -> tuple[float, bool]:
    """The alpha (same sign as ``alphas``) where the distance first reaches ``target``, linearly interpolated.

    ``alphas`` are of one sign; alpha 0 has distance 0. Returns ``(alpha, reached)``;
    when no probed alpha reaches the target the largest one is returned with ``False``.
    """
    if len(alphas) != len(distances) or not alphas:
        raise TadaError("give one distance per probed alpha")
    if target <= 0:
        raise TadaError("the target distance must be positive")
    signs = {np.sign(a) for a in alphas}
    if len(signs) != 1 or 0 in signs:
        raise TadaError("probe alphas of one sign, without 0")
    order = np.argsort(np.abs(alphas))
    prev_a, prev_d = 0.0, 0.0
    for i in order:
        a, d = float(alphas[i]), float(distances[i])
        if d >= target:
            frac = (target - prev_d) / (d - prev_d) if d > prev_d else 1.0
            return prev_a + frac * (a - prev_a), True
        prev_a, prev_d = a, max(prev_d, d)
    return float(alphas[order[-1]]), False


def mean_distance(scorer: Any, a: np.ndarray, b: np.ndarray, sr: int) -> float:
    """Mean preservation distance between clip ``i`` of ``a`` and clip ``i`` of ``b``."""
    if len(a) != len(b):
        raise TadaError(f"{len(a)} clips against {len(b)}")
    return float(np.mean([scorer.preservation_distance(x, y, sr) for x, y in zip(a, b)]))


def calibrate_alpha(
    model: Any,
    vector: Any,
    scorer: Any,
    prompts: Sequence[str],
    edited: Sequence[str] | None,
    alphas: Sequence[float],
    *,
    seeds: Sequence[int],
    target: float | None = None,
    plain: np.ndarray | None = None,
    generate_kwargs: dict[str, Any] | None = None,
    steer_kwargs: dict[str, Any] | None = None,
) -> AlphaCalibration:
    """Match ``vector``'s alpha (one direction, the sign of ``alphas``) to the prompt edit ``prompts -> edited``.

    Or to a known ``target`` distance (``edited=None``), e.g. the other direction's edit
    when this direction's edit is the neutral prompt itself ("{p}, with piano" / "{p}").
    ``plain`` may pass in the unsteered clips of ``prompts`` if they are at hand.
    """
    gen = generate_kwargs or {}
    if len(prompts) != len(seeds) or (edited is not None and len(edited) != len(prompts)):
        raise TadaError("give one edited prompt and one seed per prompt")
    if (edited is None) == (target is None):
        raise TadaError("give exactly one of edited prompts or a target distance")
    edits = None
    if plain is None:
        plain = model.generate(list(prompts), seed=list(seeds), **gen).samples
    if edited is not None:
        edits = model.generate(list(edited), seed=list(seeds), **gen).samples
        target = mean_distance(scorer, plain, edits, model.sample_rate)
    if target <= 0:
        raise TadaError("the edited prompts give the same audio as the plain ones; nothing to calibrate against")
    distances, clips = [], []
    for alpha in alphas:
        with vector.apply(model, alpha, **(steer_kwargs or {})):
            steered = model.generate(list(prompts), seed=list(seeds), **gen).samples
        distances.append(mean_distance(scorer, steered, plain, model.sample_rate))
        clips.append(steered)
    alpha, reached = alpha_at_distance(alphas, distances, target)
    return AlphaCalibration(target, [float(a) for a in alphas], distances, alpha, reached, clips, edits)
