"""Screen how CAA is applied on a model: every step, part of the trajectory, or norm-keeping.

For each concept, one CAA vector (the presets' first ``--pairs`` pairs, every
cross-attention output) is applied in each variant over the same fixed alphas, in
units of the sites' median token norm, to the last ``--prompts`` base prompts with one
seed; per alpha it prints the mean probe score and, for tempo, mood and vocal gender,
the sweep's signal check of ``mini_eval.py`` (median tempo, mean key-mode score, median
F0). ``mono`` says whether the probe rises strictly over the alphas given.

    python benchmarks/caa_schedules.py --concepts tempo,vocal_style --variants every,early,late,renorm
    python benchmarks/caa_schedules.py --concepts tempo --variants late --alphas=-1,0,1   # '=' before a minus

Variants: ``every`` (all steps), ``early`` (first half), ``late`` (second half),
``renorm`` (all steps, each steered activation rescaled to its own norm), ``both``
(all steps, on both guidance passes). A screen, not the acceptance protocol: that is
``mini_eval.py --schedule/--renorm`` with three seeds and calibrated alphas.
"""

from __future__ import annotations

import argparse

import numpy as np

from mini_eval import SWEEP_SIGNALS, generate, token_norm_unit
from tada.adapters import load_model
from tada.caa import compute_caa
from tada.concepts import BASE_PROMPTS, CONCEPTS, concept_pairs
from tada.schedules import Window
from tada.scorer import Scorer

VARIANTS = {
    "every": {},
    "early": {"schedule": Window(0.0, 0.5)},
    "late": {"schedule": Window(0.5, 1.0)},
    "renorm": {"renorm": True},
    "both": {"mode": "both"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tada-mini")
    parser.add_argument("--concepts", default="tempo,mood,vocal_style,classical_vs_electronic")
    parser.add_argument("--variants", default="every,early,late,renorm")
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--alphas", default="-1.5,-1,-0.667,-0.333,0,0.333,0.667,1,1.5")
    args = parser.parse_args()
    unknown = [n for n in args.concepts.split(",") if n not in CONCEPTS] + \
        [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown concept or variant {', '.join(unknown)}")

    model, scorer = load_model(args.model), Scorer.load()
    sr, prompts = model.sample_rate, list(BASE_PROMPTS[-args.prompts:])
    seeds = [0] * len(prompts)
    unit = token_norm_unit(model)
    ks = [float(k) for k in args.alphas.split(",")]
    plain = generate(model, prompts, seeds, batch=10)
    print("alphas (token norms): " + " ".join(f"{k:+.2f}" for k in ks))
    for name in args.concepts.split(","):
        vector = compute_caa(model, concept_pairs(name, args.pairs), concept=name, progress=False)
        for variant in args.variants.split(","):
            probe, signal = [], []
            for k in ks:
                if k == 0:
                    clips = plain
                else:
                    with vector.apply(model, k * unit, **VARIANTS[variant]):
                        clips = generate(model, prompts, seeds, batch=10)
                probe.append(float(scorer.similarity(list(clips), sr, CONCEPTS[name].probe)[:, 0].mean()))
                if name in SWEEP_SIGNALS:
                    _, measure, summary = SWEEP_SIGNALS[name]
                    signal.append(float(summary([measure(c, sr) for c in clips])))
            print(f"{name:24s} {variant:7s} mono={bool(np.all(np.diff(probe) > 0))!s:5s} "
                  + " ".join(f"{x:.3f}" for x in probe)
                  + (f"  | {SWEEP_SIGNALS[name][0]} " + " ".join(f"{x:.3g}" for x in signal) if signal else ""),
                  flush=True)


if __name__ == "__main__":
    main()
