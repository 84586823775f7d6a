"""Statistics of a blind listening study: pairwise preference and rater agreement.

**Preference.** A listener hears two clips and picks one. :func:`wilson_interval` gives a
confidence interval for a win rate (successes out of trials, e.g. how often a steered clip
was preferred over its unsteered twin). :func:`bradley_terry` fits one strength per system
from all the paired comparisons at once (Hunter's 2004 MM algorithm), with a weak prior that
keeps the strengths finite when a system never wins or never loses;
:func:`bradley_terry_probability` turns two strengths into a win probability.

**Agreement.** :func:`krippendorff_alpha` measures how far raters agree beyond chance, for any
number of raters per unit and missing ratings, with a nominal or an interval metric
(Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability").
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["bradley_terry", "bradley_terry_probability", "krippendorff_alpha", "wilson_interval"]

_METRICS = ("nominal", "interval")


def wilson_interval(successes: float, trials: float, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` for the proportion ``successes / trials``.

    ``level`` is the two-sided confidence level. Counts may be fractional (weighted trials).
    ``trials == 0`` gives ``(nan, nan)``; 0 successes give a lower bound of exactly 0 and
    ``successes == trials`` an upper bound of exactly 1.
    """
    successes, trials, level = float(successes), float(trials), float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if not (math.isfinite(trials) and trials >= 0.0):
        raise ValueError(f"trials must be finite and non-negative, got {trials}")
    if not 0.0 <= successes <= trials:
        raise ValueError(f"successes must lie in [0, trials={trials}], got {successes}")
    if trials == 0.0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    z2 = z * z
    p = successes / trials
    denom = 1.0 + z2 / trials
    center = (p + z2 / (2.0 * trials)) / denom
    half = z * math.sqrt(p * (1.0 - p) / trials + z2 / (4.0 * trials * trials)) / denom
    low = 0.0 if successes == 0.0 else max(0.0, center - half)
    high = 1.0 if successes == trials else min(1.0, center + half)
    return low, high


