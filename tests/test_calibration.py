"""Per-concept alpha calibration (tada.calibration): interpolation and the steering loop."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FAST, random_vector, xattn_aliases

from tada.calibration import alpha_at_distance, calibrate_alpha
from tada.errors import TadaError


def test_alpha_at_distance_interpolates_from_zero():
    assert alpha_at_distance([1.0, 2.0, 4.0], [0.1, 0.3, 0.5], 0.2) == (pytest.approx(1.5), True)
    assert alpha_at_distance([1.0, 2.0], [0.2, 0.4], 0.1) == (pytest.approx(0.5), True)  # below the first point
    assert alpha_at_distance([-4.0, -1.0, -2.0], [0.5, 0.1, 0.3], 0.4) == (pytest.approx(-3.0), True)  # any order
    assert alpha_at_distance([1.0, 2.0], [0.1, 0.2], 0.5) == (2.0, False)  # never reached: the largest
    assert alpha_at_distance([1.0, 2.0, 3.0], [0.3, 0.2, 0.4], 0.35) == (pytest.approx(2.5), True)  # dips ignored


@pytest.mark.parametrize(
    "alphas, distances, target",
    [
        ([], [], 0.1),
        ([1.0], [0.1, 0.2], 0.1),
        ([1.0, -1.0], [0.1, 0.1], 0.1),
        ([0.0, 1.0], [0, 0.1], 0.1),
        ([1.0], [0.1], 0.0),
    ],
)
def test_alpha_at_distance_refuses_bad_input(alphas, distances, target):
    with pytest.raises(TadaError):
        alpha_at_distance(alphas, distances, target)


class WaveDistance:
    """A stand-in scorer: mean absolute sample difference as the preservation distance."""

    def preservation_distance(self, a, b, sr):
        return float(np.mean(np.abs(np.asarray(a) - np.asarray(b))))


def test_calibration_matches_the_prompt_edit_distance(tiny_models):
    model = tiny_models("tada-mini")
    vector = random_vector(model, xattn_aliases(model))
    prompts, edited, seeds = ["lofi music", "folk tune"], ["fast song, lofi music", "fast song, folk tune"], [0, 1]
    cal = calibrate_alpha(model, vector, WaveDistance(), prompts, edited, [2.0, 8.0], seeds=seeds, generate_kwargs=FAST)
    plain = model.generate(prompts, seed=seeds, **FAST).samples
    edits = model.generate(edited, seed=seeds, **FAST).samples
    assert cal.target == pytest.approx(float(np.mean(np.abs(plain - edits))))
    assert np.array_equal(cal.edited_clips, edits)
    with vector.apply(model, 2.0):
        steered = model.generate(prompts, seed=seeds, **FAST).samples
    assert np.array_equal(cal.clips[0], steered)
    assert cal.distances[0] == pytest.approx(float(np.mean(np.abs(steered - plain))))
    assert cal.alpha == pytest.approx(alpha_at_distance(cal.alphas, cal.distances, cal.target)[0])
    # a known target instead of an edit; an edit that changes nothing is refused
    fixed = calibrate_alpha(
        model,
        vector,
        WaveDistance(),
        prompts,
        None,
        [-2.0],
        seeds=seeds,
        target=cal.target,
        plain=plain,
        generate_kwargs=FAST,
    )
    assert fixed.target == cal.target and fixed.alpha < 0 and fixed.edited_clips is None
    with pytest.raises(TadaError, match="same audio"):
        calibrate_alpha(model, vector, WaveDistance(), prompts, prompts, [1.0], seeds=seeds, generate_kwargs=FAST)
    with pytest.raises(TadaError, match="exactly one"):
        calibrate_alpha(model, vector, WaveDistance(), prompts, edited, [1.0], seeds=seeds, target=0.1)
