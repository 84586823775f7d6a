"""Localisation results with intervals: bootstrap, ``impact.csv``, heatmaps, a markdown summary.

Intervals are percentile bootstraps over pairs and noise seeds, crossed: each replicate draws the
pairs with replacement and, independently, the seed indices, and weighs every (pair, seed) unit by
how often both were drawn (:func:`tada.bootstrap.crossed_weights`, shared with the benchmark summary).
Impact is a ratio of means (see :class:`tada.localize.ImpactTable`), so each replicate recomputes it
from the reweighted means rather than averaging per-pair ratios.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .bootstrap import LEVEL, crossed_weights, interval
from .errors import TadaError
from .files import write_text
from .localize import ImpactTable, impact_of
from .patching import FULL, format_window

CSV_COLUMNS = ("site", "concept", "mode", "window", "impact", "ci_low", "ci_high", "n")


def bootstrap_weights(table: ImpactTable, replicates: int, seed: int = 0) -> torch.Tensor:
    """``(replicates, units)`` weights: the count of the unit's pair times the count of its seed index."""
    return crossed_weights(table.units[:, 0], table.units[:, 1], replicates, seed)


def bootstrap_impacts(table: ImpactTable, replicates: int = 2000, seed: int = 0) -> torch.Tensor:
    """``(replicates, columns)`` impacts of reweighted units (a replicate with no weight is dropped)."""
    weights = bootstrap_weights(table, replicates, seed)
    weights = weights[weights.sum(1) > 0]
    norm = weights / weights.sum(1, keepdim=True)
    return impact_of(norm @ table.clean, norm @ table.corrupt, norm @ table.patched, table.modes)


@dataclass
class ConceptSummary:
    """One table's figures: per column impact with its interval, and the top-two share per mode."""

    table: ImpactTable
    name: str
    impact: np.ndarray
    low: np.ndarray
    high: np.ndarray
    shares: dict[str, dict[str, Any]]  # mode -> {"sites": [a, b], "share": x, "low": y, "high": z}
    contrast: tuple[float, float, float]  # mean, low, high
    samples: torch.Tensor | None = None  # (replicates, columns) bootstrap impacts


def summarise(table: ImpactTable, name: str | None = None, replicates: int = 2000, seed: int = 0) -> ConceptSummary:
    """Impacts with bootstrap intervals, and for each mode the share of the positive single-layer impact
    held by its top two layers (the same two layers in every replicate)."""
    samples = bootstrap_impacts(table, replicates, seed)
    low, high = interval(samples)
    impact = table.impact.numpy()
    shares = {}
    for mode in dict.fromkeys(table.modes):
        single = list(_single_layers(table, mode).values())
        if len(single) < 2:
            continue
        top = sorted(single, key=lambda i: -impact[i])[:2]
        share = _top_share(samples[:, single], [single.index(i) for i in top])
        point = _top_share(torch.as_tensor(impact[single])[None], [single.index(i) for i in top])
        s_low, s_high = interval(share)
        shares[mode] = {
            "sites": [table.sites[i] for i in top],
            "share": float(point[0]),
            "low": float(s_low),
            "high": float(s_high),
            # a share of nothing means nothing: only when the top layer's interval is above zero
            "clear": bool(low[top[0]] > 0),
        }
    weights = bootstrap_weights(table, replicates, seed)
    weights = weights[weights.sum(1) > 0]
    contrasts = (weights @ table.clean - weights @ table.corrupt) / weights.sum(1)
    c_low, c_high = interval(contrasts[:, None])
    return ConceptSummary(
        table,
        name or table.concept or table.probe,
        impact,
        low,
        high,
        shares,
        (table.contrast, float(c_low[0]), float(c_high[0])),
        samples,
    )


def _single_layers(table: ImpactTable, mode: str) -> dict[str, int]:
    """Column index of each single layer patched over the whole run in ``mode``."""
    return {
        g: i
        for i, (g, m, w) in enumerate(zip(table.sites, table.modes, table.windows))
        if m == mode and w == FULL and "+" not in g
    }


def pooled_profile(summaries: Sequence[ConceptSummary], mode: str = "input") -> dict[str, Any] | None:
    """The mean impact per layer over concepts (the paper's headline figure: which layers decide concepts
    in general), with intervals from the concepts' bootstrap replicates averaged replicate by replicate,
    and the top-2 share of that mean profile. None when the concepts share no single layers in ``mode``."""
    columns = [_single_layers(s.table, mode) for s in summaries]
    layers = [g for g in columns[0] if all(g in c for c in columns[1:])] if columns else []
    if len(layers) < 2 or any(s.samples is None for s in summaries):
        return None
    replicates = min(s.samples.shape[0] for s in summaries)
    stacked = torch.stack([s.samples[:replicates, [c[g] for g in layers]] for s, c in zip(summaries, columns)])
    mean_samples = stacked.mean(0)  # (replicates, layers)
    point = np.mean([[s.impact[c[g]] for g in layers] for s, c in zip(summaries, columns)], axis=0)
    low, high = interval(mean_samples)
    order = [int(i) for i in np.argsort(-point)]
    top = order[:2]
    share = _top_share(mean_samples, top)
    s_low, s_high = interval(share)
    return {
        "mode": mode,
        "concepts": len(summaries),
        "layers": layers,
        "impact": point.tolist(),
        "low": low.tolist(),
        "high": high.tolist(),
        "top2": [layers[i] for i in top],
        "share": float(_top_share(torch.as_tensor(point)[None], top)[0]),
        "share_low": float(s_low),
        "share_high": float(s_high),
    }


