"""Tests of tada.study.stats: Wilson interval, Bradley-Terry fit, Krippendorff's alpha."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import log_expit

from tada.study.stats import bradley_terry, bradley_terry_probability, krippendorff_alpha, wilson_interval

# A Bradley-Terry fit that stops before converging warns; in these tests that is a failure.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

# ---------------------------------------------------------------- Wilson


def test_wilson_known_value():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=5e-4)
    assert high == pytest.approx(0.9433, abs=5e-4)


def test_wilson_level_widens_interval():
    low95, high95 = wilson_interval(30, 50, 0.95)
    low99, high99 = wilson_interval(30, 50, 0.99)
    assert low99 < low95 < 0.6 < high95 < high99


def test_wilson_zero_successes():
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    z2 = 1.959963984540054**2
    assert high == pytest.approx(z2 / (10 + z2))


def test_wilson_all_successes_is_mirror_of_none():
    low, high = wilson_interval(10, 10)
    assert high == 1.0
    assert low == pytest.approx(1.0 - wilson_interval(0, 10)[1])


def test_wilson_no_trials_is_nan():
    low, high = wilson_interval(0, 0)
    assert math.isnan(low) and math.isnan(high)


@pytest.mark.parametrize("successes,trials", [(1, 3), (7, 9), (13.5, 40), (500, 1000), (2, 1000)])
def test_wilson_contains_point_estimate(successes, trials):
    low, high = wilson_interval(successes, trials)
    assert 0.0 <= low < successes / trials < high <= 1.0


@pytest.mark.parametrize("args", [(11, 10), (-1, 10), (1, -1), (5, 10, 1.0), (5, 10, 0.0)])
def test_wilson_bad_input(args):
    with pytest.raises(ValueError):
        wilson_interval(*args)


# ---------------------------------------------------------------- Bradley-Terry

TRUE = np.array([-1.5, -0.8, -0.2, 0.3, 0.9, 1.3])


def _simulate(true: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    i = rng.integers(0, true.size, size=count)
    j = (i + rng.integers(1, true.size, size=count)) % true.size  # j != i
    p_i = 1.0 / (1.0 + np.exp(true[j] - true[i]))
    i_won = rng.random(count) < p_i
    return np.where(i_won, i, j), np.where(i_won, j, i)


def test_bt_recovers_known_strengths():
    winners, losers = _simulate(TRUE, 30000, seed=0)
    est = bradley_terry(TRUE.size, winners, losers)
    assert np.corrcoef(est, TRUE)[0, 1] > 0.98
    assert np.array_equal(np.argsort(est), np.argsort(TRUE))
    np.testing.assert_allclose(est, TRUE, atol=0.1)


def test_bt_centered():
    winners, losers = _simulate(TRUE, 500, seed=1)
    est = bradley_terry(TRUE.size, winners, losers, prior=2.5)
    assert abs(est.mean()) < 1e-12


def test_bt_matches_direct_penalised_likelihood():
    winners, losers = _simulate(TRUE, 300, seed=2)
    weights = np.random.default_rng(3).uniform(0.0, 2.0, size=winners.size)
    prior = 1.5

    def loss(s):
        fit = np.sum(weights * log_expit(s[winners] - s[losers]))
        pen = prior / 2.0 * np.sum(log_expit(s) + log_expit(-s))  # vs. the virtual opponent at log-strength 0
        return -(fit + pen)

    ref = minimize(loss, np.zeros(TRUE.size), method="BFGS", options={"gtol": 1e-10}).x
    est = bradley_terry(TRUE.size, winners, losers, weights=weights, prior=prior)
    np.testing.assert_allclose(est, ref - ref.mean(), atol=1e-5)


def test_bt_undefeated_item_is_finite_and_strongest():
    winners = [0, 0, 0, 1, 2, 3, 2, 1]
    losers = [1, 2, 3, 2, 3, 1, 1, 3]
    est = bradley_terry(4, winners, losers)
    assert np.all(np.isfinite(est))
    assert np.argmax(est) == 0
    assert est[0] > est[1:].max() + 0.5


def test_bt_winless_item_is_finite_and_weakest():
    est = bradley_terry(3, [0, 1, 0, 1], [2, 2, 1, 0])
    assert np.all(np.isfinite(est))
    assert np.argmin(est) == 2


def test_bt_weights_equal_repetition():
    winners, losers = _simulate(TRUE, 400, seed=4)
    counts = np.random.default_rng(5).integers(0, 4, size=winners.size)
    weighted = bradley_terry(TRUE.size, winners, losers, weights=counts.astype(float))
    repeated = bradley_terry(TRUE.size, np.repeat(winners, counts), np.repeat(losers, counts))
    np.testing.assert_allclose(weighted, repeated, atol=1e-8)


def test_bt_uncompared_item_sits_at_prior():
    # Items 0 and 1 split evenly; item 2 never appears: every raw log-strength is 0.
    est = bradley_terry(3, [0, 1], [1, 0])
    np.testing.assert_allclose(est, 0.0, atol=1e-9)
    # Uncompared items stay at the virtual opponent's level (raw 0), so adding one changes only the centering.
    est3 = bradley_terry(3, [0, 0, 0, 1], [1, 1, 1, 0])
    est4 = bradley_terry(4, [0, 0, 0, 1], [1, 1, 1, 0])
    assert est3[0] > est3[2] > est3[1]
    assert est4[2] == pytest.approx(est4[3])
    np.testing.assert_allclose(est3 - est3[2], est4[:3] - est4[3], atol=1e-9)


def test_bt_warns_when_not_converged():
    winners, losers = _simulate(TRUE, 300, seed=8)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        bradley_terry(TRUE.size, winners, losers, max_iter=2)


def test_bt_no_comparisons_gives_zeros():
    np.testing.assert_array_equal(bradley_terry(4, [], []), np.zeros(4))


def test_bt_plain_mle_closed_form():
    # Two items, 3 wins to 1: the MLE odds are 3, so log-strengths are +-log(3)/2.
    est = bradley_terry(2, [0, 0, 0, 1], [1, 1, 1, 0], prior=0.0)
    np.testing.assert_allclose(est, [math.log(3) / 2, -math.log(3) / 2], atol=1e-8)
    with pytest.raises(ValueError, match="prior > 0"):
        bradley_terry(3, [0, 1], [1, 2], prior=0.0)  # item 2 never wins


def test_bt_prior_shrinks_towards_zero():
    winners, losers = _simulate(TRUE, 200, seed=6)
    weak = bradley_terry(TRUE.size, winners, losers, prior=0.5)
    strong = bradley_terry(TRUE.size, winners, losers, prior=50.0)
    assert np.abs(strong).max() < np.abs(weak).max()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 3, "winners": [0, 3], "losers": [1, 2]},  # index out of range
        {"n": 3, "winners": [0, -1], "losers": [1, 2]},  # negative index
        {"n": 3, "winners": [0, 1], "losers": [1]},  # lengths differ
        {"n": 3, "winners": [0, 1], "losers": [1, 1]},  # winner == loser
        {"n": 3, "winners": [0.5, 1], "losers": [1, 2]},  # not integer
        {"n": 3, "winners": [0, 1], "losers": [1, 2], "weights": np.ones(3)},  # weights shape
        {"n": 3, "winners": [0, 1], "losers": [1, 2], "weights": np.array([1.0, -1.0])},  # negative weight
        {"n": 0, "winners": [], "losers": []},  # no items
        {"n": 3, "winners": [0, 1], "losers": [1, 2], "prior": -1.0},  # negative prior
    ],
)
def test_bt_bad_input(kwargs):
    with pytest.raises(ValueError):
        bradley_terry(**kwargs)


def test_bt_probability():
    s = np.array([0.7, -0.2, -0.5])
    assert bradley_terry_probability(s, 0, 1) == pytest.approx(1.0 / (1.0 + math.exp(-0.9)))
    for i in range(3):
        assert bradley_terry_probability(s, i, i) == 0.5
        for j in range(3):
            assert bradley_terry_probability(s, i, j) + bradley_terry_probability(s, j, i) == pytest.approx(1.0)
    assert bradley_terry_probability([800.0, -800.0], 0, 1) == 1.0
    assert bradley_terry_probability([800.0, -800.0], 1, 0) == 0.0


# ---------------------------------------------------------------- Krippendorff

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the example with
# 4 observers (A-D), 12 units and missing values (None).
_ = None
KRIPPENDORFF_2011 = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
    "C": [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
}
UNITS_2011 = [list(unit) for unit in zip(*KRIPPENDORFF_2011.values())]


def test_alpha_paper_nominal():
    assert krippendorff_alpha(UNITS_2011, "nominal") == pytest.approx(0.743, abs=5e-4)
    # The paper's nominal form ((n-1) sum_c o_cc - sum_c n_c(n_c-1)) / (n(n-1) - sum_c n_c(n_c-1)) with its
    # n = 40, n_c = (9, 13, 10, 5, 3) and o_cc = (7, 10, 8, 4, 3): 904 / 1216.
    assert krippendorff_alpha(UNITS_2011) == pytest.approx(904 / 1216)


def test_alpha_paper_interval():
    assert krippendorff_alpha(UNITS_2011, "interval") == pytest.approx(0.849, abs=5e-4)


def test_alpha_missing_as_nan_or_dropped():
    dropped = [[v for v in unit if v is not None] for unit in UNITS_2011]
    as_nan = [[math.nan if v is None else float(v) for v in unit] for unit in UNITS_2011]
    expected = krippendorff_alpha(UNITS_2011)
    assert krippendorff_alpha(dropped) == pytest.approx(expected)
    assert krippendorff_alpha(as_nan) == pytest.approx(expected)


def _alpha_by_coincidence_matrix(units: list[list[float]], metric: str) -> float:
    values = sorted({v for unit in units for v in unit})
    index = {v: k for k, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for unit in units:
        if len(unit) < 2:
            continue
        for a in range(len(unit)):
            for b in range(len(unit)):
                if a != b:
                    o[index[unit[a]], index[unit[b]]] += 1.0 / (len(unit) - 1)
    v = np.array(values, dtype=float)
    delta = (v[:, None] != v[None, :]).astype(float) if metric == "nominal" else (v[:, None] - v[None, :]) ** 2
    n_c = o.sum(axis=1)
    n = n_c.sum()
    return 1.0 - (n - 1) * np.sum(o * delta) / np.sum(np.outer(n_c, n_c) * delta)


@pytest.mark.parametrize("metric", ["nominal", "interval"])
def test_alpha_matches_explicit_coincidence_matrix(metric):
    rng = np.random.default_rng(7)
    for _trial in range(5):
        units = []
        for _unit in range(25):
            raters = rng.integers(0, 5)  # 0-4 values; units with 0 or 1 are not pairable
            base = rng.integers(1, 6)
            units.append([int(np.clip(base + rng.integers(-1, 2), 1, 5)) for _ in range(raters)])
        assert krippendorff_alpha(units, metric) == pytest.approx(_alpha_by_coincidence_matrix(units, metric))


def test_alpha_perfect_agreement():
    units = [["a", "a", "a"], ["b", "b"], ["c", "c", None], ["a"]]
    assert krippendorff_alpha(units) == 1.0
    assert krippendorff_alpha([[1.5, 1.5], [3.0, 3.0, 3.0]], "interval") == 1.0


def test_alpha_systematic_disagreement_is_negative():
    assert krippendorff_alpha([["a", "b"], ["a", "b"], ["b", "a"]]) < 0.0


def test_alpha_not_computable_is_nan():
    assert math.isnan(krippendorff_alpha([]))
    assert math.isnan(krippendorff_alpha([[1], [2], [None, 3], []]))  # no pairable unit
    assert math.isnan(krippendorff_alpha([[2, 2], [2, 2, 2]]))  # one value only: no expected disagreement
    assert math.isnan(krippendorff_alpha([[2.0, 2.0], [2.0, 2.0]], "interval"))


def test_alpha_bad_input():
    with pytest.raises(ValueError, match="metric"):
        krippendorff_alpha(UNITS_2011, "ordinal")
    with pytest.raises(ValueError):
        krippendorff_alpha([["a", "b"]], "interval")
