"""Benchmark summary statistics (tada.bench.summary) and the shared crossed bootstrap (tada.bootstrap):
every expected number is worked out by hand in the comments, on small curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tada.bench.summary import (
    Estimate,
    Sweep,
    auc,
    cutoff,
    mean_over_concepts,
    paired,
    quality_score,
    smoothness,
    spearman,
    summarise,
)
from tada.bootstrap import crossed_weights, percentile_interval
from tada.errors import TadaError
from tada.impact_report import bootstrap_weights, interval
from tada.localize import ImpactTable

# one curve for both directions: alphas -3..3, preservation and alignment per alpha
ALPHAS = np.array([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0])
PRES = np.array([0.9, 0.5, 0.25, 0.0, 0.2, 0.4, 0.8])
ALIGN = np.array([0.1, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0])


def sweep(pres, align, quality=None, alphas=ALPHAS, prompts=1, seeds=1, noise=None) -> Sweep:
    """A sweep whose every clip sits on the given mean curves (plus ``noise`` (3, A, P, S), mean zero per alpha)."""
    shape = (len(alphas), prompts, seeds)
    clips = [np.broadcast_to(np.asarray(c, dtype=float)[:, None, None], shape).copy() for c in (pres, align)]
    q = None if quality is None else np.broadcast_to(np.asarray(quality, float)[:, None, None], shape).copy()
    if noise is not None:
        clips[0] += noise[0]
        clips[1] += noise[1]
        q = None if q is None else q + noise[2]
    return Sweep(alphas, clips[0], {"probe": clips[1]}, q)


# ------------------------------------------------------------------------------------------- AUC


def test_auc_positive_direction_interpolates_the_boundary_point():
    # pos: alphas 0,1,2,3; preservation 0, .2, .4, .8; delta = align - 0.5 = 0, .1, .3, .5; cutoff .6
    # below: the first three; b = (.4, .3), a = (.8, .5): frac = (.6 - .4) / (.8 - .4) = .5,
    # boundary value .3 + .5 * (.5 - .3) = .4 at preservation .6
    # trapezoid: .2 * (0 + .1) / 2 + .2 * (.1 + .3) / 2 + .2 * (.3 + .4) / 2 = .01 + .04 + .07 = .12
    assert auc(ALPHAS, PRES, ALIGN, 0.6, "pos") == pytest.approx(0.12, abs=1e-12)


def test_auc_negative_direction_flips_the_sign():
    # neg, in |alpha| order: alphas 0,-1,-2,-3; preservation 0, .25, .5, .9;
    # delta = -(align - .5) = 0, .1, .2, .4; cutoff .7: b = (.5, .2), a = (.9, .4), frac = .2 / .4 = .5,
    # boundary value .2 + .5 * .2 = .3 at preservation .7
    # trapezoid: .25 * .1 / 2 + .25 * (.1 + .2) / 2 + .2 * (.2 + .3) / 2 = .0125 + .0375 + .05 = .1
    assert auc(ALPHAS, PRES, ALIGN, 0.7, "neg") == pytest.approx(0.1, abs=1e-12)


def test_auc_backtracking_preservation_subtracts_area():
    alphas = np.array([0.0, 1.0, 2.0, 3.0])
    pres = np.array([0.0, 0.4, 0.2, 0.5])
    align = np.array([0.0, 0.2, 0.4, 0.6])
    # cutoff 1: every point below, no boundary; in |alpha| order:
    # (0 -> .4): .4 * (0 + .2) / 2 = .04; (.4 -> .2): -.2 * (.2 + .4) / 2 = -.06; (.2 -> .5): .3 * (.4 + .6) / 2 = .15
    # total .13 (sorting by preservation instead would give .04 + .06 + .04 = .14)
    assert auc(alphas, pres, align, 1.0, "pos") == pytest.approx(0.13, abs=1e-12)


def test_no_positive_gain_gives_negative_auc_and_undefined_smoothness():
    alphas = np.array([0.0, 1.0, 2.0])
    pres = np.array([0.0, 0.3, 0.6])
    align = np.array([0.5, 0.4, 0.2])  # delta 0, -.1, -.3
    # AUC: .3 * (0 - .1) / 2 + .3 * (-.1 - .3) / 2 = -.015 - .06 = -.075
    assert auc(alphas, pres, align, 1.0, "pos") == pytest.approx(-0.075, abs=1e-12)
    # smoothness: the largest delta is 0, so m = max(0, 0) = 0 <= 1e-9: undefined
    assert math.isnan(smoothness(alphas, pres, align, 1.0, "pos"))


def test_grid_short_of_the_cutoff_adds_no_boundary_point():
    alphas = np.array([0.0, 1.0, 2.0])
    pres = np.array([0.0, 0.1, 0.3])
    align = np.array([0.0, 0.2, 0.3])
    # cutoff .5 is never reached: area over the measured range only, .1 * .2 / 2 + .2 * (.2 + .3) / 2 = .01 + .05
    assert auc(alphas, pres, align, 0.5, "pos") == pytest.approx(0.06, abs=1e-12)


def test_fewer_than_two_points_is_nan():
    alphas = np.array([-2.0, -1.0, 0.0])
    pres = np.array([0.4, 0.2, 0.0])
    align = np.array([0.1, 0.3, 0.5])
    # the pos direction holds alpha 0 alone: one point, no area, no step
    assert math.isnan(auc(alphas, pres, align, 1.0, "pos"))
    assert math.isnan(smoothness(alphas, pres, align, 1.0, "pos"))
    # every point above the cutoff (alpha 0 measured at .3 here): nothing kept, no boundary point
    assert math.isnan(auc(alphas, pres + 0.3, align, 0.1, "neg"))
    # the neg direction itself is fine: delta -(align - .5) = 0, .2, .4 over preservation 0, .2, .4 (alphas
    # 0, -1, -2) -> .2 * .2 / 2 + .2 * .6 / 2 = .02 + .06 = .08
    assert auc(alphas, pres, align, 1.0, "neg") == pytest.approx(0.08, abs=1e-12)


# ------------------------------------------------------------------------------------ smoothness


def test_smoothness_by_hand():
    alphas = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    pres = np.array([0.0, 0.1, 0.2, 0.3, 0.9])
    align = np.array([0.0, 0.5, 1.0, 0.8, 5.0])  # alpha 4 is above the cutoff .3: left out (it would set m)
    # deltas 0, .5, 1, .8; m = 1; steps .5, .5, -.2; mean 4/15; deviations 7/30, 7/30, -14/30;
    # population variance (49 + 49 + 196) / 900 / 3 = 98/900; std = sqrt(98) / 30 = 7 sqrt(2) / 30
    expected = 7 * math.sqrt(2) / 30
    assert smoothness(alphas, pres, align, 0.3, "pos") == pytest.approx(expected, abs=1e-12)
    # scale-free: doubling every delta leaves the normalised curve unchanged
    assert smoothness(alphas, pres, 2 * align, 0.3, "pos") == pytest.approx(expected, abs=1e-12)
    # a straight line steps evenly: std 0
    assert smoothness(alphas, pres, np.array([0.0, 0.1, 0.2, 0.3, 0.4]), 1.0, "pos") == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------------ quality


def test_quality_on_a_linear_curve():
    alphas = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0])
    pres = np.array([0.4, 0.2, 0.0, 0.2, 0.5, 1.0])
    # linear quality, so the interpolation is exact; alpha 0 is in both directions, so each direction gets
    # its own quality array: pos 3 - 2 * preservation (3, 2.6, 2, 1 at alphas 0..3),
    # neg 1 + preservation (1, 1.2, 1.4 at alphas 0, -1, -2)
    q_pos = np.array([0.0, 0.0, 3.0, 2.6, 2.0, 1.0])
    q_neg = np.array([1.4, 1.2, 1.0, 0.0, 0.0, 0.0])
    # cutoff .7: the 15 grid points 0, .05, ..., .7 are all inside [0, 1]; their mean is .35, and the mean of a
    # linear function is the function at the mean: 3 - 2 * .35 = 2.3
    assert quality_score(alphas, pres, q_pos, 0.7, "pos") == pytest.approx(2.3, abs=1e-12)
    # cutoff 1.4: grid 0, .1, ..., 1.4; only 0 .. 1.0 (11 points, mean .5) inside the measured range: 3 - 1 = 2
    assert quality_score(alphas, pres, q_pos, 1.4, "pos") == pytest.approx(2.0, abs=1e-12)
    # neg, cutoff .7: the measured range is [0, .4]: grid points 0, .05, ..., .4 (9 points, mean .2): 1 + .2 = 1.2
    assert quality_score(alphas, pres, q_neg, 0.7, "neg") == pytest.approx(1.2, abs=1e-12)


def test_quality_is_nan_when_no_grid_point_is_measured():
    alphas = np.array([-1.0, 0.0, 1.0])
    pres = np.array([0.5, 0.3, 0.05])  # alpha 0 measured at .3: neg covers [.3, .5], pos [.05, .3]
    q = 10 * pres
    # cutoff .2: the neg range starts above the whole grid
    assert math.isnan(quality_score(alphas, pres, q, 0.2, "neg"))
    # pos: grid i / 70 (i = 0..14); inside [.05, .3] for i >= 4 (3.5 / 70 = .05): i = 4..14, mean 9,
    # quality 10 * 9 / 70 = 9 / 7
    assert quality_score(alphas, pres, q, 0.2, "pos") == pytest.approx(9 / 7, abs=1e-12)


# ------------------------------------------------------------------------------------------- cutoff


def test_cutoff_is_the_smaller_switching_maximum_per_direction():
    alphas = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    a = sweep([0.7, 0.9, 0.0, 0.5, 0.4], [0.0] * 5, alphas=alphas)  # max pos .5, max neg .9 (at alpha -1)
    b = sweep([0.8, 0.3, 0.0, 0.2, 0.6], [0.0] * 5, alphas=alphas)  # max pos .6, max neg .8
    assert cutoff([a, b], "pos") == pytest.approx(0.5)  # min(.5, .6)
    assert cutoff([a, b], "neg") == pytest.approx(0.8)  # min(.9, .8)
    assert cutoff([b], "neg") == pytest.approx(0.8)
    # weights pick clips: two prompts, the second one's preservation doubled; all weight on it doubles the cutoff
    pres = np.stack([np.array([0.8, 0.3, 0.0, 0.2, 0.6]), 2 * np.array([0.8, 0.3, 0.0, 0.2, 0.6])], 1)[:, :, None]
    two = Sweep(alphas, pres, {"probe": np.zeros_like(pres)})
    assert cutoff([two], "pos") == pytest.approx(0.9)  # mean curve 1.5 x b's: pos maximum 1.5 * .6
    assert cutoff([two], "pos", weights=np.array([[0.0], [1.0]])) == pytest.approx(1.2)


# ------------------------------------------------------------------------------- summarise, bootstrap


def test_identical_clips_collapse_every_interval_to_the_estimate():
    q = 3 - 2 * PRES
    sweeps = {
        "switch": sweep(PRES, ALIGN, prompts=3, seeds=2),
        "x": sweep(PRES / 2, ALIGN, q, prompts=3, seeds=2),
    }
    bench = summarise(sweeps, ["switch"], replicates=50, seed=3)
    # cutoffs: the switching variant's maxima, .8 (pos) and .9 (neg)
    assert bench.cutoffs["cutoff_pos"].value == pytest.approx(0.8)
    assert bench.cutoffs["cutoff_neg"].value == pytest.approx(0.9)
    assert list(bench.values["x"]) == [
        *("auc_probe_pos", "auc_probe_neg", "auc_probe", "smooth_probe_pos", "smooth_probe_neg", "smooth_probe"),
        *("quality_pos", "quality_neg", "quality"),
    ]
    for variant, keys in [*bench.values.items(), ("cutoffs", bench.cutoffs)]:
        for key, e in keys.items():
            assert (e.low, e.high) == (pytest.approx(e.value, abs=1e-12),) * 2, (variant, key)
    # x's pos curve: preservation 0, .1, .2, .4 (all below .8), delta 0, .1, .3, .5:
    # .1 * .1 / 2 + .1 * .4 / 2 + .2 * .8 / 2 = .005 + .02 + .08 = .105
    # neg: preservation 0, .125, .25, .45 (below .9), delta 0, .1, .2, .4: .125 * .1 / 2 + .125 * .3 / 2 + .2 * .6 / 2
    # = .00625 + .01875 + .06 = .085; mean (.105 + .085) / 2 = .095
    assert bench.values["x"]["auc_probe_pos"].value == pytest.approx(0.105)
    assert bench.values["x"]["auc_probe_neg"].value == pytest.approx(0.085)
    assert bench.values["x"]["auc_probe"].value == pytest.approx(0.095)
    # quality 3 - 2 * (2 * x's preservation) = 3 - 4 * x's preservation, linear in it;
    # pos: grid 0 .. .8 inside [0, .4]: 0, .8/14 * i for i <= 7 (7 * .8 / 14 = .4), mean .2: 3 - .8 = 2.2;
    # neg: grid inside [0, .45]: .9 / 14 * i <= .45 for i <= 7, mean .225: 3 - .9 = 2.1; mean 2.15
    assert bench.values["x"]["quality_pos"].value == pytest.approx(2.2)
    assert bench.values["x"]["quality_neg"].value == pytest.approx(2.1)
    assert bench.values["x"]["quality"].value == pytest.approx(2.15)


def noisy_sweeps(scale: float, seed: int = 0) -> dict[str, Sweep]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, factor in (("switch", 1.0), ("local", 1.2), ("x", 0.5), ("double", 0.5)):
        noise = scale * rng.standard_normal((3, len(ALPHAS), 6, 3))
        noise -= noise.mean((2, 3), keepdims=True)  # the mean curves stay the hand curves
        noise[:, 3] = 0.0  # alpha 0: preservation 0
        align = ALIGN if name != "double" else 0.5 + 2 * (ALIGN - 0.5)
        out[name] = sweep(factor * PRES, align, 3 - 2 * PRES, prompts=6, seeds=3, noise=noise)
    out["double"].preservation[:] = out["x"].preservation  # the same clips, alignment gains doubled
    out["double"].alignment["probe"][:] = 0.5 + 2 * (out["x"].alignment["probe"] - 0.5)
    return out


def test_noisy_intervals_contain_the_estimate_and_widen_with_noise():
    small = summarise(noisy_sweeps(0.01), ["switch", "local"], replicates=400, seed=1)
    large = summarise(noisy_sweeps(0.05), ["switch", "local"], replicates=400, seed=1)
    for bench in (small, large):
        # point estimates are those of the (unchanged) mean curves: cutoff = min(.8, 1.2 * .8) = .8 (pos)
        assert bench.cutoffs["cutoff_pos"].value == pytest.approx(0.8)
        assert bench.values["x"]["auc_probe"].value == pytest.approx(0.095)
        for key in ("auc_probe", "auc_probe_pos", "smooth_probe", "quality"):
            e = bench.values["x"][key]
            assert e.low <= e.value <= e.high, key
        assert bench.samples["x"]["auc_probe"].shape == (400,)
    for key in ("auc_probe", "quality"):
        width = [b.values["x"][key].high - b.values["x"][key].low for b in (small, large)]
        assert 0 < width[0] < width[1], key
    width = [b.cutoffs["cutoff_pos"].high - b.cutoffs["cutoff_pos"].low for b in (small, large)]
    assert 0 < width[0] < width[1]


def test_paired_comparisons():
    bench = summarise(noisy_sweeps(0.03), ["switch", "local"], replicates=300, seed=2)
    same = paired(bench, "x", "x", "auc_probe")
    assert (same.difference.value, same.difference.low, same.difference.high, same.share) == (0.0, 0.0, 0.0, 0.0)
    # doubled gains over the same preservation: every area doubles, so "double" beats "x" in every replicate
    # whose area is positive (all of them here), and the difference is x's own area
    better = paired(bench, "double", "x", "auc_probe")
    assert better.share == 1.0
    assert better.difference.value == pytest.approx(bench.values["x"]["auc_probe"].value)
    assert np.allclose(bench.samples["double"]["auc_probe"], 2 * bench.samples["x"]["auc_probe"])
    with pytest.raises(TadaError, match="no variant 'nope'"):
        paired(bench, "nope", "x", "auc_probe")


def test_mean_over_concepts_averages_estimates_and_replicates():
    one = summarise(noisy_sweeps(0.02, seed=0), ["switch", "local"], replicates=200, seed=4, concept="a")
    two = summarise(noisy_sweeps(0.04, seed=1), ["switch", "local"], replicates=200, seed=4, concept="b")
    mean = mean_over_concepts([one, two])
    for key in ("auc_probe", "quality_neg"):
        e = mean.values["x"][key]
        assert e.n == 2
        assert e.value == pytest.approx((one.values["x"][key].value + two.values["x"][key].value) / 2)
        assert np.allclose(mean.samples["x"][key], (one.samples["x"][key] + two.samples["x"][key]) / 2)
        low, high = percentile_interval(mean.samples["x"][key])
        assert (e.low, e.high) == (pytest.approx(low), pytest.approx(high))
    # a concept where a value is NaN is left out: n = 1 and the mean is the other concept's value
    two.values["x"]["smooth_probe"].value = math.nan
    mean = mean_over_concepts([one, two])
    assert mean.values["x"]["smooth_probe"].n == 1
    assert mean.values["x"]["smooth_probe"].value == one.values["x"]["smooth_probe"].value
    # concepts whose replicates draw other prompts and seeds do not average
    three = summarise(noisy_sweeps(0.02), ["switch"], replicates=200, seed=5)
    with pytest.raises(TadaError) as err:
        mean_over_concepts([one, three])
    assert "\n" not in str(err.value) and "seed" in str(err.value)


def test_a_part_run_ranks_variants_over_the_concepts_all_of_them_finished():
    from tada.bench.report import comparisons, shared_concepts

    one = summarise(noisy_sweeps(0.02, seed=0), ["switch", "local"], replicates=200, seed=4, concept="a")
    two = summarise(noisy_sweeps(0.04, seed=1), ["switch", "local"], replicates=200, seed=4, concept="b")
    three = summarise(noisy_sweeps(0.03, seed=2), ["switch", "local"], replicates=200, seed=4, concept="c")
    benches = {"a": one, "b": two, "c": three}
    assert shared_concepts(benches, "auc_probe") == ["a", "b", "c"]
    del two.values["double"], two.samples["double"]  # "double" has not finished concept b
    three.values["x"]["auc_probe"].value = math.nan  # nor has "x" a finite AUC in c
    assert shared_concepts(benches, "auc_probe") == ["a"]
    # ranked over concept a alone: the best and every difference are concept a's
    shared = shared_concepts(benches, "auc_probe")
    best, rows = comparisons(mean_over_concepts([benches[c] for c in shared]), "auc_probe")
    auc = {v: vals["auc_probe"].value for v, vals in one.values.items()}
    assert best == max(auc, key=auc.get) and len(rows) == len(auc) - 1
    for row in rows:
        assert row["difference"].value == pytest.approx(auc[best] - auc[row["variant"]])


def test_summarise_matches_the_curve_functions_on_the_mean_curves():
    sweeps = noisy_sweeps(0.05, seed=7)
    bench = summarise(sweeps, ["switch", "local"], replicates=5)
    x = sweeps["x"]
    pres, align = x.preservation.mean((1, 2)), x.alignment["probe"].mean((1, 2))
    cut = cutoff([sweeps["switch"], sweeps["local"]], "neg")
    assert bench.cutoffs["cutoff_neg"].value == pytest.approx(cut)
    assert bench.values["x"]["smooth_probe_neg"].value == pytest.approx(smoothness(x.alphas, pres, align, cut, "neg"))


# ---------------------------------------------------------------------------- a literal reference


def _points(alphas, pres, values, direction, delta=True):
    """(|alpha|, preservation, delta or value) in |alpha| order, as the definitions read."""
    zero = int(np.flatnonzero(alphas == 0)[0])
    sign = 1.0 if direction == "pos" else -1.0
    mask = alphas >= 0 if direction == "pos" else alphas <= 0
    out = [
        (abs(a), p, sign * (v - values[zero]) if delta else v)
        for a, p, v in zip(alphas[mask], pres[mask], values[mask])
    ]
    return out if direction == "pos" else out[::-1]


def reference_auc(alphas, pres, align, cut, direction):
    points = _points(alphas, pres, align, direction)
    below = [q for q in points if q[1] <= cut + 1e-9]
    above = [q for q in points if q[1] > cut + 1e-9]
    kept = list(below)
    if above and below:
        b, a = max(below, key=lambda q: q[1]), min(above, key=lambda q: q[1])
        if a[1] - b[1] > 1e-12:
            frac = (cut - b[1]) / (a[1] - b[1])
            kept.append((a[0], cut, b[2] + frac * (a[2] - b[2])))
    if len(kept) < 2:
        return math.nan
    kept.sort(key=lambda q: q[0])
    return np.trapezoid([q[2] for q in kept], [q[1] for q in kept])


def reference_smoothness(alphas, pres, align, cut, direction):
    below = [q for q in _points(alphas, pres, align, direction) if q[1] <= cut + 1e-9]
    delta = np.array([q[2] for q in below])
    m = max(delta.max(), 0.0) if below else 0.0
    if m <= 1e-9:
        return math.nan
    gaps = np.diff((delta / m)[np.argsort([q[0] for q in below], kind="stable")])
    return math.nan if gaps.size == 0 else np.std(gaps)


def reference_quality(alphas, pres, quality, cut, direction):
    points = _points(alphas, pres, quality, direction, delta=False)
    p, q = np.array([x[1] for x in points]), np.array([x[2] for x in points])
    grid = np.linspace(0, cut, 15)
    grid = grid[(grid >= p.min() - 1e-9) & (grid <= p.max() + 1e-9)]
    order = np.argsort(p, kind="stable")
    return math.nan if grid.size == 0 else np.interp(grid, p[order], q[order]).mean()


def test_vectorised_metrics_match_a_literal_reading_of_the_definitions():
    rng = np.random.default_rng(0)
    functions = ((auc, reference_auc), (smoothness, reference_smoothness), (quality_score, reference_quality))
    for trial in range(300):
        alphas = np.unique(np.append(rng.choice(np.arange(-6.0, 7.0), int(rng.integers(1, 8)), replace=False), 0.0))
        pres = np.abs(rng.normal(size=alphas.size)) * rng.choice([0.3, 1.0, 3.0])
        pres[alphas == 0] = 0.0
        if trial % 3 == 0:
            pres = np.round(pres, 1)  # ties in preservation
        values = rng.normal(size=alphas.size)
        cut = float(rng.choice([0.0, 0.5, 1.0, 5.0, pres.max()]))
        for direction in ("pos", "neg"):
            for ours, reference in functions:
                got, want = ours(alphas, pres, values, cut, direction), reference(alphas, pres, values, cut, direction)
                assert math.isnan(got) == math.isnan(want), (ours.__name__, trial, direction)
                if not math.isnan(want):
                    assert got == pytest.approx(want, abs=1e-12), (ours.__name__, trial, direction)
        # a batch of curves with their own cutoffs gives the same numbers row by row
        batch = np.stack([pres, pres * 1.1])
        rows = auc(alphas, batch, np.stack([values, values]), np.array([cut, cut / 2]), "pos")
        assert np.allclose(
            rows,
            [auc(alphas, pres, values, cut, "pos"), auc(alphas, pres * 1.1, values, cut / 2, "pos")],
            equal_nan=True,
        )


# ------------------------------------------------------------------------------- shared bootstrap


def test_crossed_weights_draw_as_before():
    groups, seeds = np.repeat(np.arange(4), 3), np.tile(np.arange(3), 4)
    weights = crossed_weights(groups, seeds, 50, seed=9)
    # the draws as impact_report made them: one generator, all group draws first, then all seed draws
    gen = torch.Generator().manual_seed(9)
    group_draws = torch.randint(4, (50, 4), generator=gen)
    seed_draws = torch.randint(3, (50, 3), generator=gen)
    group_counts = torch.stack([torch.bincount(row, minlength=4) for row in group_draws])
    seed_counts = torch.stack([torch.bincount(row, minlength=3) for row in seed_draws])
    expected = (group_counts[:, torch.as_tensor(groups)] * seed_counts[:, torch.as_tensor(seeds)]).double()
    assert weights.dtype == torch.float64 and weights.shape == (50, 12)
    assert torch.equal(weights, expected)
    assert torch.all(weights.sum(1) == 12)  # 4 groups drawn times 3 seeds drawn
    # impact_report's bootstrap is the same draw on a table's units
    units = torch.as_tensor(np.stack([groups, seeds], 1))
    table = ImpactTable(
        ["xattn_in.0"],
        torch.ones(12, dtype=torch.float64),
        torch.zeros(12, dtype=torch.float64),
        torch.full((12, 1), 0.5, dtype=torch.float64),
        "test",
        4,
        "a probe",
        "concept",
        [["a", "b"]] * 4,
        {},
        [],
        [],
        units,
    )
    assert torch.equal(bootstrap_weights(table, 50, seed=9), weights)
    assert interval is percentile_interval


# ------------------------------------------------------------------------------ validation, output


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Sweep([0.0, 1.0], np.zeros((3, 1, 1)), {"probe": np.zeros((3, 1, 1))}), "preservation must have"),
        (lambda: Sweep([0.0, 1.0], np.zeros((2, 1, 1)), {"probe": np.zeros((2, 2, 1))}), "alignment 'probe'"),
        (lambda: Sweep([0.0, 1.0], np.zeros((2, 1, 1)), {"p": np.zeros((2, 1, 1))}, np.zeros(2)), "quality has"),
        (lambda: Sweep([-1.0, 1.0], np.zeros((2, 1, 1)), {"probe": np.zeros((2, 1, 1))}), "0.0 exactly once"),
        (lambda: Sweep([1.0, 0.0], np.zeros((2, 1, 1)), {"probe": np.zeros((2, 1, 1))}), "sorted ascending"),
        (lambda: Sweep([0.0, 1.0], np.full((2, 1, 1), np.nan), {"probe": np.zeros((2, 1, 1))}), "NaN"),
        (lambda: Sweep([0.0, 1.0], np.zeros((2, 1, 1)), {}), "no alignment"),
    ],
)
def test_sweep_validation_errors_are_one_line(make, message):
    with pytest.raises(TadaError, match=message) as err:
        make()
    assert "\n" not in str(err.value)


def test_summarise_validation_errors_are_one_line():
    a = sweep(PRES, ALIGN, prompts=2, seeds=2)
    b = sweep(PRES, ALIGN, prompts=3, seeds=2)
    for call, message in [
        (lambda: summarise({"a": a, "b": b}, ["a"], replicates=5), "same clips"),
        (lambda: summarise({"a": a}, ["switch"], replicates=5), "not among the sweeps"),
        (lambda: summarise({"a": a}, [], replicates=5), "at least one"),
        (lambda: summarise({}, ["a"]), "no sweeps"),
    ]:
        with pytest.raises(TadaError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


def test_estimate_format_and_spearman():
    assert Estimate(0.1234, 0.1, 0.14).fmt() == "0.123 [0.100, 0.140]"
    assert Estimate(1.5, 1.0, 2.25).fmt(1) == "1.5 [1.0, 2.2]"
    assert Estimate(math.nan, math.nan, math.nan).fmt() == "n/a"
    assert Estimate(0.5, math.nan, math.nan).fmt(2) == "0.50 [n/a, n/a]"
    # common names a, b, c: ranks 1, 2, 3 against 1, 3, 2; d = 0, 1, 1; rho = 1 - 6 * 2 / (3 * 8) = .5
    rho, n = spearman({"a": 1, "b": 2, "c": 3, "d": 9}, {"a": 10, "b": 30, "c": 20, "e": 5})
    assert (rho, n) == (pytest.approx(0.5), 3)
    assert spearman({"a": 1.0}, {"a": 2.0})[1] == 1 and math.isnan(spearman({"a": 1.0}, {"a": 2.0})[0])


def test_busy_seconds_is_the_union_of_unit_spans():
    from tada.bench.report import busy_seconds

    assert busy_seconds([]) == 0.0
    # two workers overlapping (0-10, 5-12), one unit inside another (6-7), then a gap of a session (12-100)
    assert busy_seconds([(5, 12), (0, 10), (6, 7), (100, 103)]) == 15.0
    assert busy_seconds([(0, 1), (1, 2)]) == 2.0  # touching spans are not counted twice
