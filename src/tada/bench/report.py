"""The benchmark's report: summaries from the store, tables in the paper's layout, curves, audio.

``write_report(run)`` reads every finished sweep from ``DIR/bench.sqlite`` and writes
``report.md`` and ``report.html`` (the same sections, rendered from one list; the HTML adds
audio players), one ``curves-{concept}.png`` per concept (mean alignment gain against
preservation, both directions, the cutoff marked) and ``results.json`` (every estimate with
its interval, the paired comparisons and the run's cost). A concept appears once its prompt
switching (which sets the cutoff) is stored, with the variants finished so far; the report
says what is missing, so it can be written at any time.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..concepts import CONCEPTS
from ..files import write_json, write_text
from .paper import TABLE, VARIANT_OF_ROW, paper_column
from .plan import DIRECTIONS, Variant
from .summary import ConceptBench, Estimate, Sweep, mean_over_concepts, paired, spearman, summarise
from .worker import example_path

FD_POINTS = (1 / 3, 2 / 3, 1.0)  # preservation points (fractions of the cutoff) the Frechet distance is taken at


def grid_of(run: Any, concept: str, variant: str) -> list[float] | None:
    result = run.store.result(f"calibrate/{concept}/{variant}")
    if result is None:
        return None
    return sorted({0.0, *(float(a) for d in DIRECTIONS for a in result[d]["grid"])})


def load_sweeps(
    run: Any, quality: Any = None
) -> tuple[dict[str, dict[str, Sweep]], dict[str, dict[str, Any]], list[str]]:
    """Complete sweeps per concept and variant (``quality``: a QualityReference for per-clip typicality),
    the raw rows (for the Frechet distances) and what is still missing."""
    from .metrics import typicality

    s = run.settings
    sweeps: dict[str, dict[str, Sweep]] = {}
    raw: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for concept in s.concepts:
        got: dict[str, Sweep] = {}
        for variant in s.variants:
            grid = grid_of(run, concept, variant)
            if grid is None:
                missing.append(f"{concept}/{variant} (not calibrated)")
                continue
            rows = run.store.sweep(variant, concept, grid, s.prompts, s.seed_list, s.metrics)
            if not rows.complete:
                done = int(np.isfinite(rows.preservation).sum())
                missing.append(f"{concept}/{variant} ({done} of {rows.preservation.size} clips)")
                continue
            q = None
            if quality is not None:
                flat = rows.embeddings.reshape(-1, rows.embeddings.shape[-1])
                q = typicality(flat, quality).reshape(rows.preservation.shape)
            got[variant] = Sweep(rows.alphas, rows.preservation, dict(rows.alignment), q)
            raw.setdefault(concept, {})[variant] = rows
        if got and all(v in got for v in run.switch):
            sweeps[concept] = got
        elif got:
            missing.append(f"{concept} (prompt switching, which sets the cutoff, is not complete)")
    return sweeps, raw, missing


def frechet_table(
    benches: dict[str, ConceptBench], raw: dict[str, dict[str, Any]], quality: Any, variants: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Per variant, the Frechet distance to the held-out corpus audio of the clips at each preservation
    point (a fraction of each concept's cutoff), pooled over concepts and directions: at each point, every
    concept and direction contributes its clips at the grid alpha whose mean preservation is nearest."""
    from .metrics import frechet_distance

    table: dict[str, dict[str, float]] = {}
    # every variant of a concept shares its alpha-0 clips: take them from any one, of the same concepts
    baseline = []
    for per in (raw[c] for c in benches if raw.get(c)):
        rows = next(iter(per.values()))
        baseline.append(rows.embeddings[list(rows.alphas).index(0.0)].reshape(-1, rows.embeddings.shape[-1]))
    if baseline:
        table["baseline (alpha 0)"] = {
            f"fd@{f:.2f}": frechet_distance(np.concatenate(baseline), quality) for f in FD_POINTS
        }
    for variant in variants:
        row: dict[str, float] = {}
        for fraction in FD_POINTS:
            pooled = []
            for concept, bench in benches.items():
                rows = raw.get(concept, {}).get(variant)
                if rows is None:
                    continue
                for d in DIRECTIONS:
                    cut = bench.cutoffs[f"cutoff_{d}"].value
                    sign = 1 if d == "pos" else -1
                    idx = [i for i, a in enumerate(rows.alphas) if a * sign > 0]
                    if not idx or not math.isfinite(cut):
                        continue
                    means = np.array([rows.preservation[i].mean() for i in idx])
                    pick = idx[int(np.argmin(np.abs(means - fraction * cut)))]
                    pooled.append(rows.embeddings[pick].reshape(-1, rows.embeddings.shape[-1]))
            row[f"fd@{fraction:.2f}"] = frechet_distance(np.concatenate(pooled), quality) if pooled else math.nan
        table[variant] = row
    return table


