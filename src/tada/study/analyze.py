"""``tada study analyze``: per-condition preference and quality with 95% intervals, rater agreement, a plot.

* **Screening.** A rater is set aside who chose the anchor in more attention checks than allowed, or who
  rated the hidden reference below 90 on more than 15% of their MUSHRA pages (the post-screening of
  ITU-R BS.1534-3). The report lists every rater and why one was set aside; ``keep_all`` keeps everyone.
* **Preference** (A/B pages): per condition, the share of its comparisons it won with a Wilson interval,
  and its Bradley-Terry strength, given as the probability of beating a condition of average strength.
  The Bradley-Terry interval is a percentile bootstrap over raters (the raters are the random factor:
  each replicate redraws them and weighs their answers by how often they were drawn).
* **Quality** (MUSHRA pages): per condition, the mean rating with the same bootstrap over raters; the hidden
  reference and the anchor are listed for scale.
* **Agreement**: Krippendorff's alpha between raters, nominal on whether a pair's first condition (by name)
  won (units: an item's pair), interval on the ratings (units: an item's condition), with the plain share of agreeing
  rater pairs on A/B units.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from ..bootstrap import crossed_weights, percentile_interval
from ..errors import TadaError
from ..files import write_bytes, write_json, write_text
from .design import ANCHOR, HIDDEN_REFERENCE, Study
from .stats import bradley_terry, krippendorff_alpha, wilson_interval
from .store import AnswerStore

HIDDEN_REFERENCE_MIN, HIDDEN_REFERENCE_SHARE = 90.0, 0.15


@dataclass
class Analysis:
    raters: list[dict[str, Any]] = field(default_factory=list)
    preference: list[dict[str, Any]] = field(default_factory=list)
    quality: list[dict[str, Any]] = field(default_factory=list)
    agreement: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "raters": self.raters,
            "preference": self.preference,
            "quality": self.quality,
            "agreement": self.agreement,
            "counts": self.counts,
        }


def analyze(
    study: Study, replicates: int = 2000, seed: int = 0, max_failed_checks: int = 0, keep_all: bool = False
) -> Analysis:
    """The study's answers analysed; no answers at all is one clear error."""
    if not study.answers_path.is_file():
        raise TadaError(f"no answers yet in {study.folder}: serve the study with `tada study serve` first")
    with AnswerStore(study.answers_path) as store:
        answers, raters = store.answers(), store.raters()
    if not answers:
        raise TadaError(f"no answers yet in {study.answers_path}: serve the study with `tada study serve` first")
    out = Analysis()
    kept = set()
    for rater in raters:
        row = _screen(rater, [a for a in answers if a["rater"] == rater["id"]], max_failed_checks)
        out.raters.append(row)
        if row["answers"] and (keep_all or not row["set_aside"]):
            kept.add(rater["id"])
    answers = [a for a in answers if a["rater"] in kept]
    order = sorted(kept)
    out.counts = {
        "raters": len(raters),
        "raters_kept": len(kept),
        "ab_answers": sum(a["kind"] == "ab" for a in answers),
        "mushra_pages": sum(a["kind"] == "mushra" for a in answers),
    }
    conditions = sorted({c for item in study.items.values() for c in item.conditions})
    weights = _rater_weights(len(order), replicates, seed)
    out.preference = _preference([a for a in answers if a["kind"] == "ab"], conditions, order, weights)
    out.quality = _quality([a for a in answers if a["kind"] == "mushra"], conditions, order, weights)
    out.agreement = _agreement(answers)
    return out


def _choice(answer: dict[str, Any]) -> tuple[str, str]:
    """(winner, loser) of a pair answer."""
    chosen = answer["response"]["choice"]
    return answer["stimuli"][chosen], answer["stimuli"][1 - chosen]


def _screen(rater: dict[str, Any], answers: list[dict[str, Any]], max_failed: int) -> dict[str, Any]:
    checks = [a for a in answers if a["kind"] == "check"]
    failed = sum(_choice(a)[0] == ANCHOR for a in checks)
    pages = [a for a in answers if a["kind"] == "mushra"]
    low = sum(a["response"]["ratings"][a["stimuli"].index(HIDDEN_REFERENCE)] < HIDDEN_REFERENCE_MIN for a in pages)
    reasons = []
    if failed > max_failed:
        reasons.append(f"chose the anchor in {failed} of {len(checks)} attention checks")
    if pages and low / len(pages) > HIDDEN_REFERENCE_SHARE:
        reasons.append(f"rated the hidden reference below {HIDDEN_REFERENCE_MIN:g} on {low} of {len(pages)} pages")
    return {
        "rater": rater["ordinal"],
        "name": rater["name"],
        "answers": len(answers),
        "checks_failed": failed,
        "checks": len(checks),
        "hidden_reference_low": low,
        "pages": len(pages),
        "set_aside": "; ".join(reasons),
    }


