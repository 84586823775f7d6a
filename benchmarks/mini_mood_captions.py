"""Does tada-mini set the key mode from mood words? Training-style captions vs the benchmark's wording.

Pairs that differ only in the mood word, generated from the same noise, three seeds
each: ten training-style captions ("A happy pop song with piano and drums." against
"A sad ..."), the same with other mood words (cheerful / melancholic), and the mood
preset around the first ten base prompts ("happy song, {p}" against "sad song, {p}").
Per set: the share of pairs whose happy clip has the higher key-mode score
(``tada.signal_checks.mode_score``) and the higher "a cheerful track" probe score.

    python benchmarks/mini_mood_captions.py
"""

from __future__ import annotations

import argparse

import numpy as np

from tada import signal_checks
from tada.adapters import load_model
from tada.concepts import BASE_PROMPTS, CONCEPTS
from tada.scorer import Scorer

BODIES = ("pop song with piano and drums", "rock tune with electric guitar and bass", "folk piece with acoustic guitar",
          "jazz song with piano and upright bass", "electronic track with synth pads", "classical piece with strings",
          "hip hop beat with synth bass", "latin song with brass and drums", "pop song with female vocals",
          "country tune with acoustic guitar and violin")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tada-mini")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    model, scorer = load_model(args.model), Scorer.load()
    sr, mood = model.sample_rate, CONCEPTS["mood"]
    sets = {
        "happy/sad, training style": [(f"A happy {b}.", f"A sad {b}.") for b in BODIES],
        "cheerful/melancholic, training style": [(f"A cheerful {b}.", f"A melancholic {b}.") for b in BODIES],
        "mood preset, 10 base prompts": [mood.pair(p) for p in BASE_PROMPTS[:10]],
    }
    seeds = list(range(args.seeds))
    for name, pairs in sets.items():
        grid = [(pair, s) for pair in pairs for s in seeds]
        clips = [model.generate([pair[i] for pair, _ in grid], seed=[s for _, s in grid]).samples[:, 0] for i in (0, 1)]
        modes = [np.array([signal_checks.mode_score(c, sr) for c in side]) for side in clips]
        probes = [scorer.similarity(list(side), sr, mood.probe)[:, 0].numpy() for side in clips]
        print(f"{name:38s} pairs {len(grid):3d}: key mode ordered {np.mean(modes[0] > modes[1]):.2f} "
              f"(major: happy {np.mean(modes[0] > 0):.2f}, sad {np.mean(modes[1] > 0):.2f}); "
              f"probe ordered {np.mean(probes[0] > probes[1]):.2f}", flush=True)


if __name__ == "__main__":
    main()