def _cell(e: Estimate | None, decimals: int = 3) -> str:
    return "" if e is None else e.fmt(decimals)


def main_rows(mean: ConceptBench, metrics: Sequence[str], with_quality: bool) -> tuple[list[str], list[list[str]]]:
    head = ["method"] + [f"AUC {m}" for m in metrics] + [f"Smooth {m}" for m in metrics]
    head += ["Quality (typicality)"] if with_quality else []
    key = f"auc_{metrics[0]}"
    # how many concepts entered each mean; a single concept's table has no such column
    counts = {v: vals[key].n for v, vals in mean.values.items() if key in vals and vals[key].n is not None}
    head += ["concepts"] if counts else []
    rows = []
    for variant, values in mean.values.items():
        cells = [Variant.parse(variant).label]
        cells += [_cell(values.get(f"auc_{m}")) for m in metrics]
        cells += [_cell(values.get(f"smooth_{m}")) for m in metrics]
        if with_quality:
            cells.append(_cell(values.get("quality")))
        if counts:
            cells.append(str(counts.get(variant, "")))
        rows.append(cells)
    return head, rows


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def shared_concepts(benches: dict[str, ConceptBench], key: str) -> list[str]:
    """The concepts in which every variant of the run has a finite ``key``: those on which variants are
    ranked and compared, so that no variant's mean covers concepts another's lacks (in a part-run the
    variants have finished different concepts)."""
    variants = {v for b in benches.values() for v in b.values}

    def finite(bench: ConceptBench, variant: str) -> bool:
        estimate = bench.values.get(variant, {}).get(key)
        return estimate is not None and math.isfinite(estimate.value)

    return [c for c, b in benches.items() if all(finite(b, v) for v in variants)]


def comparisons(mean: ConceptBench, key: str) -> tuple[str | None, list[dict[str, Any]]]:
    """Every variant against the best one on ``key`` (mean over concepts): difference, interval, P(best > it)."""
    finite = {v: vals[key].value for v, vals in mean.values.items() if key in vals and math.isfinite(vals[key].value)}
    if not finite:
        return None, []
    best = max(finite, key=finite.get)
    out = []
    for variant in finite:
        if variant == best:
            continue
        p = paired(mean, best, variant, key)
        out.append({"variant": variant, "difference": p.difference, "share": p.share})
    return best, out