def _index_array(values: Sequence[int] | np.ndarray, name: str, n: int) -> np.ndarray:
    """``values`` as a 1-D int64 array of item indices in ``[0, n)``."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer item indices, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(f"{name} holds an index outside [0, {n}): min {arr.min()}, max {arr.max()}")
    return arr.astype(np.int64)


def bradley_terry(
    n: int,
    winners: Sequence[int] | np.ndarray,
    losers: Sequence[int] | np.ndarray,
    weights: np.ndarray | None = None,
    prior: float = 1.0,
    tol: float = 1e-10,
    max_iter: int = 10000,
) -> np.ndarray:
    """Bradley-Terry log-strengths of ``n`` items from paired comparisons, centered to mean 0.

    Comparison ``k`` says item ``winners[k]`` beat item ``losers[k]``; ``weights[k]`` (non-negative,
    default 1) counts it that many times, e.g. bootstrap resampling counts. The model is
    ``P(i beats j) = g_i / (g_i + g_j)`` and the result is ``log g`` minus its mean over all items.

    The fit maximises the likelihood plus ``prior`` virtual comparisons of every item against a
    virtual opponent of fixed strength ``g = 1``, half won and half lost. The prior keeps items
    that never win or never lose finite and fixes the scale; an item in no comparison stays at the
    opponent's level (log-strength 0 before centering). ``prior = 0`` gives the plain maximum
    likelihood estimate, which exists only when the items in comparisons form one strongly
    connected "beat" graph (ValueError otherwise); items in no comparison then get 0 before centering.

    With ``prior > 0`` the penalised likelihood is strictly concave and is maximised by Newton's method
    on the per-pair counts (a handful of ``n x n`` solves, however many comparisons or bootstrap
    replicates). With ``prior = 0`` it uses the MM iteration of Hunter (2004), "MM algorithms for
    generalized Bradley-Terry models". Stops when no log-strength moves by more than ``tol`` (a
    RuntimeWarning after ``max_iter`` iterations).
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    n = int(n)
    win = _index_array(winners, "winners", n)
    lose = _index_array(losers, "losers", n)
    if win.shape != lose.shape:
        raise ValueError(f"winners and losers differ in length: {win.size} vs {lose.size}")
    if np.any(win == lose):
        k = int(np.flatnonzero(win == lose)[0])
        raise ValueError(f"comparison {k} has item {int(win[k])} as both winner and loser")
    if weights is None:
        w = np.ones(win.size)
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape != win.shape:
            raise ValueError(f"weights must have shape {win.shape} (one per comparison), got {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weights must be finite and non-negative")
    prior = float(prior)
    if not (math.isfinite(prior) and prior >= 0.0):
        raise ValueError(f"prior must be finite and non-negative, got {prior}")
    if not tol > 0.0:
        raise ValueError(f"tol must be positive, got {tol}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")

    keep = w > 0
    win, lose, w = win[keep], lose[keep], w[keep]
    wins = np.bincount(win, weights=w, minlength=n) + prior / 2.0
    # Comparisons of each unordered pair {a, b}, a < b, summed over both outcomes.
    a, b = np.minimum(win, lose), np.maximum(win, lose)
    pair_ids, inverse = np.unique(a * n + b, return_inverse=True)
    pair_count = np.bincount(inverse, weights=w, minlength=pair_ids.size)
    pa, pb = pair_ids // n, pair_ids % n
    compared = np.zeros(n, dtype=bool)
    compared[pa] = True
    compared[pb] = True
    active = compared | (prior > 0.0)

    if prior == 0.0 and compared.any():
        idx = np.flatnonzero(compared)
        local = np.full(n, -1)
        local[idx] = np.arange(idx.size)
        graph = coo_matrix((np.ones(win.size), (local[lose], local[win])), shape=(idx.size, idx.size))
        n_components, _ = connected_components(graph, directed=True, connection="strong")
        if n_components > 1:
            raise ValueError(
                "the maximum likelihood estimate does not exist (some items never win or the comparison "
                "graph is not strongly connected); use prior > 0"
            )

    if prior > 0.0:
        wins_of_pair = np.bincount(inverse, weights=w * (win == a), minlength=pair_ids.size)
        log_g, converged = _newton(n, pa, pb, pair_count, wins_of_pair, prior, tol, max_iter)
        if not converged:
            warnings.warn(f"bradley_terry did not converge within {max_iter} iterations", RuntimeWarning, stacklevel=2)
        return log_g - log_g.mean()

    log_g = np.zeros(n)  # prior == 0 from here: the plain maximum likelihood by MM
    converged = not active.any()
    for _ in range(max_iter if active.any() else 0):
        g = np.exp(log_g)
        share = pair_count / (g[pa] + g[pb])
        denom = np.bincount(pa, weights=share, minlength=n) + np.bincount(pb, weights=share, minlength=n)
        new = log_g.copy()
        new[active] = np.log(wins[active]) - np.log(denom[active])
        new[active] -= new[active].mean()
        step = np.max(np.abs(new - log_g))
        log_g = new
        if step <= tol:
            converged = True
            break
    if not converged:
        warnings.warn(f"bradley_terry did not converge within {max_iter} iterations", RuntimeWarning, stacklevel=2)
    return log_g - log_g.mean()


def _penalised_loglik(beta, pa, pb, count, wins_a, prior) -> float:
    d = beta[pa] - beta[pb]
    pairs = wins_a * -np.logaddexp(0.0, -d) + (count - wins_a) * -np.logaddexp(0.0, d)
    return float(pairs.sum() - prior / 2.0 * (np.logaddexp(0.0, -beta) + np.logaddexp(0.0, beta)).sum())