def _top_share(impacts: torch.Tensor, top: list[int]) -> torch.Tensor:
    """Share of the positive impact that the ``top`` columns hold, per row."""
    positive = impacts.clamp_min(0).sum(1)
    return impacts[:, top].sum(1) / positive


def csv_rows(summaries: Sequence[ConceptSummary]) -> list[dict[str, Any]]:
    rows = []
    for s in summaries:
        n = int(s.table.clean.shape[0])
        for i, (group, mode, window) in enumerate(zip(s.table.sites, s.table.modes, s.table.windows)):
            rows.append(
                {
                    "site": group,
                    "concept": s.name,
                    "mode": mode,
                    "window": format_window(window),
                    "impact": float(s.impact[i]),
                    "ci_low": float(s.low[i]),
                    "ci_high": float(s.high[i]),
                    "n": n,
                }
            )
    return rows


def write_csv(summaries: Sequence[ConceptSummary], path: str | Path) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in csv_rows(summaries):
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return write_text(Path(path), buffer.getvalue())


def as_json(summaries: Sequence[ConceptSummary]) -> dict[str, Any]:
    modes = dict.fromkeys(m for s in summaries for m in s.table.modes)
    return {
        "level": LEVEL,
        "pooled": {m: p for m in modes if (p := pooled_profile(summaries, m)) is not None},
        "rows": csv_rows(summaries),
        "concepts": {
            s.name: {
                "probe": s.table.probe,
                "pairs": len(s.table.pairs),
                "seeds": int(s.table.units[:, 1].max()) + 1,
                "contrast": {"mean": s.contrast[0], "low": s.contrast[1], "high": s.contrast[2]},
                "top2": s.shares,
            }
            for s in summaries
        },
    }


def short_group(group: str) -> str:
    """A group for people: consecutive layers of one kind as a range (``xattn_in.0-7``)."""
    sites = group.split("+")
    prefixes = {site.rpartition(".")[0] for site in sites}
    numbers = [site.rpartition(".")[2] for site in sites]
    if len(sites) < 3 or len(prefixes) != 1 or not all(n.isdigit() for n in numbers):
        return group
    values = [int(n) for n in numbers]
    if values != list(range(values[0], values[0] + len(values))):
        return group
    return f"{prefixes.pop()}.{values[0]}-{values[-1]}"


def _fmt(value: float, low: float, high: float) -> str:
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def write_summary(summaries: Sequence[ConceptSummary], path: str | Path, title: str = "Localisation") -> Path:
    """Markdown: per concept the probe contrast, the top layers per mode and their top-two share, and
    every windowed or grouped column."""
    if not summaries:
        raise TadaError("nothing to summarise")
    first = summaries[0].table
    lines = [
        f"# {title}",
        "",
        f"Model family {first.family}; impacts with {LEVEL:.0%} bootstrap intervals over pairs and seeds. "
        "Patching (input, output): share of the clean-corrupted probe contrast a column restores; "
        "ablation: share it removes from the clean run. Top-2 share: the two highest single layers' share "
        "of all positive single-layer impact (given only where the top layer's interval is above 0).",
        "",
    ]
    if any(s.shares for s in summaries):
        lines += [
            "| concept | pairs x seeds | contrast | mode | top layers | top-2 share |",
            "|---|---|---|---|---|---|",
        ]
    for s in summaries:
        units = f"{len(s.table.pairs)} x {int(s.table.units[:, 1].max()) + 1}"
        contrast = _fmt(*s.contrast)
        for mode, share in s.shares.items():
            index = {
                g: i
                for i, (g, m, w) in enumerate(zip(s.table.sites, s.table.modes, s.table.windows))
                if m == mode and w == FULL
            }
            tops = ", ".join(
                f"{site} {_fmt(s.impact[index[site]], s.low[index[site]], s.high[index[site]])}"
                for site in share["sites"]
            )
            lines.append(
                f"| {s.name} | {units} | {contrast} | {mode} | {tops} | "
                f"{_fmt(share['share'], share['low'], share['high']) if share['clear'] else 'no layer above 0'} |"
            )
    for mode in dict.fromkeys(m for s in summaries for m in s.table.modes):
        pooled = pooled_profile(summaries, mode) if len(summaries) > 1 else None
        if pooled is None:
            continue
        cells = " | ".join(_fmt(v, lo, hi) for v, lo, hi in zip(pooled["impact"], pooled["low"], pooled["high"]))
        lines += [
            "",
            f"Mean {mode} impact per layer over the {pooled['concepts']} concepts; top two "
            f"{' and '.join(pooled['top2'])}, top-2 share "
            f"{_fmt(pooled['share'], pooled['share_low'], pooled['share_high'])}:",
            "",
            "| " + " | ".join(pooled["layers"]) + " |",
            "|" + "---|" * len(pooled["layers"]),
            f"| {cells} |",
        ]
    extra = [
        (s, i)
        for s in summaries
        for i, (g, w) in enumerate(zip(s.table.sites, s.table.windows))
        if w != FULL or "+" in g
    ]
    if extra:
        lines += [
            "",
            "Groups and step windows:",
            "",
            "| concept | contrast | mode | sites | window | impact |",
            "|---|---|---|---|---|---|",
        ]
        for s, i in extra:
            lines.append(
                f"| {s.name} | {_fmt(*s.contrast)} | {s.table.modes[i]} | {short_group(s.table.sites[i])} | "
                f"{format_window(s.table.windows[i])} | "
                f"{_fmt(s.impact[i], s.low[i], s.high[i])} |"
            )
    return write_text(Path(path), "\n".join(lines) + "\n")


