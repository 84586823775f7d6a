"""SAE steering on every concept preset: does the probe rise monotonically with alpha, both ways?

For each concept: the SAEs of ``--sae`` at the concept's localised layers (the ``--top`` layers of
the impact table that ``benchmarks/method_table.py`` measured for it) score their features on the
first ``--fit-pairs`` base prompts' pairs (``tada fit --method sae``: the TF-IDF rule on dense
ReLU pre-activations, ``--features`` per step and site), and the summed decoder rows steer the last
``--prompts`` base prompts (held out) in the concept's neutral wrap at every alpha of ``--alphas``
(each way, and 0), ``--seeds`` seeds each, from the same noise at every alpha. The offline scorer
gives the probe similarity. A concept is *monotonic* when the mean probe rises at every step of
the alpha grid from -max to +max.

    python benchmarks/sae_steering.py --sae out/sae/saes

Resumable: each concept's scores go to ``--out/<concept>.json`` as they finish (kept in the
repository); fitted artifacts to ``--work``. ``--report-only`` tabulates what exists.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tada.adapters import load_model
from tada.concepts import BASE_PROMPTS, CONCEPTS, concept_pairs
from tada.localize import ImpactTable
from tada.methods import FitRequest, get_method, load_artifact
from tada.scorer import Scorer


def read_json(path: Path, settings: dict) -> dict | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if data.get("settings") == settings else None


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def layer_sites(impact: Path, top: int) -> list[str]:
    """The impact table's top layers as cross-attention output sites (``xattn_in.3`` -> ``xattn.3``)."""
    return [alias.replace("xattn_in.", "xattn.") for alias in ImpactTable.load(impact).top(top)]


def chosen_sites(args: argparse.Namespace, concept: str) -> list[str]:
    """``--sites`` when given (``all``: every SAE in ``--sae``), else the concept's ``--top`` localised layers."""
    if args.sites is None:
        return layer_sites(args.impacts / concept / "impact.safetensors", args.top)
    if args.sites == "all":
        from tada.sae import load_saes

        return [sae.cfg.tada["site"] for sae in load_saes(args.sae).values()]
    return args.sites.split(",")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tada-mini")
    parser.add_argument("--sae", type=Path, default=Path("models/sae/tada-mini"), help="SAE directory")
    parser.add_argument("--impacts", type=Path, default=Path("benchmarks/results/methods"), help="<concept>/impact")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sae_steering"))
    parser.add_argument("--work", type=Path, default=Path("out/sae-artifacts"))
    parser.add_argument("--concepts", default=",".join(CONCEPTS))
    parser.add_argument("--top", type=int, default=2, help="localised layers per concept")
    parser.add_argument("--features", type=int, default=20, help="features per step and site")
    parser.add_argument("--score", default="tfidf", choices=["tfidf", "diff", "cohen"], help="feature score rule")
    parser.add_argument(
        "--sites", default=None, help="SAE sites for every concept (e.g. xattn.1,xattn.3 or all) instead of --top"
    )
    parser.add_argument("--fit-pairs", type=int, default=34)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument(
        "--alphas", default="0.125,0.25,0.5", help="positive alphas (the summed rows have norm ~4); also run negated"
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    positive = sorted(float(a) for a in args.alphas.split(","))
    grid = [-a for a in reversed(positive)] + [0.0] + positive
    concepts = args.concepts.split(",")
    settings = {
        "model": args.model,
        "features": args.features,
        "fit_pairs": args.fit_pairs,
        "prompts": args.prompts,
        "seeds": args.seeds,
        "alphas": grid,
        "top": args.top,
        "score": args.score,
        "sites": args.sites,
    }
    if not args.report_only:
        model, scorer = load_model(args.model), Scorer.load()
        method = get_method("sae")
        bases = list(BASE_PROMPTS[-args.prompts :])
        for name in tqdm(concepts, desc="concepts", unit="concept"):
            path = args.out / f"{name}.json"
            if read_json(path, settings) is not None:
                continue
            concept = CONCEPTS[name]
            sites = chosen_sites(args, name)
            # one artifact per fit setting: a changed option never reuses another setting's fit
            tag = f"{args.score}-f{args.features}-p{args.fit_pairs}-" + "+".join(sites)
            artifact_path = args.work / f"{name}-{tag}.safetensors"
            start = time.perf_counter()
            if not artifact_path.is_file():
                args.work.mkdir(parents=True, exist_ok=True)
                request = FitRequest(
                    concept,
                    concept_pairs(name, args.fit_pairs),
                    {"source": "preset", "concept": name, "n_pairs": args.fit_pairs},
                    sites=sites,
                    work_dir=args.work / f"{name}-{tag}.parts",
                    out=artifact_path,
                    progress=False,
                    options={"sae": args.sae, "top": args.features, "score": args.score},
                )
                method.fit(model, request)
            artifact = load_artifact(artifact_path)
            fit_seconds = time.perf_counter() - start
            prompts = [concept.neutral_prompt(b) for b in bases for _ in range(args.seeds)]
            seeds = [s for _ in bases for s in range(args.seeds)]
            scores = {}
            for alpha in tqdm(grid, desc=name, unit="alpha", leave=False):
                clips = []
                for i in range(0, len(prompts), args.batch):
                    with artifact.apply(model, alpha):
                        out = model.generate(prompts[i : i + args.batch], seed=seeds[i : i + args.batch])
                    clips.append(out.samples[:, 0])
                audio = np.concatenate(clips)
                scores[str(alpha)] = scorer.similarity(list(audio), model.sample_rate, concept.probe)[:, 0].tolist()
            norms = {alias: float(v.norm(dim=-1).mean()) for alias, v in artifact.vectors.items()}
            write_json(
                path,
                {
                    "settings": settings,
                    "sites": artifact.sites,
                    "vector_norms": norms,
                    "scores": scores,
                    "fit_seconds": fit_seconds,
                },
            )
    print(write_report(args, concepts, settings, grid))


def write_report(args: argparse.Namespace, concepts: list[str], settings: dict, grid: list[float]) -> str:
    lines = [
        f"SAE steering, mean probe similarity over {args.prompts} held-out prompts x {args.seeds} seed(s) "
        f"per alpha; {args.features} features per step and site ({args.score}); "
        "monotonic = the mean rises at every step of the grid.",
        "",
        "| concept | sites | " + " | ".join(f"{a:+g}" for a in grid) + " | monotonic |",
        "|---|---|" + "---|" * len(grid) + "---|",
    ]
    summary = {}
    for name in concepts:
        data = read_json(args.out / f"{name}.json", settings)
        if data is None:
            continue
        means = [float(np.mean(data["scores"][str(a)])) for a in grid]
        monotonic = all(b > a for a, b in zip(means, means[1:], strict=False))
        summary[name] = {"means": means, "monotonic": monotonic, "sites": data["sites"]}
        cells = " | ".join(f"{m:.3f}" for m in means)
        lines.append(f"| {name} | {','.join(data['sites'])} | {cells} | {'yes' if monotonic else 'no'} |")
    lines.append("")
    lines.append(f"{sum(s['monotonic'] for s in summary.values())} of {len(summary)} concepts monotonic.")
    text = "\n".join(lines) + "\n"
    (args.out / "report.md").write_text(text)
    write_json(args.out / "report.json", {"settings": settings, "results": summary})
    return text


if __name__ == "__main__":
    main()
