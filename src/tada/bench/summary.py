"""The benchmark's summary statistics, exactly as the paper's reference code defines them, with bootstrap
intervals and paired comparisons.

Data. A :class:`Sweep` is one steering variant on one concept: signed alphas (sorted, 0.0 among them
once) and, per clip (alpha, prompt, seed), the preservation distance to the alpha-0 clip of the same
prompt and seed, one or more alignment scores ("probe", "clap", ...) and optionally a quality score.

Curves. Every metric is computed on the *mean curve*: for each alpha, the (weighted) mean over prompts
and seeds of preservation, of each alignment and of quality. A direction is "pos" (alphas >= 0, sign +1)
or "neg" (alphas <= 0, sign -1); alpha 0 belongs to both. Within a direction, delta = sign *
(alignment(alpha) - alignment(0)) and points are ordered by |alpha|.

* Cutoff (per concept and direction): the preservation that prompt switching reaches at a full prompt
  swap: the maximum of a switching variant's mean preservation over the direction's alphas, and the
  smaller of that over the switching variants given (the global and the localised one).
* AUC: the points with preservation <= cutoff + 1e-9 ("below"); when some point is above, one boundary
  point at preservation = cutoff, interpolated between b (the below point with the largest preservation)
  and a (the above point with the smallest), placed at a's |alpha|. Then ``np.trapezoid(delta,
  preservation)`` in |alpha| order: where preservation backtracks, the segment subtracts area. Fewer than
  two points: NaN. A grid that never reaches the cutoff gets no boundary point (the area covers only the
  measured range).
* Smoothness: on the below points, delta / max(max(delta), 0) in |alpha| order, the population standard
  deviation of its steps; NaN without a positive gain or without a step. Lower is smoother.
* Quality: mean quality interpolated (``np.interp`` over the direction's points sorted by preservation)
  at the points of ``np.linspace(0, cutoff, 15)`` that lie within the direction's measured preservation.
* Per concept: AUC and smoothness are the mean of the two directions (NaN if either is NaN); quality is
  the mean of the directions that are not NaN.

Intervals. Percentile intervals from a crossed bootstrap over prompts and seeds
(:func:`tada.bootstrap.crossed_weights`; unit = prompt * S + seed). Each replicate reweighs the clips,
recomputes the mean curves of *all* variants with the same weights, then the cutoffs, then every metric:
the cutoff's own uncertainty is carried, and two variants' replicates are paired (:func:`paired`).
Concepts summarised with the same replicate count and seed and the same numbers of prompts and seeds draw
the same prompts and seeds in replicate r, so their replicates can be averaged replicate by replicate
(:func:`mean_over_concepts`). Non-finite replicates (a smoothness without gain in that replicate, say) are
left out of an interval.

Everything below works on arrays with a leading replicate axis, so the bootstrap costs a few matrix
products and some vectorised bookkeeping rather than a Python loop per replicate.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..bootstrap import LEVEL, crossed_weights, percentile_interval
from ..errors import TadaError

DIRECTIONS = ("pos", "neg")
SIGN = {"pos": 1.0, "neg": -1.0}
TOL = 1e-9  # a point counts as below the cutoff up to this much above it
SPAN = 1e-12  # the smallest preservation step the boundary point is interpolated over
GRID = 15  # quality grid points in [0, cutoff]


# ---------------------------------------------------------------------------------------------- data


@dataclass
class Sweep:
    """One steering variant on one concept: ``alphas`` (A,) ascending with 0.0 once; ``preservation``,
    every ``alignment[name]`` and ``quality`` (optional) of shape (A, prompts, seeds)."""

    alphas: np.ndarray
    preservation: np.ndarray
    alignment: dict[str, np.ndarray]
    quality: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.alphas = _finite("alphas", self.alphas)
        if self.alphas.ndim != 1 or self.alphas.size == 0:
            raise TadaError(f"sweep: alphas must be a non-empty 1-d array, got shape {self.alphas.shape}")
        if np.count_nonzero(self.alphas == 0.0) != 1:
            raise TadaError(f"sweep: alphas must contain 0.0 exactly once, got {_short(self.alphas)}")
        if np.any(np.diff(self.alphas) <= 0):
            raise TadaError(f"sweep: alphas must be sorted ascending without repeats, got {_short(self.alphas)}")
        self.preservation = _finite("preservation", self.preservation)
        shape = self.preservation.shape
        if len(shape) != 3 or shape[0] != self.alphas.size or 0 in shape:
            raise TadaError(
                f"sweep: preservation must have shape (alphas={self.alphas.size}, prompts, seeds), got {shape}"
            )
        if not self.alignment:
            raise TadaError("sweep: no alignment scores")
        self.alignment = {str(k): _finite(f"alignment '{k}'", v) for k, v in self.alignment.items()}
        for name, values in self.alignment.items():
            if not name:
                raise TadaError("sweep: an alignment score has an empty name")
            if values.shape != shape:
                raise TadaError(f"sweep: alignment '{name}' has shape {values.shape}, preservation {shape}")
        if self.quality is not None:
            self.quality = _finite("quality", self.quality)
            if self.quality.shape != shape:
                raise TadaError(f"sweep: quality has shape {self.quality.shape}, preservation {shape}")

    @property
    def prompts(self) -> int:
        return int(self.preservation.shape[1])

    @property
    def seeds(self) -> int:
        return int(self.preservation.shape[2])

    def keys(self) -> list[str]:
        """The summary keys this sweep gets, in report order."""
        keys = []
        for m in self.alignment:
            keys += [f"auc_{m}_pos", f"auc_{m}_neg", f"auc_{m}", f"smooth_{m}_pos", f"smooth_{m}_neg", f"smooth_{m}"]
        if self.quality is not None:
            keys += ["quality_pos", "quality_neg", "quality"]
        return keys


def _finite(name: str, values: Any) -> np.ndarray:
    try:
        array = np.array(values, dtype=float)
    except (TypeError, ValueError) as e:
        raise TadaError(f"sweep: {name} is not numeric ({e})") from None
    if not np.all(np.isfinite(array)):
        raise TadaError(f"sweep: {name} holds NaN or infinite values")
    return array


def _short(values: np.ndarray) -> str:
    text = np.array2string(values, precision=4, separator=", ", max_line_width=10**6, threshold=12)
    return " ".join(text.split())


@dataclass
class Estimate:
    """A point estimate with its percentile interval; ``n`` counts the concepts a mean was taken over."""

    value: float
    low: float
    high: float
    n: int | None = None

    def fmt(self, decimals: int = 3) -> str:
        """``"0.123 [0.100, 0.140]"``; NaN as ``"n/a"``."""
        if not math.isfinite(self.value):
            return "n/a"

        def one(x: float) -> str:
            return f"{x:.{decimals}f}" if math.isfinite(x) else "n/a"

        return f"{one(self.value)} [{one(self.low)}, {one(self.high)}]"


@dataclass
class ConceptBench:
    """Summaries of one concept's variants (or their mean over concepts, see :func:`mean_over_concepts`).

    ``values[variant][key]`` is the :class:`Estimate`; ``samples[variant][key]`` its (replicates,)
    bootstrap values, replicate r computed from the same prompt and seed draws for every variant and key.
    """

    concept: str | None
    values: dict[str, dict[str, Estimate]]
    samples: dict[str, dict[str, np.ndarray]]
    prompts: int
    seeds: int
    replicates: int
    seed: int
    level: float
    switch: tuple[str, ...] = ()
    cutoffs: dict[str, Estimate] = field(default_factory=dict)  # cutoff_pos, cutoff_neg
    cutoff_samples: dict[str, np.ndarray] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One row per variant and key: concept, variant, key, value, low, high, n."""
        return [
            {"concept": self.concept, "variant": v, "key": k, "value": e.value, "low": e.low, "high": e.high, "n": e.n}
            for v, keys in self.values.items()
            for k, e in keys.items()
        ]