def plot_heatmaps(summaries: Sequence[ConceptSummary], path: str | Path) -> Path:
    """One heatmap per mode: rows are concepts, columns single layers over the whole run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not summaries:
        raise TadaError("nothing to plot")
    modes = list(dict.fromkeys(m for s in summaries for m in s.table.modes))
    panels = []
    for mode in modes:
        layers: list[str] = []
        for s in summaries:
            for g, m, w in zip(s.table.sites, s.table.modes, s.table.windows):
                if m == mode and w == FULL and "+" not in g and g not in layers:
                    layers.append(g)
        if not layers:
            continue
        values = np.full((len(summaries), len(layers)), np.nan)
        for r, s in enumerate(summaries):
            for i, (g, m, w) in enumerate(zip(s.table.sites, s.table.modes, s.table.windows)):
                if m == mode and w == FULL and g in layers:
                    values[r, layers.index(g)] = s.impact[i]
        panels.append((mode, layers, values))
    if not panels:
        raise TadaError("no single-layer, whole-run columns to plot")
    width = max(len(p[1]) for p in panels)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(len(panels) * (1.6 + 0.6 * width), 1.0 + 0.42 * len(summaries)), squeeze=False
    )
    for p, (ax, (mode, layers, values)) in enumerate(zip(axes[0], panels)):
        image = ax.imshow(values, cmap="viridis", vmin=-0.2, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(layers)), [g.split(".")[-1] for g in layers], fontsize=8)
        ax.set_xlabel(f"{mode}: layer", fontsize=8)
        # the panels share their rows: names only on the first, so they never run into a neighbour
        ax.set_yticks(range(len(summaries)), [s.name for s in summaries] if p == 0 else [], fontsize=7)
        for (r, c), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v < 0.5 else "black")
    fig.colorbar(image, ax=list(axes[0]), label="impact")
    fig.suptitle(f"{summaries[0].table.family}: localisation impact", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_windows(summaries: Sequence[ConceptSummary], path: str | Path) -> Path:
    """When a concept is decided: per concept, the impact (with its interval) of each windowed column
    against the part of the trajectory it covers, one line per (mode, group)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s for s in summaries if any(w != FULL for w in s.table.windows)]
    if not rows:
        raise TadaError("no windowed columns to plot")
    ncols = min(len(rows), 4)  # a grid of at most four panels a row, so many concepts stay legible
    nrows = -(-len(rows) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.8 * nrows), squeeze=False, sharey=True)
    for ax in axes.flat[len(rows) :]:
        ax.set_visible(False)
    for ax, s in zip(axes.flat, rows):
        lines: dict[tuple[str, str, float], list[int]] = {}  # one colour per group and window length
        for i, (g, m, w) in enumerate(zip(s.table.sites, s.table.modes, s.table.windows)):
            if w != FULL:
                lines.setdefault((m, g, round(w[1] - w[0], 6)), []).append(i)
        groups = {(m, g) for m, g, _ in lines}
        for (mode, group, width), index in lines.items():
            name = f"{mode} {short_group(group)}, " if len(groups) > 1 else ""
            colour = None
            for i in index:
                start, end = s.table.windows[i]
                label = f"{name}windows of {width:g}" if colour is None else None
                (line,) = ax.plot([start, end], [s.impact[i]] * 2, lw=2, color=colour, label=label)
                colour = line.get_color()
                ax.fill_between([start, end], s.low[i], s.high[i], alpha=0.2, color=colour)
        ax.legend(fontsize=6)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(s.name, fontsize=8)
        ax.set_xlabel("trajectory (start .. end)", fontsize=7)
        ax.set_xlim(0, 1)
    for row in axes:
        row[0].set_ylabel("impact in the window", fontsize=8)
    fig.suptitle(f"{summaries[0].table.family}: when each concept is decided", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
