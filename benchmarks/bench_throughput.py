"""tada bench throughput: clips generated and scored per minute, batched against one at a time.

Runs the benchmark's alpha-0 unit (generate, then score alignment, preservation features and
embeddings) on the same test prompts twice per round: with ``--batch`` clips in one denoising
batch (one chunk), and one clip per unit (``--batch 1``, as a run without batching would), in
alternating order, side by side in one process. Reports clips per minute of each and their ratio.

    python benchmarks/bench_throughput.py --model tada-mini --clips 16 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from tada.bench.plan import BenchSettings, Unit
from tada.bench.worker import Worker


def one_pass(worker: Worker, clips: int) -> float:
    """Seconds to generate and score ``clips`` clips in the worker's chunks."""
    start = time.perf_counter()
    for lo, hi in worker.settings.prompt_chunks():
        worker.run(Unit("baseline", f"baseline/piano/{lo}-{hi}", "piano", None, {"chunk": [lo, hi]}))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tada-mini")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write results.json here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    common = {"model": args.model, "concepts": ["piano"], "variants": ["caa-global"], "prompts": args.clips, "seeds": 1}
    with tempfile.TemporaryDirectory() as tmp:
        batched = Worker(BenchSettings(**common, batch=args.batch), Path(tmp) / "batched")
        single = Worker(BenchSettings(**common, batch=1), Path(tmp) / "single")
        single._model, single._scorer = batched.model, batched.scorer  # one model, two batchings
        one_pass(batched, min(args.batch, args.clips))  # warm-up: weights, text encoder, caches
        times: dict[str, list[float]] = {"batched": [], "one at a time": []}
        for r in range(args.rounds):
            order = [("batched", batched), ("one at a time", single)]
            for name, worker in order if r % 2 == 0 else order[::-1]:
                times[name].append(one_pass(worker, args.clips))
    rate = {k: 60 * args.clips / min(v) for k, v in times.items()}
    result = {
        "model": args.model,
        "clips": args.clips,
        "batch": args.batch,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "seconds": times,
        "clips_per_minute": rate,
        "ratio": rate["batched"] / rate["one at a time"],
    }
    for name, r in rate.items():
        best = min(times[name])
        print(f"{name:>14}: {r:7.1f} clips/min (best of {args.rounds}: {best:.1f} s for {args.clips} clips)")
    print(f"batched / one at a time: {result['ratio']:.2f}x")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