def _newton(n, pa, pb, count, wins_a, prior, tol, max_iter) -> tuple[np.ndarray, bool]:
    """The penalised maximum by Newton's method with step halving: the objective is strictly concave when
    ``prior > 0``, and the comparisons enter only as per-pair counts, so each step is one ``n x n`` solve."""
    beta = np.zeros(n)
    value = _penalised_loglik(beta, pa, pb, count, wins_a, prior)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(beta[pa] - beta[pb])))  # P(a beats b)
        resid = wins_a - count * p
        sig = 1.0 / (1.0 + np.exp(-beta))
        grad = (np.bincount(pa, weights=resid, minlength=n) - np.bincount(pb, weights=resid, minlength=n)).astype(float)
        grad += prior / 2.0 * (1.0 - 2.0 * sig)
        curv = count * p * (1.0 - p)
        hess = np.zeros((n, n))
        np.add.at(hess, (pa, pb), curv)
        np.add.at(hess, (pb, pa), curv)
        hess[np.diag_indices(n)] = -hess.sum(1) - prior * sig * (1.0 - sig)
        step = np.linalg.solve(hess, -grad)
        t = 1.0
        while True:
            candidate = beta + t * step
            new_value = _penalised_loglik(candidate, pa, pb, count, wins_a, prior)
            if new_value >= value - 1e-12 * abs(value) or t < 1e-8:
                break
            t /= 2.0
        moved = np.max(np.abs(candidate - beta))
        beta, value = candidate, new_value
        if moved <= tol:
            return beta, True
    return beta, False


def bradley_terry_probability(strengths: Sequence[float] | np.ndarray, i: int, j: int) -> float:
    """Probability that item ``i`` beats item ``j`` under log-strengths ``strengths``: ``1 / (1 + exp(s_j - s_i))``."""
    s = np.asarray(strengths, dtype=float)
    d = float(s[i] - s[j])
    if d >= 0.0:
        return 1.0 / (1.0 + math.exp(-d))
    e = math.exp(d)
    return e / (1.0 + e)


def _is_missing(value: Any) -> bool:
    """Whether ``value`` marks a missing rating (None or a float NaN)."""
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def krippendorff_alpha(units: Sequence[Sequence[Any]], metric: str = "nominal") -> float:
    """Krippendorff's alpha of the ratings ``units``, for any number of raters and missing ratings.

    ``units[u]`` holds the values the raters gave unit ``u`` (None and NaN count as missing and are
    dropped); a unit with fewer than two values is not pairable and is ignored. ``metric`` is
    ``"nominal"`` (values compared for equality; any hashable) or ``"interval"`` (squared difference
    of the values as floats).

    With the coincidence matrix ``o_ck`` (each ordered pair of values within unit ``u`` counted
    ``1 / (m_u - 1)`` times, ``m_u`` its number of values), ``n_c = sum_k o_ck`` and ``n = sum_c n_c``:
    ``alpha = 1 - (n - 1) * sum_ck o_ck delta_ck / sum_ck n_c n_k delta_ck`` (Krippendorff 2011).
    The sums are computed per unit without forming the matrix. Returns nan when no unit is pairable
    or when the expected disagreement is 0 (every pairable value the same).
    """
    if metric not in _METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(_METRICS)}")
    pairable = []
    for unit in units:
        values = [v for v in unit if not _is_missing(v)]
        if len(values) >= 2:
            pairable.append(values)
    if not pairable:
        return math.nan

    n = sum(len(values) for values in pairable)
    observed = 0.0  # sum_ck o_ck delta_ck
    if metric == "nominal":
        totals: Counter[Any] = Counter()
        for values in pairable:
            m = len(values)
            counts = Counter(values)
            totals.update(counts)
            # Ordered pairs of differing values within the unit: m^2 - sum_c n_uc^2.
            observed += (m * m - sum(c * c for c in counts.values())) / (m - 1)
        expected = float(n * n - sum(c * c for c in totals.values()))  # sum_ck n_c n_k [c != k]
    else:
        arrays = []
        for values in pairable:
            try:
                x = np.asarray(values, dtype=float)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"interval metric needs numeric values, got {values!r}") from exc
            if not np.all(np.isfinite(x)):
                raise ValueError(f"interval metric needs finite values, got {values!r}")
            arrays.append(x)
            m = x.size
            # Ordered pairs within the unit: sum_{i,j} (x_i - x_j)^2 = 2 m sum_i (x_i - mean)^2.
            observed += 2.0 * m * float(np.sum((x - x.mean()) ** 2)) / (m - 1)
        everything = np.concatenate(arrays)
        if np.ptp(everything) == 0.0:
            return math.nan
        expected = 2.0 * n * float(np.sum((everything - everything.mean()) ** 2))
    if expected == 0.0:
        return math.nan
    return 1.0 - (n - 1) * observed / expected