class Paired(NamedTuple):
    """``a - b`` with its interval, and the share of (finite) replicates in which a > b."""

    difference: Estimate
    share: float


# -------------------------------------------------------------------------------------- mean curves


def mean_curve(values: Any, weights: Any = None) -> np.ndarray:
    """The mean over prompts and seeds per alpha of (A, prompts, seeds) ``values``.

    ``weights``: None (plain mean), one weight per clip ((prompts, seeds) or (prompts*seeds,), unit =
    prompt * seeds + seed) giving an (A,) curve, or (R, prompts*seeds) giving (R, A) curves. Weights are
    normalised to sum to 1.
    """
    values = np.asarray(values, dtype=float)
    a, p, s = values.shape
    w, single = _weights(weights, p, s)
    curves = w @ values.reshape(a, p * s).T
    return curves[0] if single else curves


def _weights(weights: Any, prompts: int, seeds: int) -> tuple[np.ndarray, bool]:
    """(R, units) normalised weights and whether a single curve was asked for."""
    units = prompts * seeds
    if weights is None:
        return np.full((1, units), 1.0 / units), True
    w = np.asarray(weights, dtype=float)
    single = w.ndim == 1 or w.shape == (prompts, seeds)
    w = w.reshape(1, units) if single else w
    if w.ndim != 2 or w.shape[1] != units:
        raise TadaError(f"weights of shape {np.shape(weights)} do not fit {prompts} prompts x {seeds} seeds")
    total = w.sum(1, keepdims=True)
    if np.any(total <= 0) or not np.all(np.isfinite(w)):
        raise TadaError("weights must be finite with a positive sum per row")
    return w / total, single


