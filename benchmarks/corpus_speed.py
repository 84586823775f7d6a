"""Corpus rendering speed: seconds of audio rendered per second of wall time.

    python benchmarks/corpus_speed.py --n 200 --workers 2

Renders into a temporary directory (nothing is kept) and prints a JSON summary last.
"""

from __future__ import annotations

import argparse
import json
import tempfile

from tada.data.corpus import make_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=50_000_000, help="first clip seed (outside training ranges)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    rows = []
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as out:
            report = make_corpus(args.n, args.seed, out, workers=workers, progress=False)
        rows.append(
            {
                "workers": workers,
                "clips": report.rendered,
                "audio_s": report.audio_seconds,
                "wall_s": round(report.wall_seconds, 2),
                "realtime_factor": round(report.realtime_factor, 1),
            }
        )
        print(
            f"{workers} worker(s): {report.audio_seconds:.0f} s of audio in {report.wall_seconds:.1f} s "
            f"= {report.realtime_factor:.1f}x real time"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
