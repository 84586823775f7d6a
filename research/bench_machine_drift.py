"""Do a benchmark run's scores move when it resumes on another kind of CPU?

A long `tada bench` run spans sessions, and a session may get a different machine (the
tada-mini run began on AVX-512 CPUs and went on on AVX2 ones). Matrix-product kernels,
and so a clip's rounding, depend on the CPU; the sampler and Griffin-Lim amplify it (see
`batch_dependence.py`). This regenerates one concept's alpha-0 clips here, from the run's
own settings, prompts and seeds, scores them as the worker does, and compares them with
the alpha-0 scores that the run's journal recorded wherever it ran.

    python research/bench_machine_drift.py --run docs/benchmark/tada-mini --concept vocal_style   # ~2 min
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402

from tada.bench.prompts import test_prompts  # noqa: E402
from tada.bench.worker import Worker  # noqa: E402
from tada.concepts import CONCEPTS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("docs/benchmark/tada-mini"))
    parser.add_argument("--concept", default="vocal_style")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    settings = json.loads((args.run / "units" / "settings.json").read_text())
    worker = Worker(settings, args.run, threads=args.threads)
    wrap = CONCEPTS[args.concept]
    bases = test_prompts(worker.settings.prompts)
    gaps, cosines, spread = [], [], []
    for path in sorted((args.run / "units" / "baseline" / args.concept).glob("*.safetensors")):
        unit = safe_open(str(path), "pt")
        index = list(zip(unit.get_tensor("prompt").tolist(), unit.get_tensor("seed").tolist()))
        clips = worker.generate([wrap.neutral_prompt(bases[p]) for p, _ in index], [s for _, s in index])
        # scored by the worker's own code, as the run's baseline units were
        rows = worker._score(clips, None, args.concept, "baseline", 0.0, index)
        here = np.array([row.alignment["probe"] for row in rows])
        there = unit.get_tensor("alignment")[:, 0].double().numpy()
        gaps += list(np.abs(here - there))
        spread += list(there)
        cosines += torch.nn.functional.cosine_similarity(
            torch.from_numpy(np.stack([row.embedding for row in rows])).float(),
            unit.get_tensor("embedding").float(),
            dim=1,
        ).tolist()
    print(
        json.dumps(
            {
                "concept": args.concept,
                "clips": len(gaps),
                "probe_abs_diff_max": float(np.max(gaps)),
                "probe_abs_diff_mean": float(np.mean(gaps)),
                "probe_std_over_clips": float(np.std(spread)),
                "embedding_cosine_min": float(np.min(cosines)),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