def _direction(alphas: np.ndarray, direction: str) -> tuple[np.ndarray, int]:
    """The direction's alpha indices in |alpha| order (alpha 0 first), and the index of alpha 0."""
    zero = int(np.flatnonzero(alphas == 0.0)[0])
    if direction == "pos":
        return np.arange(zero, alphas.size), zero
    if direction == "neg":
        return np.arange(zero, -1, -1), zero
    raise TadaError(f"unknown direction '{direction}' (pos or neg)")


def _rows(curve: Any) -> np.ndarray:
    curve = np.asarray(curve, dtype=float)
    return curve[None] if curve.ndim == 1 else curve


def _split(alphas: Any, preservation: Any, values: Any, cutoff: Any, direction: str, delta: bool):
    """Direction points in |alpha| order: preservation (R, n), delta or raw values (R, n), cutoff (R,)."""
    alphas = np.asarray(alphas, dtype=float)
    single = np.ndim(preservation) == 1
    pres, vals = _rows(preservation), _rows(values)
    if pres.shape[-1] != alphas.size or vals.shape != pres.shape:
        raise TadaError(f"curves of shapes {pres.shape} and {vals.shape} do not fit {alphas.size} alphas")
    index, zero = _direction(alphas, direction)
    out = SIGN[direction] * (vals[:, index] - vals[:, [zero]]) if delta else vals[:, index]
    cut = np.broadcast_to(np.asarray(cutoff, dtype=float), (pres.shape[0],))
    return pres[:, index], out, cut, single


def _out(values: np.ndarray, single: bool) -> float | np.ndarray:
    return float(values[0]) if single else values


# ------------------------------------------------------------------------------------------ metrics


def cutoff(sweeps: Sequence[Sweep], direction: str, weights: Any = None) -> float | np.ndarray:
    """The prompt-switching cutoff: per switching sweep the maximum of its mean preservation over the
    direction's alphas, the smallest over ``sweeps``. ``weights`` as in :func:`mean_curve` ((R, units)
    weights give (R,) cutoffs)."""
    if not sweeps:
        raise TadaError("cutoff: no prompt-switching sweeps")
    tops = []
    for sweep in sweeps:
        curve = mean_curve(sweep.preservation, weights)
        index, _ = _direction(sweep.alphas, direction)
        tops.append(_rows(curve)[:, index].max(1))
    return _out(np.min(tops, axis=0), np.ndim(curve) == 1)


def auc(alphas: Any, preservation: Any, alignment: Any, cutoff: Any, direction: str) -> float | np.ndarray:
    """Area under delta over preservation up to the cutoff, in one direction, of mean curves (A,) (or
    (R, A) with (R,) cutoffs). See the module docstring for the definition."""
    pres, delta, cut, single = _split(alphas, preservation, alignment, cutoff, direction, delta=True)
    return _out(_auc(pres, delta, cut), single)


def smoothness(alphas: Any, preservation: Any, alignment: Any, cutoff: Any, direction: str) -> float | np.ndarray:
    """Population std of the steps of the peak-normalised delta over the points below the cutoff."""
    pres, delta, cut, single = _split(alphas, preservation, alignment, cutoff, direction, delta=True)
    return _out(_smoothness(pres, delta, cut), single)


def quality_score(alphas: Any, preservation: Any, quality: Any, cutoff: Any, direction: str) -> float | np.ndarray:
    """Mean quality interpolated at the 15-point grid over [0, cutoff], within the measured preservation."""
    pres, values, cut, single = _split(alphas, preservation, quality, cutoff, direction, delta=False)
    return _out(_quality(pres, values, cut), single)