def _rater_weights(n: int, replicates: int, seed: int) -> np.ndarray:
    """``(replicates, n)``: how often each rater is drawn in each bootstrap replicate (the raters are the
    bootstrap's groups, with one seed index: :func:`~tada.bootstrap.crossed_weights`)."""
    if n == 0:
        return np.zeros((replicates, 0))
    return crossed_weights(np.arange(n), np.zeros(n, dtype=int), replicates, seed).numpy()


def _preference(answers: list[dict[str, Any]], conditions: list[str], order: list[str], weights: np.ndarray):
    if not answers:
        return []
    index = {c: i for i, c in enumerate(conditions)}
    rater_of = {r: i for i, r in enumerate(order)}
    pairs = [_choice(a) for a in answers]
    winners = np.array([index[w] for w, _ in pairs])
    losers = np.array([index[loser] for _, loser in pairs])
    who = np.array([rater_of[a["rater"]] for a in answers])
    strength = bradley_terry(len(conditions), winners, losers)
    boot = np.stack([bradley_terry(len(conditions), winners, losers, weights=w[who]) for w in weights])
    low, high = percentile_interval(_beats_average(boot))
    rows = []
    for c, i in index.items():
        won, played = int((winners == i).sum()), int((winners == i).sum() + (losers == i).sum())
        w_low, w_high = wilson_interval(won, played)
        rows.append(
            {
                "condition": c,
                "label": label(c),
                "comparisons": played,
                "wins": won,
                "win_rate": won / played if played else float("nan"),
                "win_rate_interval": [w_low, w_high],
                "strength": float(strength[i]),
                "beats_average": float(_beats_average(strength)[i]),
                "beats_average_interval": [float(low[i]), float(high[i])],
            }
        )
    return sorted(rows, key=lambda r: -r["strength"])


def _beats_average(strength: np.ndarray) -> np.ndarray:
    """P(beat a condition of mean log-strength): log-strengths are centred, so the logistic of each."""
    return 1 / (1 + np.exp(-strength))


def _quality(answers: list[dict[str, Any]], conditions: list[str], order: list[str], weights: np.ndarray):
    if not answers:
        return []
    rater_of = {r: i for i, r in enumerate(order)}
    ratings: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for a in answers:
        for condition, value in zip(a["stimuli"], a["response"]["ratings"]):
            ratings[condition].append((rater_of[a["rater"]], value))
    rows = []
    for c in [*conditions, HIDDEN_REFERENCE, ANCHOR]:
        if c not in ratings:
            continue
        who = np.array([r for r, _ in ratings[c]])
        values = np.array([v for _, v in ratings[c]])
        w = weights[:, who]
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = (w * values).sum(1) / w.sum(1)
        low, high = percentile_interval(boot[:, None])
        rows.append(
            {
                "condition": c,
                "label": label(c),
                "ratings": len(values),
                "mean": float(values.mean()),
                "median": float(np.median(values)),
                "interval": [float(low[0]), float(high[0])],
            }
        )
    return sorted(rows, key=lambda r: -r["mean"])


def _agreement(answers: list[dict[str, Any]]) -> dict[str, Any]:
    pair_units: dict[tuple, list[str]] = defaultdict(list)
    rating_units: dict[tuple, list[float]] = defaultdict(list)
    for a in answers:
        if a["kind"] == "ab":
            first = sorted(a["stimuli"])[0]  # a binary judgement per pair: did its first condition win?
            pair_units[(a["item"], *sorted(a["stimuli"]))].append(_choice(a)[0] == first)
        elif a["kind"] == "mushra":
            for condition, value in zip(a["stimuli"], a["response"]["ratings"]):
                rating_units[(a["item"], condition)].append(value)
    shared = [v for v in pair_units.values() if len(v) >= 2]
    agree = [x == y for v in shared for x, y in combinations(v, 2)]
    return {
        "ab_alpha": krippendorff_alpha(list(pair_units.values()), "nominal"),
        "ab_units_shared": len(shared),
        "ab_pairwise_agreement": float(np.mean(agree)) if agree else float("nan"),
        "mushra_alpha": krippendorff_alpha(list(rating_units.values()), "interval"),
        "mushra_units_shared": sum(len(v) >= 2 for v in rating_units.values()),
    }


def label(condition: str) -> str:
    """A benchmark variant's row name ("CAA (loc.)"), or the condition's own name."""
    if condition == HIDDEN_REFERENCE:
        return "hidden reference"
    try:
        from ..bench.plan import Variant

        return Variant.parse(condition).label
    except TadaError:
        return condition


