"""Where a model decides each concept: activation patching over the preset concepts.

Every preset whose positive and negative prompts are word swaps of equal length gets
one impact table.

    python benchmarks/localize_concepts.py --model tada-mini --pairs 16 --out out/localize

Writes ``<concept>.safetensors`` per concept (resumable: finished concepts are kept, a
killed one resumes from its ``.parts``), ``impact.png`` (a heatmap of all of them) and
``impact.json``, and prints the table (the heatmap leaves out concepts whose probe does
not score the clean clips above the corrupted ones: their impacts are noise). Presets
whose negative is the bare base prompt (piano, violin: "{p}, with piano" against "{p}")
cannot be patched and are skipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tada.adapters import load_model
from tada.concepts import CONCEPTS, concept_pairs
from tada.errors import TadaError
from tada.localize import ImpactTable, localize, plot_impacts
from tada.scorer import Scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tada-mini")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--concepts", default=",".join(CONCEPTS), help="comma-separated preset names")
    parser.add_argument("--out", type=Path, default=Path("out/localize"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model, scorer = load_model(args.model), Scorer.load()
    tables = []
    for name in args.concepts.split(","):
        path = args.out / f"{name}.safetensors"
        if path.is_file():
            tables.append(ImpactTable.load(path))
            continue
        concept = CONCEPTS[name]
        if concept.negative == "{p}" or concept.positive == "{p}":
            print(f"{name}: skipped (the negative prompt is the bare base prompt, not a word swap)")
            continue
        try:
            table = localize(
                model,
                concept_pairs(name, args.pairs),
                concept.probe,
                scorer,
                concept=name,
                work_dir=args.out / f"{name}.parts",
            )
        except TadaError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        table.save(path)
        tables.append(table)
    report = {
        t.concept: {
            "probe": t.probe,
            "clean": float(t.clean.mean()),
            "corrupt": float(t.corrupt.mean()),
            "impact": dict(zip(t.sites, [round(v, 4) for v in t.impact.tolist()])),
        }
        for t in tables
    }
    (args.out / "impact.json").write_text(json.dumps(report, indent=1))
    plotted = [t for t in tables if t.contrast > 0]
    for t in tables:
        if t.contrast <= 0:
            print(f"{t.concept}: not plotted (its probe scores the corrupted clips as high as the clean ones)")
    if plotted:
        plot_impacts(plotted, args.out / "impact.png")
    for t in tables:
        print(f"{t.concept:24s} contrast {t.contrast:+.3f}  " + " ".join(f"{v:+.2f}" for v in t.impact.tolist()))
    print(json.dumps({"concepts": len(tables), "sites": tables[0].sites if tables else []}))


if __name__ == "__main__":
    main()
