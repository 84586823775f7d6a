"""Every steering method, global and localised, on every concept preset: does it move the concept?

For each concept: fit each method on the first ``--fit-pairs`` base prompts (globally, and
localised to the ``--top`` layers of an activation-patching impact table measured here),
then generate the last ``--prompts`` base prompts (held out: never used to fit) in the
concept's neutral wrap ("lofi music, with instrument"), ``--seeds`` seeds each, at
``-alpha_max`` and ``+alpha_max``, with the same noise at both strengths. The offline
scorer gives each clip its probe similarity ("a piano song"). Per (method, concept) the
table reports the mean paired difference probe(+alpha_max) - probe(-alpha_max) over the
prompts x seeds, with a 95% t-interval; positive means the method moves the concept the
intended way.

    python benchmarks/method_table.py --model tada-mini

Resumable: every impact table, artifact and (method, concept) set of scores is written as
it finishes and reused by a rerun with the same settings. Scores, impact tables and the
report (``report.md``, ``report.json``, rewritten after each concept) go to ``--out``
(``benchmarks/results/methods``, kept in the repository, so a fresh clone resumes where
the last run stopped); fitted artifacts go to ``--work`` (``out/method-artifacts``) and are
fitted again only where scores are missing. Localisation uses the preset's
(positive, negative) prompts where they are word swaps, else (positive, neutral wrap)
("{p}, with piano" / "{p}, with instrument").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import stats
from tqdm import tqdm

from tada.adapters import load_model
from tada.concepts import BASE_PROMPTS, CONCEPTS, concept_pairs, twin_pairs
from tada.errors import TadaError
from tada.localize import ImpactTable, localize
from tada.methods import FitRequest, get_method, load_artifact, method_names
from tada.scorer import Scorer

# the strength each method is compared at: its "full" setting where it has one (a whole prompt
# swap, the trained slider scale), else about one median token norm of tada-mini's layer
ALPHA_MAX = {
    "prompt-switch": 1.0,
    "text-embedding": 1.0,
    "token-embedding": 1.0,
    "freesliders": 1.0,
    "concept-slider": 1.0,
    "austeer": 2.0,
    "caa": 2.0,
}


def interval(diffs: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% t-interval of paired differences."""
    mean = float(diffs.mean())
    half = float(stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs)))
    return mean, mean - half, mean + half


def read_json(path: Path, settings: dict) -> dict | None:
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("settings") == settings:
            return data
    return None


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


class Run:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.model = None if args.report_only else load_model(args.model)
        self.scorer = None if args.report_only else Scorer.load()
        self.bases = list(BASE_PROMPTS[-args.prompts :])
        self.fit_bases = len(BASE_PROMPTS) - args.prompts
        if args.fit_pairs > self.fit_bases:
            raise TadaError(f"--fit-pairs {args.fit_pairs} would fit on held-out prompts (at most {self.fit_bases})")
        self.seeds = list(range(args.seeds))
        self.gen = {"seconds": args.seconds, "steps": args.steps}

    def settings(self, **extra: object) -> dict:
        a = self.args
        return {
            "model": a.model,
            "prompts": a.prompts,
            "seeds": a.seeds,
            "seconds": a.seconds,
            "steps": a.steps,
            **extra,
        }

    def probe_scores(self, concept, artifact=None, alpha: float = 0.0) -> list[float]:
        prompts = [concept.neutral_prompt(b) for b in self.bases for _ in self.seeds]
        seeds = [s for _ in self.bases for s in self.seeds]
        clips = []
        for i in range(0, len(prompts), self.args.batch):
            chunk, chunk_seeds = prompts[i : i + self.args.batch], seeds[i : i + self.args.batch]
            if artifact is None:
                clips.append(self.model.generate(chunk, seed=chunk_seeds, **self.gen).samples[:, 0])
            else:
                with artifact.apply(self.model, alpha):
                    clips.append(self.model.generate(chunk, seed=chunk_seeds, **self.gen).samples[:, 0])
        audio = np.concatenate(clips)
        return self.scorer.similarity(list(audio), self.model.sample_rate, concept.probe)[:, 0].tolist()

    def localised_sites(self, name: str, folder: Path) -> list[str]:
        concept = CONCEPTS[name]
        path = folder / "impact.safetensors"
        if not path.is_file():
            pairs = twin_pairs(name, self.args.localise_pairs)
            localize(
                self.model,
                pairs,
                concept.probe,
                self.scorer,
                concept=name,
                work_dir=self.args.work / name / "impact.parts",
                out=path,
                progress=False,
                **self.gen,
            )
        return ImpactTable.load(path).top(self.args.top)

    def artifact(self, method: str, name: str, sites: list[str] | None):
        scope = "global" if sites is None else "local"
        work = self.args.work / name
        work.mkdir(parents=True, exist_ok=True)
        path = work / f"{method}-{scope}.safetensors"
        seconds = 0.0
        if not path.is_file():
            request = FitRequest(
                CONCEPTS[name],
                concept_pairs(name, self.args.fit_pairs),
                {"source": "preset", "concept": name, "n_pairs": self.args.fit_pairs},
                sites=sites,
                work_dir=work / f"{method}-{scope}.parts",
                out=path,
                progress=False,
                options={"train_steps": self.args.slider_steps}
                if self.args.slider_steps and method == "concept-slider"
                else {},
                **self.gen,
            )
            start = time.perf_counter()
            get_method(method).fit(self.model, request)
            seconds = time.perf_counter() - start
        return load_artifact(path), scope, seconds

    def concept(self, name: str, methods: list[str], bar: tqdm) -> dict:
        concept = CONCEPTS[name]
        folder = self.args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        plain_path = folder / "plain.json"
        plain = read_json(plain_path, self.settings())
        if self.args.report_only and (plain is None or not (folder / "impact.safetensors").is_file()):
            return None
        if plain is None:
            plain = {"settings": self.settings(), "scores": self.probe_scores(concept)}
            write_json(plain_path, plain)
        local = self.localised_sites(name, folder)
        rows = {}
        for method in methods:
            alpha = self.args.alpha.get(method, ALPHA_MAX.get(method, 1.0))
            for sites in (None, local):
                scope = "global" if sites is None else "local"
                bar.set_postfix_str(f"{name} {method} {scope}")
                path = folder / f"{method}-{scope}.json"
                settings = self.settings(alpha=alpha, sites=sites or "all", fit_pairs=self.args.fit_pairs)
                if method == "concept-slider":
                    settings["train_steps"] = self.args.slider_steps or "default"
                data = read_json(path, settings)
                if data is None and self.args.report_only:
                    continue
                if data is None:
                    artifact, scope, fit_seconds = self.artifact(method, name, sites)
                    start = time.perf_counter()
                    plus = self.probe_scores(concept, artifact, alpha)
                    minus = self.probe_scores(concept, artifact, -alpha)
                    data = {
                        "settings": settings,
                        "plus": plus,
                        "minus": minus,
                        "fit_seconds": fit_seconds,
                        "generate_seconds": time.perf_counter() - start,
                    }
                    write_json(path, data)
                diffs = np.array(data["plus"]) - np.array(data["minus"])
                mean, low, high = interval(diffs)
                rows[f"{method} ({scope})"] = {
                    "alpha_max": alpha,
                    "sites": sites or "all",
                    "mean": mean,
                    "ci": [low, high],
                    "plus": float(np.mean(data["plus"])),
                    "minus": float(np.mean(data["minus"])),
                }
                bar.update()
        return {"plain": float(np.mean(plain["scores"])), "localised_to": local, "methods": rows}


