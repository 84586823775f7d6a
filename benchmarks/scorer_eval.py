"""Acceptance evaluation of the offline scorer on a held-out corpus.

Alignment: for each of the nine concepts, the ROC AUC of a probe's similarity between
clips that have the attribute and clips that have its opposite (``tada.scorer.probes``),
for the standard probe and for paraphrases worded unlike the corpus captions. Target:
AUC >= 0.9 for every concept's standard probe and for every one of its paraphrases.
Each wording that misses is shown with the frozen sentence encoder's own margin for it
(``tada.scorer.probes.encoder_margins``): at or below zero, MiniLM already places the
wording nearer the opposite concept than the intended one, before any training.

Preservation: a clip re-rendered with one instrument swapped for another that plays the
same role (same notes, other timbre) must be closer to the original than a different
clip of the corpus is, in >= 95% of trials. All three are rendered from their specs here.

The held-out corpus must come from seeds the scorer never trained on; where the weights
carry ``training.json``, clips from trained seeds are refused.

    tada data make --n 1000 --seed 1000000 --out /tmp/heldout
    python benchmarks/scorer_eval.py --corpus /tmp/heldout [--weights out/scorer/model] [--trials 200]

Prints a table and, as its last line, a JSON summary; exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tada.data.attributes import INSTRUMENTS, ClipSpec  # noqa: E402
from tada.data.corpus import render_spec  # noqa: E402
from tada.errors import TadaError  # noqa: E402
from tada.scorer import Scorer  # noqa: E402
from tada.scorer.api import WEIGHTS  # noqa: E402
from tada.scorer.features import SAMPLE_RATE  # noqa: E402
from tada.scorer.labels import LABELS, read_labels  # noqa: E402
from tada.scorer.probes import TESTS, concept_aucs, encoder_margins  # noqa: E402
from tada.scorer.train import PROVENANCE  # noqa: E402

AUC_TARGET, PRESERVATION_TARGET = 0.9, 0.95


def check_held_out(weights: Path, seeds: list[int]) -> None:
    """Refuse clips the scorer was trained on."""
    path = weights / PROVENANCE
    if not path.is_file():
        print(f"note: {path} is missing; cannot check that the corpus is held out", file=sys.stderr)
        return
    ranges = json.loads(path.read_text())["trained_seeds"]
    seen = [s for s in seeds if any(lo <= s < hi for lo, hi in ranges)]
    if seen:
        raise TadaError(
            f"{len(seen)} clips (e.g. seed {seen[0]}) were used to train the scorer; "
            "evaluate on a corpus made from other seeds"
        )


def swapped(spec: ClipSpec, rng: random.Random) -> tuple[ClipSpec, str, str] | None:
    """The spec with one non-drum instrument replaced by another that can play the same role."""
    parts = [p for p in spec.parts if p.role != "drums"]
    rng.shuffle(parts)
    used = {p.instrument for p in spec.parts}
    for part in parts:
        options = sorted(n for n, i in INSTRUMENTS.items() if part.role in i.roles and n not in used)
        if options:
            new = rng.choice(options)
            return spec.with_instrument(part.instrument, new), part.instrument, new
    return None


def preservation(scorer: Scorer, specs: list[ClipSpec], trials: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    wins, near, far = 0, [], []
    for _ in range(trials):
        original, other = rng.sample(specs, 2)
        change = swapped(original, rng)
        while change is None:
            original = rng.choice(specs)
            change = swapped(original, rng)
        audio = render_spec(original)
        d_swap = scorer.preservation_distance(audio, render_spec(change[0]), SAMPLE_RATE)
        d_other = scorer.preservation_distance(audio, render_spec(other), SAMPLE_RATE)
        wins += d_swap < d_other
        near.append(d_swap)
        far.append(d_other)
    return {
        "rate": wins / trials,
        "trials": trials,
        "median_swapped": float(np.median(near)),
        "median_other": float(np.median(far)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="held-out corpus directory")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="scorer weights directory")
    parser.add_argument("--trials", type=int, default=200, help="preservation trials")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    clips = read_labels(args.corpus)
    check_held_out(args.weights, [c.seed for c in clips])
    scorer = Scorer.load(args.weights)
    start = time.perf_counter()
    audio = scorer.embed_files([c.path for c in clips])
    embed_s = time.perf_counter() - start
    aucs = concept_aucs(clips, lambda texts: (audio @ scorer.embed_text(texts).T).numpy(), paraphrases=True)
    margins = encoder_margins(lambda texts: scorer.encoder.encode(texts).numpy())

    print(f"{len(clips)} held-out clips embedded in {embed_s:.1f} s")
    print(f"{'concept':26s} {'pos':>5s} {'neg':>5s} {'standard':>9s} {'paraphrases (min/mean)':>24s}")
    summary: dict[str, dict] = {}
    for name, test in TESTS.items():
        pos, neg = test.split(clips)
        standard = aucs[name][test.probe]
        para = [aucs[name][p] for p in test.paraphrases]
        summary[name] = {
            "n_pos": len(pos),
            "n_neg": len(neg),
            "standard": standard,
            "paraphrases": {p: aucs[name][p] for p in test.paraphrases},
        }
        mark = "ok" if min(standard, *para) >= AUC_TARGET else "MISS"
        print(f"{name:26s} {len(pos):5d} {len(neg):5d} {standard:9.3f} {min(para):11.3f} / {np.mean(para):.3f}  {mark}")
        for text, auc in (summary[name]["paraphrases"] | {test.probe: standard}).items():
            if auc < AUC_TARGET:
                print(f"    miss: {text!r} AUC {auc:.3f}, sentence-encoder margin {margins[name][text]:+.3f}")
        summary[name]["encoder_margins"] = margins[name]

    records = {
        json.loads(line)["id"]: json.loads(line)
        for line in (args.corpus / LABELS).read_text().splitlines()
        if line.strip()
    }
    specs = [ClipSpec.from_json(records[c.id]["spec"]) for c in clips if "spec" in records[c.id]]
    if len(specs) < 2:
        raise TadaError(f"{args.corpus / LABELS} has no clip specs ('spec'); the preservation test re-renders them")
    kept = preservation(scorer, specs, args.trials, args.seed)
    print(
        f"preservation: swapped-instrument clip closer than another clip in {kept['rate']:.1%} of "
        f"{kept['trials']} trials (median distance {kept['median_swapped']:.4f} vs {kept['median_other']:.4f})"
    )

    passed = (
        all(min(s["standard"], *s["paraphrases"].values()) >= AUC_TARGET for s in summary.values())
        and kept["rate"] >= PRESERVATION_TARGET
    )
    print(json.dumps({"clips": len(clips), "auc": summary, "preservation": kept, "passed": passed}))
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    try:
        main()
    except TadaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
