"""What each steering method costs on tada-mini, measured side by side in one run.

* fit: wall seconds to fit one concept's artifact, global (``--fit-pairs`` pairs; Concept
  Sliders at ``--train-steps`` iterations);
* steer: wall time to generate ``--clips`` clips with the artifact applied, relative to
  plain generation of the same clips; plain and steered runs alternate for ``--rounds``
  rounds and the medians are compared, so a busy machine slows both alike.

    python benchmarks/method_cost.py --model tada-mini --out out/method-cost

Writes ``cost.json`` and ``cost.md`` to --out. Times are for this machine and only their
ratios carry over.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from tada.adapters import load_model
from tada.concepts import BASE_PROMPTS, concept_pairs, get_concept
from tada.methods import FitRequest, get_method, method_names

STEER_ALPHA = {"prompt-switch": 0.5}  # the rest steer at alpha 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tada-mini")
    parser.add_argument("--concept", default="piano")
    parser.add_argument("--methods", default=",".join(method_names()))
    parser.add_argument("--fit-pairs", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=None, help="Concept Slider iterations (default: its own)")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("out/method-cost"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model)
    concept = get_concept(args.concept)
    prompts = [concept.neutral_prompt(b) for b in BASE_PROMPTS[-args.clips :]]
    seeds = list(range(args.clips))
    model.generate(prompts[:1], seed=0)  # warm-up: first-call allocations stay out of the timings

    def timed(artifact=None, alpha: float = 1.0) -> float:
        start = time.perf_counter()
        if artifact is None:
            model.generate(prompts, seed=seeds)
        else:
            with artifact.apply(model, alpha):
                model.generate(prompts, seed=seeds)
        return time.perf_counter() - start

    rows = {}
    for name in args.methods.split(","):
        options = {"train_steps": args.train_steps} if name == "concept-slider" and args.train_steps else {}
        request = FitRequest(
            concept, concept_pairs(args.concept, args.fit_pairs), {"source": "preset"}, progress=False, options=options
        )
        start = time.perf_counter()
        artifact = get_method(name).fit(model, request)
        fit_seconds = time.perf_counter() - start
        alpha = STEER_ALPHA.get(name, 1.0)
        timed(artifact, alpha)  # first steered run: prompt-level methods encode their prompts once here
        plain, steered = [], []
        for _ in range(args.rounds):
            plain.append(timed())
            steered.append(timed(artifact, alpha))
        rows[name] = {
            "fit_seconds": fit_seconds,
            "plain_seconds_per_clip": float(np.median(plain)) / args.clips,
            "steered_seconds_per_clip": float(np.median(steered)) / args.clips,
            "ratio": float(np.median(steered) / np.median(plain)),
            "alpha": alpha,
        }
        print(f"{name:<15} fit {fit_seconds:7.1f} s   steer / plain {rows[name]['ratio']:.2f}", flush=True)
    settings = vars(args) | {"out": str(args.out), "threads_used": torch.get_num_threads()}
    (args.out / "cost.json").write_text(json.dumps({"settings": settings, "methods": rows}, indent=1) + "\n")
    lines = [
        f"tada-mini, {args.clips} clips of {model.default_seconds:g} s at {model.default_steps} steps per run, "
        f"median of {args.rounds} alternating rounds; fit on {args.fit_pairs} pairs of {args.concept}.",
        "",
        "| method | fit (s) | steered / plain wall time per clip |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {r['fit_seconds']:.1f} | {r['ratio']:.2f} |" for n, r in rows.items()]
    (args.out / "cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
