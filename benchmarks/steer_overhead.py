"""Wall time of steered over unsteered generation, measured side by side in one run.

Both arms generate the same prompt from the same seed; rounds alternate which arm goes
first so drift in machine load hits both equally. The steered arm runs a CAA-style
vector (unit norm per timestep) on the given sites in the conditional pass; the
reported ratio is the median over rounds of steered / unsteered time, with a
bootstrap 95% interval; a third arm runs the same hooks at alpha 0.

    python benchmarks/steer_overhead.py                      # CPU, random-tiny:ace-step-1.5
    python benchmarks/steer_overhead.py --model random-full:ace-step-1.5 --dtype bf16 --device cuda \\
        --seconds 30 --steps 8 --rounds 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Callable

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


def bootstrap_ci(values: list[float], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the median."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(n))
    return medians[int(0.025 * n)], medians[int(0.975 * n) - 1]


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
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--prompt", default="an upbeat pop song with piano")
    parser.add_argument("--json", default=None, help="also write the summary here")
    args = parser.parse_args()

    model = load_model(args.model, dtype=args.dtype, device=args.device)
    xattn = [s.alias for s in model.sites.values() if s.kind == "xattn"]
    aliases = args.sites.split(",") if args.sites else xattn[len(xattn) // 2 - 1 : len(xattn) // 2 + 1]
    vector = unit_vector_for(model, aliases, args.steps)

    def with_vector(alpha: float) -> Callable[[], float]:
        def run() -> float:
            with vector.apply(model, alpha):
                return timed(model, args)

        return run

    # "hooks only" runs the same hooks at alpha 0 (activations untouched): it separates
    # the cost of having hooks from the cost of the edit itself.
    arms = {"unsteered": lambda: timed(model, args), "hooks only": with_vector(0.0), "steered": with_vector(args.alpha)}
    for _ in range(args.warmup):
        for run in arms.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in arms}
    for round_index in range(args.rounds):
        order = list(arms) if round_index % 2 == 0 else list(reversed(arms))
        for name in order:
            times[name].append(arms[name]())

    med = {name: statistics.median(values) for name, values in times.items()}
    ratios = {name: [t / u for t, u in zip(times[name], times["unsteered"])] for name in ("hooks only", "steered")}
    summary = {
        "model": args.model,
        "dtype": args.dtype,
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "threads": torch.get_num_threads(),
        "sites": aliases,
        "alpha": args.alpha,
        "seconds": args.seconds,
        "steps": args.steps,
        "rounds": args.rounds,
        **{f"median_{name.replace(' ', '_')}_s": value for name, value in med.items()},
        "ratio_of_medians": med["steered"] / med["unsteered"],
        "median_paired_ratio": statistics.median(ratios["steered"]),
        "paired_ratio_ci95": bootstrap_ci(ratios["steered"]),
        "hooks_only_paired_ratio": statistics.median(ratios["hooks only"]),
    }
    print(f"{'arm':<11} {'median s':>10} {'min s':>10} {'max s':>10}")
    for name, values in times.items():
        print(f"{name:<11} {med[name]:>10.4f} {min(values):>10.4f} {max(values):>10.4f}")
    low, high = summary["paired_ratio_ci95"]
    print(
        f"steered / unsteered: {summary['median_paired_ratio']:.4f} median paired ratio "
        f"(95% CI {low:.4f}-{high:.4f}), {summary['ratio_of_medians']:.4f} ratio of medians; "
        f"hooks only: {summary['hooks_only_paired_ratio']:.4f}"
    )
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=1)


if __name__ == "__main__":
    main()