def busy_seconds(spans: Sequence[tuple[float, float]]) -> float:
    """The length of the union of ``(start, end)`` spans: the wall time during which at least one
    worker was running a unit (a run resumed over several sessions does not count the gaps)."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def cost(run: Any) -> dict[str, Any]:
    units = run.store.units()
    clips = sum(u["clips"] for u in units if u["kind"] in ("baseline", "sweep"))
    seconds = sum(u["seconds"] for u in units if u["kind"] in ("baseline", "sweep"))
    by_kind: dict[str, float] = {}
    for u in units:
        by_kind[u["kind"]] = by_kind.get(u["kind"], 0.0) + u["seconds"]
    return {
        "clips": clips,
        "sweep_seconds": seconds,
        "clips_per_minute": 60 * clips / seconds if seconds else math.nan,
        "seconds_by_stage": by_kind,
        "worker_seconds": sum(by_kind.values()),
        "wall_seconds": busy_seconds([(u["finished"] - u["seconds"], u["finished"]) for u in units]),
        "workers": sorted({u["worker"] for u in units if u["worker"]}),
    }


def plot_curves(concept: str, sweeps: dict[str, Sweep], bench: ConceptBench, metric: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .summary import mean_curve

    # one colour per method, the scope in the line: dashed for all layers, solid for localised
    methods = list(dict.fromkeys(Variant.parse(v).method for v in sweeps))
    palette = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    for ax, d in zip(axes, DIRECTIONS):
        sign = 1.0 if d == "pos" else -1.0
        for variant, sweep in sweeps.items():
            keep = sweep.alphas * sign >= 0
            order = np.argsort(np.abs(sweep.alphas[keep]))
            pres = mean_curve(sweep.preservation)[keep][order]
            align = mean_curve(sweep.alignment[metric])[keep][order]
            zero = align[0]
            parsed = Variant.parse(variant)
            color = palette(methods.index(parsed.method) % palette.N)
            style = "--" if parsed.scope == "global" else "-"
            ax.plot(pres, sign * (align - zero), style, color=color, marker=".", label=parsed.label)
        cut = bench.cutoffs[f"cutoff_{d}"].value
        ax.axvline(cut, color="k", lw=0.8, ls=":")
        ax.axhline(0, color="k", lw=0.5)
        pole = CONCEPTS[concept].positive if d == "pos" else CONCEPTS[concept].negative
        ax.set_title(f"{concept}, towards {pole.replace('{p}', '…')!r}", fontsize=9)
        ax.set_xlabel("preservation distance to the alpha-0 clip")
        ax.set_ylabel(f"alignment gain ({metric}, sign-corrected)")
    axes[1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass
class Section:
    """One heading of the report, rendered alike to markdown and to HTML (which adds ``players``)."""

    title: str
    before: list[str] = field(default_factory=list)  # paragraphs; ``**bold**`` is the only markup
    table: tuple[Sequence[str], Sequence[Sequence[str]]] | None = None
    after: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    image: str | None = None
    players: str = ""  # audio players, HTML only

    def markdown(self) -> list[str]:
        lines = [f"## {self.title}", ""]
        for paragraph in self.before:
            lines += [paragraph, ""]
        if self.table:
            lines += [*markdown_table(*self.table), ""]
        for paragraph in self.after:
            lines += [paragraph, ""]
        if self.bullets:
            lines += [*(f"* {b}" for b in self.bullets), ""]
        if self.image:
            lines += [f"![{self.title}]({self.image})", ""]
        return lines

    def html(self) -> str:
        parts = [f"<h2>{html.escape(self.title)}</h2>", *(f"<p>{_inline(p)}</p>" for p in self.before)]
        if self.table:
            parts.append(html_table(*self.table))
        parts += [f"<p>{_inline(p)}</p>" for p in self.after]
        if self.bullets:
            parts.append("<ul>" + "".join(f"<li>{_inline(b)}</li>" for b in self.bullets) + "</ul>")
        if self.image:
            parts.append(f'<img src="{html.escape(self.image)}" width="900">')
        return "".join(parts) + self.players


def _inline(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))


def write_report(run: Any, replicates: int = 1000, seed: int = 0) -> dict[str, Path]:
    s = run.settings
    out = run.out
    quality = load_quality(run)
    sweeps, raw, missing = load_sweeps(run, quality)
    benches = {
        c: summarise(per, [v for v in run.switch if v in per], replicates=replicates, seed=seed, concept=c)
        for c, per in sweeps.items()
    }
    metrics = list(s.metrics)
    with_quality = quality is not None
    intro = (
        f"{len(benches)} of {len(s.concepts)} concepts complete; {s.prompts} test prompts x {s.seeds} seeds, "
        f"{s.points} alphas per direction (calibrated to the prompt-swap cutoff on {s.tuning_prompts} tuning prompts); "
        f"95% intervals from {replicates} crossed bootstrap replicates over prompts and seeds."
    )
    result: dict[str, Any] = {"settings": s.as_dict(), "concepts": {}, "missing": missing, "cost": cost(run)}
    sections: list[Section] = []
    if benches:
        mean = mean_over_concepts(list(benches.values()))
        sections.append(
            Section("Mean over concepts (the paper's table layout)", table=main_rows(mean, metrics, with_quality))
        )
        key = f"auc_{metrics[0]}"
        shared = shared_concepts(benches, key)
        if len(shared) == len(benches):  # a finished run: the mean over concepts is already taken
            ranked = mean
        elif shared:
            ranked = mean_over_concepts([benches[c] for c in shared])
        else:
            ranked = None
        best, comps = comparisons(ranked, key) if ranked else (None, [])
        over = (
            "mean over concepts"
            if len(shared) == len(benches)
            else f"mean over the {len(shared)} of {len(benches)} concepts that every variant has finished: "
            + (", ".join(shared) or "none")
        )
        if best:
            sections.append(
                Section(
                    f"Paired comparisons on AUC {metrics[0]} ({over})",
                    [
                        f"Best: **{Variant.parse(best).label}**. Each row: best minus that variant, with its interval, "
                        "and the share of bootstrap replicates in which the best is ahead."
                    ],
                    (
                        ["variant", "difference", "P(best ahead)"],
                        [
                            [Variant.parse(c["variant"]).label, c["difference"].fmt(), f"{c['share']:.3f}"]
                            for c in comps
                        ],
                    ),
                )
            )
        ours = {v: vals[key].value for v, vals in ranked.values.items() if key in vals} if ranked else {}
        ranks = {}
        for column in ("auc_clap", "auc_muq"):
            rho, n = spearman(ours, paper_column(column))
            ranks[column] = {"rho": rho, "n": n}
        paper_head = [
            "paper row",
            "AUC MuQ",
            "AUC CLAP",
            "Smooth MuQ",
            "Smooth CLAP",
            "Quality",
            f"tada AUC {metrics[0]}",
        ]
        paper_rows = [
            [row, *(f"{x:.3f}" for x in vals), _cell((ranked or mean).values.get(VARIANT_OF_ROW[row], {}).get(key))]
            for row, vals in TABLE.items()
        ]
        sections.append(
            Section(
                "Beside the paper (ACE-Step v1, mean over nine concepts)",
                table=(paper_head, paper_rows),
                after=[
                    f"tada's column is its AUC ({over}). Rank correlation (Spearman) with the paper's, over the "
                    "rows both have: " + "; ".join(f"{c}: rho {r['rho']:.2f} (n {r['n']})" for c, r in ranks.items())
                ],
            )
        )
        result["mean"] = bench_json(mean)
        result["best"] = best
        result["ranked_over"] = shared
        result["paired"] = comps  # Estimates become JSON objects in write_json
        result["rank_correlation"] = ranks
        if with_quality and shared:
            fd = frechet_table({c: benches[c] for c in shared}, raw, quality, [v for v in s.variants if v in ours])
            head = ["variant", *(f"FD at {f:.2f} x cutoff" for f in FD_POINTS)]
            rows = [
                [k if k.startswith("baseline") else Variant.parse(k).label, *(f"{v:.3f}" for v in r.values())]
                for k, r in fd.items()
            ]
            sections.append(
                Section(
                    "Quality: Frechet distance to held-out corpus audio",
                    [
                        "Scorer embeddings of the clips at the grid point nearest each preservation point, pooled "
                        f"over directions and concepts ({over}), against held-out corpus clips (lower is closer to "
                        "real music)."
                    ],
                    (head, rows),
                )
            )
            result["frechet"] = fd
    for concept, bench in benches.items():
        png = plot_curves(concept, sweeps[concept], bench, metrics[0], out / f"curves-{concept}.png")
        cut = " / ".join(bench.cutoffs[f"cutoff_{d}"].fmt() for d in DIRECTIONS)
        sections.append(
            Section(
                concept,
                [f"Cutoff (pos / neg): {cut}"],
                main_rows(bench, metrics, with_quality),
                image=png.name,
                players=audio_html(run, concept),
            )
        )
        result["concepts"][concept] = bench_json(bench)
    if missing:
        sections.append(Section("Not yet complete", bullets=missing))
    c = result["cost"]
    sections.append(
        Section(
            "Cost",
            [
                f"{c['clips']} clips generated and scored in {c['sweep_seconds'] / 60:.1f} worker-minutes "
                f"({c['clips_per_minute']:.1f} clips per minute); by stage (worker-seconds): "
                + ", ".join(f"{k} {v:.0f}" for k, v in c["seconds_by_stage"].items()),
                f"End to end: {c['wall_seconds'] / 3600:.2f} h of wall time with at least one worker busy "
                f"({c['worker_seconds'] / 3600:.2f} worker-hours over every stage, {len(c['workers'])} worker "
                "processes; the time between the sessions of a resumed run is not counted).",
            ],
        )
    )
    title = f"tada bench: {s.model}"
    markdown = [f"# {title}", "", intro, "", *(line for section in sections for line in section.markdown())]
    body = f"<p>{_inline(intro)}</p>" + "".join(section.html() for section in sections)
    return {
        "markdown": write_text(out / "report.md", "\n".join(markdown)),
        "html": write_text(out / "report.html", html_page(title, body)),
        "json": write_json(out / "results.json", result),
    }


def load_quality(run: Any) -> Any:
    from .metrics import QualityReference

    path = run.out / "quality-reference.safetensors"
    return QualityReference.load(path) if path.is_file() else None


def bench_json(bench: ConceptBench) -> dict[str, Any]:
    return {
        "values": {v: {k: vars(e) for k, e in keys.items()} for v, keys in bench.values.items()},
        "cutoffs": {k: vars(e) for k, e in bench.cutoffs.items()},
    }


def html_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def audio_html(run: Any, concept: str) -> str:
    """Players for the example clips: test prompt 0, first seed, at each variant's middle and last alpha."""
    parts = []
    base = example_path(run.out, concept, "baseline", 0.0)
    if base.is_file():
        parts.append(f'<p>alpha 0: <audio controls preload=none src="{base.relative_to(run.out)}"></audio></p>')
    for variant in run.settings.variants:
        folder = run.out / "audio" / concept / variant
        if not folder.is_dir():
            continue
        clips = sorted(folder.glob("*.wav"), key=lambda p: float(p.stem.removeprefix("alpha")))
        players = "".join(
            f'<span>{html.escape(p.stem)} <audio controls preload=none src="{p.relative_to(run.out)}"></audio></span> '
            for p in clips
        )
        parts.append(f"<p><b>{html.escape(Variant.parse(variant).label)}</b>: {players}</p>")
    return "<h3>Listen</h3>" + "".join(parts) if parts else ""


def html_page(title: str, body: str) -> str:
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px}audio{height:28px;vertical-align:middle}"
    )
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )
