"""Wall time of steered over unsteered generation, measured side by side in one run.

Both arms generate the same prompt from the same seed; rounds alternate which arm goes
first so drift in machine load hits both equally. The steered arm runs a CAA-style
vector (unit norm per timestep) on the given sites in the conditional pass; the
reported ratio is median(steered) / median(unsteered).

    python benchmarks/steer_overhead.py                      # CPU, random-tiny:ace-step-1.5
    python benchmarks/steer_overhead.py --model random-full:ace-step-1.5 --dtype bf16 --device cuda \\
        --seconds 30 --steps 8 --rounds 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from tada.adapters import load_model  # noqa: E402
from tada.artifacts import SteeringVector  # noqa: E402


def unit_vector_for(model, aliases: list[str], steps: int) -> SteeringVector:
    """A CAA-shaped artifact: one unit vector per (site, timestep), random directions."""
    gen = torch.Generator().manual_seed(0)
    vectors = {}
    for alias in aliases:
        width = model.engine.module(model.site(alias)).to_out[0].out_features
        v = torch.randn(steps, width, generator=gen)
        vectors[alias] = v / v.norm(dim=-1, keepdim=True)
    timesteps = torch.linspace(1.0, 0.0, steps, dtype=torch.float64)
    return SteeringVector(vectors, timesteps, model.family, model.width, concept="benchmark")


def timed(model, args) -> float:
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    model.generate(args.prompt, seconds=args.seconds, steps=args.steps, guidance=args.guidance, seed=0)
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random-tiny:ace-step-1.5")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sites", default=None, help="comma-separated aliases (default: the two middle xattn)")
    parser.add_argument("--alpha", type=float, default=8.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=7.0)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--prompt", default="an upbeat pop song with piano")
    parser.add_argument("--json", default=None, help="also write the summary here")
    args = parser.parse_args()

    model = load_model(args.model, dtype=args.dtype, device=args.device)
    xattn = [s.alias for s in model.sites.values() if s.kind == "xattn"]
    aliases = args.sites.split(",") if args.sites else xattn[len(xattn) // 2 - 1: len(xattn) // 2 + 1]
    vector = unit_vector_for(model, aliases, args.steps)

    def steered() -> float:
        with vector.apply(model, args.alpha):
            return timed(model, args)

    arms = {"unsteered": lambda: timed(model, args), "steered": steered}
    for _ in range(args.warmup):
        for run in arms.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in arms}
    for round_index in range(args.rounds):
        order = list(arms) if round_index % 2 == 0 else list(reversed(arms))
        for name in order:
            times[name].append(arms[name]())

    med = {name: statistics.median(values) for name, values in times.items()}
    paired = [s / u for s, u in zip(times["steered"], times["unsteered"])]
    summary = {
        "model": args.model, "dtype": args.dtype, "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "threads": torch.get_num_threads(), "sites": aliases, "alpha": args.alpha,
        "seconds": args.seconds, "steps": args.steps, "rounds": args.rounds,
        "median_unsteered_s": med["unsteered"], "median_steered_s": med["steered"],
        "ratio_of_medians": med["steered"] / med["unsteered"],
        "median_paired_ratio": statistics.median(paired),
    }
    print(f"{'arm':<10} {'median s':>10} {'min s':>10} {'max s':>10}")
    for name, values in times.items():
        print(f"{name:<10} {med[name]:>10.4f} {min(values):>10.4f} {max(values):>10.4f}")
    print(f"steered / unsteered: {summary['ratio_of_medians']:.4f} (ratio of medians), "
          f"{summary['median_paired_ratio']:.4f} (median of paired ratios)")
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=1)


if __name__ == "__main__":
    main()
