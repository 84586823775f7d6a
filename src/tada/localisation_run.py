"""A localisation study: several pair sets (concepts, swap features, a CSV) swept into one directory.

Each set becomes ``tables/<name>.safetensors`` (an :class:`~tada.localize.ImpactTable`) as soon as it
is done; its partial results sit in ``parts/<name>/`` until then, so a killed study, started again,
reuses the finished tables and resumes the one it was in. The directory then gets ``impact.csv``
(site, concept, mode, window, impact, ci_low, ci_high, n), ``impact.png`` (a heatmap per mode),
``summary.md`` (top layers and the top-two share, with intervals), ``impact.json``, and with
step windows ``windows.png`` (impact per part of the trajectory).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .errors import TadaError
from .files import write_json
from .impact_report import (
    ConceptSummary,
    as_json,
    plot_heatmaps,
    plot_windows,
    summarise,
    write_csv,
    write_summary,
)
from .localize import ImpactTable, localize, sweep_settings
from .patching import FULL, columns_for


@dataclass
class PairSet:
    """Twins sharing one probe: a concept preset, one swap feature, or one probe's rows of a CSV."""

    name: str
    pairs: list[tuple[str, str]]
    probe: str
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name).strip("_") or "pairs"


def preset_sets(names: Sequence[str], n_pairs: int | None) -> list[PairSet]:
    """Concept presets as twins (``tada.concepts.twin_pairs``); ``["all"]`` is every preset."""
    from .concepts import CONCEPTS, get_concept, twin_pairs

    chosen = list(CONCEPTS) if list(names) == ["all"] else list(names)
    return [
        PairSet(name, twin_pairs(name, n_pairs), get_concept(name).probe, {"source": "preset", "concept": name})
        for name in chosen
    ]


def run_study(
    model: Any,
    sets: Sequence[PairSet],
    scorer: Any,
    out: str | Path,
    *,
    modes: Sequence[str] = ("input",),
    groups: Sequence[Sequence[str]] | None = None,
    windows: Sequence[tuple[float, float]] = (FULL,),
    seeds: int = 1,
    seconds: float | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    batch_pairs: int = 8,
    max_rows: int | None = None,
    replicates: int = 2000,
    progress: bool = True,
) -> list[ConceptSummary]:
    """Localise every set into ``out`` and write the study's CSV, heatmap, summary and JSON."""
    if not sets:
        raise TadaError("nothing to localise: give concepts, swap features or a pair file")
    names = [s.file_name for s in sets]
    if len(set(names)) != len(names):
        raise TadaError("two pair sets share a name; give each concept or feature once")
    out = Path(out)
    if out.suffix == ".safetensors":
        raise TadaError(f"--out is a directory (tables, impact.csv, heatmap, summary), not a file: {out}")
    columns = [c.label for c in columns_for(model, modes, groups, windows)]  # bad sites fail before any write
    settings = sweep_settings(model, seconds, steps, guidance, seed, seeds, batch_pairs, max_rows, scorer)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    job = {
        "modes": modes,
        "groups": groups,
        "windows": windows,
        "seeds": seeds,
        "seconds": seconds,
        "steps": steps,
        "guidance": guidance,
        "seed": seed,
        "batch_pairs": batch_pairs,
        "max_rows": max_rows,
        "progress": progress,
    }
    summaries = []
    for pair_set in tqdm(sets, desc="pair sets", unit="set", disable=not progress or len(sets) < 2):
        path = out / "tables" / f"{pair_set.file_name}.safetensors"
        table = _finished(path, pair_set, columns, settings)
        if table is None:
            table = localize(
                model,
                pair_set.pairs,
                pair_set.probe,
                scorer,
                concept=pair_set.name,
                work_dir=out / "parts" / pair_set.file_name,
                out=path,
                **job,
            )
        summaries.append(summarise(table, pair_set.name, replicates))
    if (out / "parts").is_dir() and not any((out / "parts").iterdir()):
        (out / "parts").rmdir()
    write_report(summaries, out)
    return summaries


def _finished(path: Path, pair_set: PairSet, columns: list[str], settings: dict) -> ImpactTable | None:
    """The table already at ``path`` if it is this set's with these columns and settings."""
    if not path.is_file():
        return None
    table = ImpactTable.load(path)
    same = (
        table.pairs == [list(p) for p in pair_set.pairs]
        and table.probe == pair_set.probe
        and [c.label for c in table.columns] == columns
        and table.settings == settings
    )
    if not same:
        raise TadaError(
            f"{path} holds a table of other pairs or settings; remove it or choose another --out to redo it"
        )
    return table


def write_report(summaries: Sequence[ConceptSummary], out: Path) -> None:
    write_csv(summaries, out / "impact.csv")
    write_summary(summaries, out / "summary.md", title=f"Localisation of {summaries[0].table.family}")
    write_json(out / "impact.json", as_json(summaries))
    try:
        plot_heatmaps(summaries, out / "impact.png")
    except TadaError:
        (out / "impact.png").unlink(missing_ok=True)  # only grouped or windowed columns: nothing to draw
    if any(w != FULL for s in summaries for w in s.table.windows):
        plot_windows(summaries, out / "windows.png")
