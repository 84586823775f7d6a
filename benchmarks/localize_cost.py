"""What localising a concept costs: tada's sweep against the reference protocol, side by side in one run.

* **reference**: the paper's code, per cross-attention layer: generate the clean prompts (caching
  that layer's text input) and the corrupted prompts with it patched in, two generations per
  layer, plus one corrupted run for the baseline;
* **tada**: ``tada.localize.localize``: one clean run caching every layer's input, one corrupted
  run, and the patched runs of all layers in shared denoising batches (rows = layers x pairs, at
  most ``--max-rows`` samples per batch).

Both patch every ``xattn_in`` layer of ``--model`` for the same ``--pairs`` twins of ``--concept``,
with the same noise, so their scores must agree (bitwise on tada-mini, whose clips do not depend
on their batch). Denoiser forward calls and the samples they process are counted with a hook on
the denoiser; wall time is the median of ``--rounds`` alternating rounds, so a busy machine slows
both alike.

    python benchmarks/localize_cost.py --model tada-mini --out benchmarks/results/localize_cost

Writes ``cost.json`` and ``cost.md`` to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from tada.adapters import load_model
from tada.concepts import get_concept, twin_pairs
from tada.interventions import Capture, Replace
from tada.localize import localize
from tada.scorer import Scorer


class Counter:
    """Denoiser forward calls and the batch rows they carried."""

    def __init__(self, model):
        self.calls = 0
        self.rows = 0
        self.handle = model.denoiser.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        first = args[0] if args else next(v for k, v in kwargs.items() if isinstance(v, torch.Tensor))
        self.calls += 1
        self.rows += int(first.shape[0])

    def reset(self) -> None:
        self.calls = self.rows = 0


def reference_sweep(model, pairs, probe, scorer, gen, seed: int, batch: int) -> torch.Tensor:
    """The reference protocol: a clean and a patched generation per layer (and one corrupted run)."""
    sites = [s for s in model.sites.values() if s.kind == "xattn_in"]
    scores = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        clean, corrupt = [p for p, _ in chunk], [q for _, q in chunk]
        seeds = [seed + start + i for i in range(len(chunk))]
        model.generate(corrupt, seed=seeds, **gen)  # the corrupted baseline
        row = []
        for site in sites:
            cache = Capture(rows="both", reduce="full")
            with model.engine.add({site: cache}):
                model.generate(clean, seed=seeds, **gen)
            with model.engine.add({site: Replace(cache, rows="both")}):
                audio = model.generate(corrupt, seed=seeds, **gen)
            row.append(scorer.similarity(list(audio.samples), audio.sample_rate, probe)[:, 0].double())
        scores.append(torch.stack(row, dim=1))
    return torch.cat(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tada-mini")
    parser.add_argument("--concept", default="guitar")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--batch-pairs", type=int, default=8)
    parser.add_argument("--max-rows", type=int, default=None, help="tada: samples per patched batch")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/localize_cost"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    model, scorer = load_model(args.model), Scorer.load()
    concept = get_concept(args.concept)
    pairs = twin_pairs(args.concept, args.pairs)
    gen = {k: v for k, v in (("seconds", args.seconds), ("steps", args.steps)) if v is not None}
    counter = Counter(model)
    model.generate(pairs[0][0], seed=0, **gen)  # warm-up

    def run_tada():
        return localize(
            model,
            pairs,
            concept.probe,
            scorer,
            batch_pairs=args.batch_pairs,
            max_rows=args.max_rows,
            progress=False,
            **gen,
        ).patched

    def run_reference():
        return reference_sweep(model, pairs, concept.probe, scorer, gen, 0, args.batch_pairs)

    arms = {"reference": run_reference, "tada": run_tada}
    times: dict[str, list[float]] = {name: [] for name in arms}
    counts, scores = {}, {}
    for round_index in range(args.rounds):
        order = list(arms) if round_index % 2 == 0 else list(reversed(arms))
        for name in order:
            counter.reset()
            start = time.perf_counter()
            scores[name] = arms[name]()
            times[name].append(time.perf_counter() - start)
            counts[name] = {"calls": counter.calls, "rows": counter.rows}
            print(f"round {round_index + 1} {name}: {times[name][-1]:.1f} s, {counts[name]}", flush=True)
    same = bool(torch.equal(scores["tada"], scores["reference"]))
    gap = float((scores["tada"] - scores["reference"]).abs().max())
    median = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "settings": {**vars(args), "out": str(args.out), "sites": scores["tada"].shape[1], "torch": torch.__version__},
        "seconds": times,
        "median_seconds": median,
        "counts": counts,
        "calls_ratio": counts["reference"]["calls"] / counts["tada"]["calls"],
        "rows_ratio": counts["reference"]["rows"] / counts["tada"]["rows"],
        "wall_ratio": median["reference"] / median["tada"],
        "scores_identical": same,
        "max_score_difference": gap,
    }
    (args.out / "cost.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"Localisation cost on {args.model}: {args.concept}, {len(pairs)} pairs x {result['settings']['sites']} "
        f"layers, median of {args.rounds} alternating rounds.",
        "",
        "| protocol | denoiser calls | samples through the denoiser | wall time (s) |",
        "|---|---|---|---|",
    ]
    for name in arms:
        lines.append(f"| {name} | {counts[name]['calls']} | {counts[name]['rows']} | {median[name]:.1f} |")
    lines += [
        "",
        f"Reference / tada: {result['calls_ratio']:.2f}x denoiser calls, {result['rows_ratio']:.2f}x samples, "
        f"{result['wall_ratio']:.2f}x wall time; scores identical: {same} (largest difference {gap:.2g}).",
    ]
    text = "\n".join(lines) + "\n"
    (args.out / "cost.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