def _previous(kept: np.ndarray) -> np.ndarray:
    """Per position, the index of the closest kept position before it (-1 if none)."""
    index = np.where(kept, np.arange(kept.shape[1]), -1)
    last = np.maximum.accumulate(index, axis=1)
    previous = np.full_like(last, -1)
    previous[:, 1:] = last[:, :-1]
    return previous


def _steps(kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which positions end a step between consecutive kept positions, and where that step starts."""
    previous = _previous(kept)
    ends = kept & (previous >= 0)
    return ends, np.where(ends, previous, 0)


def _auc(pres: np.ndarray, delta: np.ndarray, cut: np.ndarray) -> np.ndarray:
    rows = np.arange(pres.shape[0])
    below = pres <= cut[:, None] + TOL
    b = np.argmax(np.where(below, pres, -np.inf), axis=1)  # below point with the largest preservation
    a = np.argmin(np.where(below, np.inf, pres), axis=1)  # above point with the smallest preservation
    span = pres[rows, a] - pres[rows, b]
    boundary = below.any(1) & ~below.all(1) & (span > SPAN)
    with np.errstate(all="ignore"):  # rows without a boundary point divide by nothing useful: unused
        frac = (cut - pres[rows, b]) / span
        value = delta[rows, b] + frac * (delta[rows, a] - delta[rows, b])
    x, y, kept = pres.copy(), delta.copy(), below.copy()
    r, at = rows[boundary], a[boundary]  # the boundary point takes a's place in |alpha| order
    x[r, at], y[r, at], kept[r, at] = cut[boundary], value[boundary], True
    ends, starts = _steps(kept)
    x0, y0 = np.take_along_axis(x, starts, 1), np.take_along_axis(y, starts, 1)
    area = np.where(ends, (x - x0) * (y + y0) / 2.0, 0.0).sum(1)  # np.trapezoid over the kept points
    return np.where(kept.sum(1) >= 2, area, np.nan)


def _smoothness(pres: np.ndarray, delta: np.ndarray, cut: np.ndarray) -> np.ndarray:
    below = pres <= cut[:, None] + TOL
    peak = np.maximum(np.where(below, delta, -np.inf).max(1), 0.0)
    gain = peak > TOL
    norm = delta / np.where(gain, peak, 1.0)[:, None]
    ends, starts = _steps(below)
    gaps = norm - np.take_along_axis(norm, starts, 1)
    count = ends.sum(1)
    n = np.maximum(count, 1)
    mean = np.where(ends, gaps, 0.0).sum(1) / n
    std = np.sqrt(np.where(ends, (gaps - mean[:, None]) ** 2, 0.0).sum(1) / n)  # np.std, ddof 0
    return np.where(gain & (count > 0), std, np.nan)


def _quality(pres: np.ndarray, quality: np.ndarray, cut: np.ndarray) -> np.ndarray:
    grid = np.linspace(0.0, cut, GRID, axis=1)  # (R, 15)
    inside = (grid >= pres.min(1, keepdims=True) - TOL) & (grid <= pres.max(1, keepdims=True) + TOL)
    order = np.argsort(pres, axis=1, kind="stable")
    xp, fp = np.take_along_axis(pres, order, 1), np.take_along_axis(quality, order, 1)
    values = _interp(grid, xp, fp)
    count = inside.sum(1)
    return np.where(count > 0, np.where(inside, values, 0.0).sum(1) / np.maximum(count, 1), np.nan)


def _interp(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """``np.interp`` row by row (x (R, k), increasing xp (R, n)), with its handling of ends and ties."""
    n = xp.shape[1]
    count = (xp[:, None, :] <= x[:, :, None]).sum(-1)  # np.interp's j is the last index with xp[j] <= x
    j = np.clip(count - 1, 0, n - 1)
    j1 = np.minimum(j + 1, n - 1)
    x0, x1 = np.take_along_axis(xp, j, 1), np.take_along_axis(xp, j1, 1)
    y0, y1 = np.take_along_axis(fp, j, 1), np.take_along_axis(fp, j1, 1)
    with np.errstate(all="ignore"):
        inner = (y1 - y0) / (x1 - x0) * (x - x0) + y0
    return np.where((count == 0) | (j == n - 1) | (x0 == x), y0, inner)


def _both(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mean of the two directions; NaN if either is NaN."""
    return (pos + neg) / 2.0


def _either(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mean of the directions that are not NaN; NaN if neither is."""
    return np.where(np.isnan(pos), neg, np.where(np.isnan(neg), pos, (pos + neg) / 2.0))


def _metrics(sweep: Sweep, weights: np.ndarray, cut: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every key of one sweep, per row of (R, units) normalised weights, given (R,) cutoffs."""
    pres = mean_curve(sweep.preservation, weights)
    out: dict[str, np.ndarray] = {}
    for name, values in sweep.alignment.items():
        align = mean_curve(values, weights)
        per = {}
        for d in DIRECTIONS:
            p, delta, c, _ = _split(sweep.alphas, pres, align, cut[d], d, delta=True)
            per[d] = _auc(p, delta, c), _smoothness(p, delta, c)
        out[f"auc_{name}_pos"], out[f"auc_{name}_neg"] = per["pos"][0], per["neg"][0]
        out[f"auc_{name}"] = _both(per["pos"][0], per["neg"][0])
        out[f"smooth_{name}_pos"], out[f"smooth_{name}_neg"] = per["pos"][1], per["neg"][1]
        out[f"smooth_{name}"] = _both(per["pos"][1], per["neg"][1])
    if sweep.quality is not None:
        quality = mean_curve(sweep.quality, weights)
        for d in DIRECTIONS:
            p, q, c, _ = _split(sweep.alphas, pres, quality, cut[d], d, delta=False)
            out[f"quality_{d}"] = _quality(p, q, c)
        out["quality"] = _either(out["quality_pos"], out["quality_neg"])
    return out


# ------------------------------------------------------------------------------------- summarising


def summarise(
    sweeps: Mapping[str, Sweep],
    switch: Sequence[str],
    replicates: int = 1000,
    seed: int = 0,
    level: float = LEVEL,
    concept: str | None = None,
) -> ConceptBench:
    """One concept's variants summarised, with crossed-bootstrap intervals over prompts and seeds.

    ``switch`` names the prompt-switching variants among ``sweeps`` (the cutoff is the smallest of their
    maximum mean preservation, per direction). Point estimates come from the full data; each of the
    ``replicates`` reweighs the clips, and recomputes all mean curves, the cutoffs and every metric.
    """
    if not sweeps:
        raise TadaError("summarise: no sweeps")
    if isinstance(switch, str):
        switch = [switch]
    if not switch:
        raise TadaError("summarise: name at least one prompt-switching variant for the cutoff")
    missing = [s for s in switch if s not in sweeps]
    if missing:
        raise TadaError(f"summarise: prompt-switching variant(s) {', '.join(missing)} not among the sweeps")
    if int(replicates) < 1 or not 0 < level < 1:
        raise TadaError(f"summarise: need replicates >= 1 and 0 < level < 1, got {replicates} and {level}")
    for name, sweep in sweeps.items():
        if not isinstance(sweep, Sweep):
            raise TadaError(f"summarise: '{name}' is not a Sweep")
    first = next(iter(sweeps.values()))
    prompts, seeds = first.prompts, first.seeds
    for name, sweep in sweeps.items():
        if (sweep.prompts, sweep.seeds) != (prompts, seeds):
            raise TadaError(
                f"summarise: '{name}' has {sweep.prompts} prompts x {sweep.seeds} seeds, "
                f"the others {prompts} x {seeds}: every variant of a concept must use the same clips"
            )
    units = prompts * seeds
    drawn = crossed_weights(np.repeat(np.arange(prompts), seeds), np.tile(np.arange(seeds), prompts), replicates, seed)
    drawn = drawn.numpy()
    weights = np.vstack([np.full((1, units), 1.0 / units), drawn / drawn.sum(1, keepdims=True)])  # row 0: full data

    cut = {d: np.asarray(cutoff([sweeps[s] for s in switch], d, weights)) for d in DIRECTIONS}
    values, samples = {}, {}
    for name, sweep in sweeps.items():
        metrics = _metrics(sweep, weights, cut)
        values[name] = {k: _estimate(v, level) for k, v in metrics.items()}
        samples[name] = {k: v[1:] for k, v in metrics.items()}
    return ConceptBench(
        concept=concept,
        values=values,
        samples=samples,
        prompts=prompts,
        seeds=seeds,
        replicates=int(replicates),
        seed=seed,
        level=level,
        switch=tuple(switch),
        cutoffs={f"cutoff_{d}": _estimate(cut[d], level) for d in DIRECTIONS},
        cutoff_samples={f"cutoff_{d}": cut[d][1:] for d in DIRECTIONS},
    )


def _estimate(values: np.ndarray, level: float, n: int | None = None) -> Estimate:
    """Row 0 is the point estimate, the rest the replicates."""
    low, high = percentile_interval(values[1:], level)
    return Estimate(float(values[0]), float(low), float(high), n)


def _get(bench: ConceptBench, variant: str, key: str) -> tuple[Estimate, np.ndarray]:
    if variant not in bench.values:
        raise TadaError(f"no variant '{variant}' (have {', '.join(bench.values)})")
    if key not in bench.values[variant]:
        raise TadaError(f"variant '{variant}' has no '{key}' (have {', '.join(bench.values[variant])})")
    return bench.values[variant][key], bench.samples[variant][key]


def paired(bench: ConceptBench, a: str, b: str, key: str) -> Paired:
    """``a - b`` on ``key`` with the percentile interval of the replicate-by-replicate differences, and
    the share of replicates (with both values finite) in which a > b.

    On a :func:`mean_over_concepts` bench the two means may cover different concepts (their ``n``)."""
    (ea, sa), (eb, sb) = _get(bench, a, key), _get(bench, b, key)
    diff = np.concatenate([[ea.value - eb.value], sa - sb])
    finite = np.isfinite(diff[1:])
    share = float(np.mean(sa[finite] > sb[finite])) if finite.any() else math.nan
    return Paired(_estimate(diff, bench.level), share)


def mean_over_concepts(benches: Sequence[ConceptBench]) -> ConceptBench:
    """Each variant's value averaged over concepts, ignoring concepts where it is NaN (``n`` says how
    many entered); the interval comes from the replicate-by-replicate means over the same concepts
    (NaN replicates left out of a replicate's mean).

    Valid because the concepts share the replicate count and seed and the numbers of prompts and seeds,
    so replicate r draws the same prompts and seeds in every concept (checked)."""
    if not benches:
        raise TadaError("mean_over_concepts: no concepts")
    first = benches[0]
    for bench in benches[1:]:
        for name in ("prompts", "seeds", "replicates", "seed", "level"):
            if getattr(bench, name) != getattr(first, name):
                raise TadaError(
                    f"mean_over_concepts: concept {bench.concept or '?'} has {name} {getattr(bench, name)}, "
                    f"concept {first.concept or '?'} {getattr(first, name)}: replicates would not match"
                )
    variants = list(dict.fromkeys(v for b in benches for v in b.values))
    values: dict[str, dict[str, Estimate]] = {}
    samples: dict[str, dict[str, np.ndarray]] = {}
    for variant in variants:
        keys = list(dict.fromkeys(k for b in benches for k in b.values.get(variant, {})))
        values[variant], samples[variant] = {}, {}
        for key in keys:
            entered = [
                b for b in benches if key in b.values.get(variant, {}) and math.isfinite(b.values[variant][key].value)
            ]
            if entered:
                point = float(np.mean([b.values[variant][key].value for b in entered]))
                stacked = np.stack([b.samples[variant][key] for b in entered])
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # a replicate NaN in every concept
                    reps = np.nanmean(stacked, axis=0)
            else:
                point, reps = math.nan, np.full(first.replicates, np.nan)
            values[variant][key] = _estimate(np.concatenate([[point], reps]), first.level, len(entered))
            samples[variant][key] = reps
    return ConceptBench(
        concept="mean",
        values=values,
        samples=samples,
        prompts=first.prompts,
        seeds=first.seeds,
        replicates=first.replicates,
        seed=first.seed,
        level=first.level,
        switch=tuple(dict.fromkeys(s for b in benches for s in b.switch)),
    )


def spearman(ours: Mapping[str, float], theirs: Mapping[str, float]) -> tuple[float, int]:
    """Spearman's rho between two rankings over the names both give a finite value, and that count
    (rho NaN below two names or when one side is constant)."""
    from scipy.stats import spearmanr

    names = [k for k in ours if k in theirs and math.isfinite(ours[k]) and math.isfinite(theirs[k])]
    if len(names) < 2:
        return math.nan, len(names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant side: scipy warns and gives NaN
        rho = spearmanr([ours[k] for k in names], [theirs[k] for k in names]).statistic
    return float(rho), len(names)