def report(results: dict, args: argparse.Namespace) -> str:
    concepts = list(results)
    variants = list(dict.fromkeys(v for r in results.values() for v in r["methods"]))
    lines = [
        f"Mean probe(+alpha_max) - probe(-alpha_max), {args.prompts} held-out prompts x {args.seeds} seeds, "
        "[95% t-interval]; * = interval above 0; moved = cells with * of those measured.",
        "",
        "| method | alpha_max | " + " | ".join(concepts) + " | moved |",
        "|---|---|" + "---|" * len(concepts) + "---|",
    ]
    for variant in variants:
        cells, moved, measured = [], 0, 0
        for c in concepts:
            row = results[c]["methods"].get(variant)
            if row is None:
                cells.append("")
                continue
            low, high = row["ci"]
            star = "*" if low > 0 else ""
            moved, measured = moved + (low > 0), measured + 1
            cells.append(f"{row['mean']:+.3f}{star} [{low:+.3f}, {high:+.3f}]")
        alpha = next(results[c]["methods"][variant]["alpha_max"] for c in concepts if variant in results[c]["methods"])
        lines.append(f"| {variant} | {alpha:g} | " + " | ".join(cells) + f" | {moved}/{measured} |")
    lines += [
        "",
        "Localised to (top layers of each concept's impact table): "
        + "; ".join(f"{c} {','.join(results[c]['localised_to'])}" for c in concepts),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tada-mini")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/methods"), help="scores and report")
    parser.add_argument("--work", type=Path, default=Path("out/method-artifacts"), help="fitted artifacts")
    # SAE steering needs a trained SAE as well as the concept: benchmarks/sae_steering.py measures it
    parser.add_argument("--methods", default=",".join(m for m in method_names() if m != "sae"))
    parser.add_argument("--concepts", default=",".join(CONCEPTS))
    parser.add_argument("--prompts", type=int, default=16, help="held-out base prompts (the last N presets)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--fit-pairs", type=int, default=34)
    parser.add_argument("--localise-pairs", type=int, default=8)
    parser.add_argument("--top", type=int, default=2, help="layers a localised variant acts on")
    parser.add_argument("--slider-steps", type=int, default=None, help="Concept Slider training iterations")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--alpha", action="append", default=[], help="METHOD=ALPHA_MAX, overrides the default")
    parser.add_argument("--report-only", action="store_true", help="tabulate the scores already measured; run nothing")
    args = parser.parse_args()
    args.alpha = {k: float(v) for k, v in (item.split("=", 1) for item in args.alpha)}
    args.out.mkdir(parents=True, exist_ok=True)
    methods, concepts = args.methods.split(","), args.concepts.split(",")
    run = Run(args)
    with tqdm(total=len(methods) * 2 * len(concepts), desc="methods x concepts", unit="variant") as bar:
        for name in concepts:
            run.concept(name, methods, bar)
            write_reports(args, methods)
    print(write_reports(args, methods))


def write_reports(args: argparse.Namespace, methods: list[str]) -> str:
    """Tabulate every concept's scores found in --out (also those another run of this script measured)."""
    tabulate = argparse.Namespace(**{**vars(args), "report_only": True})
    run, results = Run(tabulate), {}
    with tqdm(disable=True) as quiet:
        for name in CONCEPTS:
            result = run.concept(name, methods, quiet)
            if result is not None:
                results[name] = result
    settings = vars(args) | {"out": str(args.out), "work": str(args.work)}
    write_json(args.out / "report.json", {"settings": settings, "results": results})
    text = report(results, args)
    (args.out / "report.md").write_text(text)
    return text


if __name__ == "__main__":
    main()
