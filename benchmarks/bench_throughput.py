"""tada bench throughput: clips generated and scored per minute, batched against one at a time.

Runs the benchmark's alpha-0 unit (generate, then score alignment, preservation features and
embeddings) on the same test prompts twice per round: with ``--batch`` clips in one denoising
batch (one chunk), and one clip per unit (``--batch 1``, as a run without batching would), in
alternating order, side by side in one process. Reports clips per minute of each and their ratio.

    python benchmarks/bench_throughput.py --model tada-mini --clips 16 --rounds 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from tada.bench.plan import BenchSettings, Unit
from tada.bench.worker import Worker
from tada.files import write_json


class TimedWorker(Worker):
    """A worker that adds up the seconds it spends generating (the rest of a unit is scoring and storing)."""

    generating = 0.0

    def generate(self, prompts, seeds):
        start = time.perf_counter()
        try:
            return super().generate(prompts, seeds)
        finally:
            self.generating += time.perf_counter() - start


def one_pass(worker: TimedWorker, clips: int) -> tuple[float, float]:
    """Seconds to generate and score ``clips`` clips in the worker's chunks, and the part spent generating."""
    start, generating = time.perf_counter(), worker.generating
    for lo, hi in worker.settings.prompt_chunks():
        worker.run(Unit("baseline", f"baseline/piano/{lo}-{hi}", "piano", None, {"chunk": [lo, hi]}))
    return time.perf_counter() - start, worker.generating - generating


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tada-mini")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (the CPU device only)")
    parser.add_argument("--device", default="cpu", help="where the model and scorer run: cpu, cuda, cuda:1")
    parser.add_argument("--dtype", default="float32", help="the model's weights: float32, bfloat16, float16")
    parser.add_argument("--out", type=Path, default=None, help="write results.json here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    common = {
        "model": args.model,
        "concepts": ["piano"],
        "variants": ["caa-global"],
        "prompts": args.clips,
        "seeds": 1,
        "dtype": args.dtype,
    }
    with tempfile.TemporaryDirectory() as tmp:
        batched = TimedWorker(BenchSettings(**common, batch=args.batch), Path(tmp) / "batched", device=args.device)
        single = TimedWorker(BenchSettings(**common, batch=1), Path(tmp) / "single", device=args.device)
        single._model, single._scorer = batched.model, batched.scorer  # one model, two batchings
        one_pass(batched, min(args.batch, args.clips))  # warm-up: weights, text encoder, caches
        times: dict[str, list[float]] = {"batched": [], "one at a time": []}
        generating: dict[str, list[float]] = {"batched": [], "one at a time": []}
        for r in range(args.rounds):
            order = [("batched", batched), ("one at a time", single)]
            for name, worker in order if r % 2 == 0 else order[::-1]:
                total, gen = one_pass(worker, args.clips)
                times[name].append(total)
                generating[name].append(gen)
    rate = {k: 60 * args.clips / min(v) for k, v in times.items()}
    best = {k: min(range(args.rounds), key=v.__getitem__) for k, v in times.items()}
    split = {
        k: {"generate_s": generating[k][best[k]], "score_and_store_s": times[k][best[k]] - generating[k][best[k]]}
        for k in times
    }
    result = {
        "model": args.model,
        "clips": args.clips,
        "batch": args.batch,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "dtype": args.dtype,
        "seconds": times,
        "generating_seconds": generating,
        "best_round_split": split,
        "clips_per_minute": rate,
        "ratio": rate["batched"] / rate["one at a time"],
        "generation_ratio": split["one at a time"]["generate_s"] / split["batched"]["generate_s"],
        "scoring_ratio": split["one at a time"]["score_and_store_s"] / split["batched"]["score_and_store_s"],
    }
    for name, r in rate.items():
        gen, rest = split[name]["generate_s"], split[name]["score_and_store_s"]
        print(
            f"{name:>14}: {r:7.1f} clips/min (best of {args.rounds}: {times[name][best[name]]:.1f} s for "
            f"{args.clips} clips: {gen:.1f} s generating, {rest:.1f} s scoring and storing)"
        )
    print(
        f"batched / one at a time: {result['ratio']:.2f}x "
        f"(generation {result['generation_ratio']:.2f}x, scoring {result['scoring_ratio']:.2f}x)"
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "results.json", result)


if __name__ == "__main__":
    main()
