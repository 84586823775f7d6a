"""The figures of docs/localisation.md from the finished tables of the three localisation studies.

Reads ``--concepts``, ``--features`` and ``--windows`` (directories written by ``tada localize``;
any may be missing or partial: only finished tables count) and writes, to ``--out``:

* ``heatmap.png``: impact per layer, concepts then swap features, a panel per mode;
* ``windows.png``: impact of all layers' text input patched in each part of the trajectory;
* ``figures.md``: the per-concept and per-feature summary tables, the mean profile over all of
  them with its top-2 share, and the windows table, each with 95% bootstrap intervals.

    python benchmarks/localisation_figures.py --out docs/localisation
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tada.impact_report import plot_heatmaps, plot_windows, summarise, write_summary
from tada.localize import ImpactTable


def finished(directory: Path, label: str = "{}") -> list:
    """Summaries of the directory's finished tables, named by ``label`` (swap features are labelled
    apart from the concept presets: both have a "violin")."""
    tables = sorted((directory / "tables").glob("*.safetensors")) if directory.is_dir() else []
    return [summarise(ImpactTable.load(path), label.format(path.stem)) for path in tables]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concepts", type=Path, default=Path("docs/localisation/concepts"))
    parser.add_argument("--features", type=Path, default=Path("docs/localisation/features"))
    parser.add_argument("--windows", type=Path, default=Path("docs/localisation/windows"))
    parser.add_argument("--out", type=Path, default=Path("docs/localisation"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    concepts, features, windows = finished(args.concepts), finished(args.features, "swap: {}"), finished(args.windows)
    parts = []
    where = concepts + features
    if where:
        plot_heatmaps(where, args.out / "heatmap.png")
        parts.append(write_summary(where, args.out / "where.md", title="Where: concepts and swap features"))
    if windows:
        plot_windows(windows, args.out / "windows.png")
        parts.append(write_summary(windows, args.out / "when.md", title="When: all layers, by part of the trajectory"))
    text = "\n".join(path.read_text() for path in parts)
    (args.out / "figures.md").write_text(text)
    for path in parts:
        path.unlink()
    print(text)
    print(f"{len(concepts)} concepts, {len(features)} features, {len(windows)} windowed tables finished")


if __name__ == "__main__":
    main()