# ---------------------------------------------------------------------------------------- output
def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def report_markdown(study: Study, result: Analysis) -> str:
    c = result.counts
    lines = [
        f"# Listening study: {study.folder.name}",
        "",
        f"{c['raters_kept']} of {c['raters']} raters kept; {c['ab_answers']} A/B answers and {c['mushra_pages']} "
        "MUSHRA pages from them. Intervals are 95%.",
        "",
        "## Preference (A/B)",
        "",
        "| condition | comparisons | win rate [Wilson] | Bradley-Terry: P(beats average) [bootstrap over raters] |",
        "|---|---|---|---|",
    ]
    for r in result.preference:
        lo, hi = r["win_rate_interval"]
        b_lo, b_hi = r["beats_average_interval"]
        lines.append(
            f"| {r['label']} | {r['comparisons']} | {_fmt(r['win_rate'])} [{_fmt(lo)}, {_fmt(hi)}] "
            f"| {_fmt(r['beats_average'])} [{_fmt(b_lo)}, {_fmt(b_hi)}] |"
        )
    lines += ["", "## Quality (MUSHRA, 0-100)", "", "| condition | ratings | mean [bootstrap over raters] | median |"]
    lines.append("|---|---|---|---|")
    for r in result.quality:
        lo, hi = r["interval"]
        lines.append(
            f"| {r['label']} | {r['ratings']} | {_fmt(r['mean'], 1)} [{_fmt(lo, 1)}, {_fmt(hi, 1)}] "
            f"| {_fmt(r['median'], 1)} |"
        )
    a = result.agreement
    lines += [
        "",
        "## Agreement between raters",
        "",
        f"* A/B: Krippendorff's alpha (nominal) {_fmt(a.get('ab_alpha', float('nan')))} over "
        f"{a.get('ab_units_shared', 0)} pairs heard by two or more raters; rater pairs agreeing: "
        f"{_fmt(a.get('ab_pairwise_agreement', float('nan')))}",
        f"* MUSHRA: Krippendorff's alpha (interval) {_fmt(a.get('mushra_alpha', float('nan')))} over "
        f"{a.get('mushra_units_shared', 0)} clips rated by two or more raters",
        "",
        "## Raters",
        "",
        "| rater | answers | checks failed | hidden reference < 90 | set aside |",
        "|---|---|---|---|---|",
    ]
    for r in result.raters:
        lines.append(
            f"| {r['rater']} {r['name']} | {r['answers']} | {r['checks_failed']} of {r['checks']} "
            f"| {r['hidden_reference_low']} of {r['pages']} pages | {r['set_aside'] or 'no'} |"
        )
    return "\n".join(lines) + "\n"


def plot(result: Analysis) -> bytes:
    """Preference and quality side by side, each with its 95% intervals, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 0.6 + 0.42 * max(len(result.preference), len(result.quality), 2)))
    panels = (
        (axes[0], result.preference, "beats_average", "beats_average_interval", "P(beats an average condition)", 0.5),
        (axes[1], result.quality, "mean", "interval", "MUSHRA quality (0-100)", None),
    )
    for ax, rows, key, interval, title, line in panels:
        rows = rows[::-1]
        y = np.arange(len(rows))
        values = np.array([r[key] for r in rows])
        spans = np.array([r[interval] for r in rows]).reshape(-1, 2)
        colors = ["grey" if r["condition"] in (HIDDEN_REFERENCE, ANCHOR) else "C0" for r in rows]
        ax.barh(y, values, color=colors, alpha=0.6)
        if len(rows):
            ax.errorbar(values, y, xerr=np.abs(spans.T - values), fmt="none", color="black", capsize=3)
        if line is not None:
            ax.axvline(line, color="grey", linestyle=":")
        ax.set_yticks(y, [r["label"] for r in rows], fontsize=8)
        ax.set_title(title, fontsize=10)
        if not rows:
            ax.text(0.5, 0.5, "no answers of this kind", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def write_analysis(study: Study, result: Analysis, out: str | Path | None = None) -> Path:
    """``report.md``, ``results.json`` and ``preference.png`` in ``out`` (default ``STUDY/analysis``)."""
    out = Path(out) if out is not None else study.folder / "analysis"
    write_text(out / "report.md", report_markdown(study, result))
    write_json(out / "results.json", result.to_json(), sort_keys=True)
    write_bytes(out / "preference.png", plot(result))
    return out


__all__ = ["Analysis", "analyze", "label", "plot", "report_markdown", "write_analysis"]
