"""How well the signal checks read the corpus's own labels, side by side with librosa's defaults.

The tada-mini acceptance checks (tempo gap, key mode, vocal F0) are only as good as
the estimators behind them. This measures each on labelled corpus clips, where the
truth is known, so a setting is chosen on ground truth and never on the model's output:

* tempo: median estimate of fast (>= 130 BPM) minus slow (<= 85 BPM) clips, against the
  labelled gap; share of clips within 8% of the label; fast-vs-slow AUC. Side by side:
  the shipped estimator, the same without its metrical-level choice, librosa's defaults;
  and the beats-per-onset ratio of these clips (the shipped constant was fitted on other
  clips of the same corpus).
* mode: AUC of the mode score for major vs minor clips.
* F0: share of (female, male) vocal clip pairs with the higher median F0 on the female clip.

    python benchmarks/signal_checks_calibration.py --corpus DIR [--clips 300]

``DIR`` is a corpus built by ``tada corpus build`` (``labels.jsonl`` + ``audio/``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from tada import signal_checks
from tada.data.captions import FAST_BPM, SLOW_BPM


def tempo_summary(estimates: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    fast, slow = truth >= FAST_BPM, truth <= SLOW_BPM
    both = fast | slow
    return {"gap": float(np.median(estimates[fast]) - np.median(estimates[slow])),
            "within_8pct": float(np.mean(np.abs(estimates / truth - 1) < 0.08)),
            "fast_vs_slow_auc": float(roc_auc_score(fast[both], estimates[both]))}


def female_higher(female: np.ndarray, male: np.ndarray) -> float:
    return float(np.mean(np.nan_to_num(female, nan=0.0)[:, None] > np.nan_to_num(male, nan=np.inf)[None, :]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=300, help="clips for tempo and mode (from the corpus's end)")
    parser.add_argument("--vocal-clips", type=int, default=40, help="female and male vocal clips each, for F0")
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.corpus / "labels.jsonl").read_text().splitlines() if line.strip()]
    if not rows:
        sys.exit(f"error: {args.corpus} has no labelled clips")
    rows = rows[-args.clips:]

    def load(row: dict) -> tuple[np.ndarray, int]:
        return sf.read(args.corpus / row["path"], dtype="float32")

    truth, shipped, plain, default, rates, mode_scores, major = [], [], [], [], [], [], []
    for row in tqdm(rows, desc="tempo and mode"):
        audio, sr = load(row)
        truth.append(row["bpm"])
        shipped.append(signal_checks.tempo_bpm(audio, sr))
        plain.append(signal_checks.tempo_bpm(audio, sr, metrical_level=False))
        default.append(signal_checks.tempo_bpm(audio, sr, prior=None, hop_length=512, metrical_level=False))
        rates.append(signal_checks.onset_rate(audio, sr))
        mode_scores.append(signal_checks.mode_score(audio, sr))
        major.append(row["mode"] == "major")
    truth = np.array(truth, dtype=float)
    labelled_gap = float(np.median(truth[truth >= FAST_BPM]) - np.median(truth[truth <= SLOW_BPM]))
    report = {"clips": len(rows), "labelled_gap": labelled_gap,
              "tempo_shipped": tempo_summary(np.array(shipped), truth),
              "tempo_without_metrical_level": tempo_summary(np.array(plain), truth),
              "tempo_librosa_default": tempo_summary(np.array(default), truth),
              "mode_auc": float(roc_auc_score(major, mode_scores)),
              "beats_per_onset": {"shipped": signal_checks.BEATS_PER_ONSET,
                                  "these_clips": float(np.median(truth / (60 * np.maximum(rates, 1e-9))))}}

    voices = {g: [r for r in rows if r.get("vocals") and r["vocals"]["gender"] == g][: args.vocal_clips]
              for g in ("female", "male")}
    floors = {"shipped": signal_checks.VOCAL_FMIN, "fmin_65": 65.0}
    med = {(g, name): [] for g in voices for name in floors}
    for g, group in voices.items():
        for row in tqdm(group, desc=f"F0 {g}"):
            audio, sr = load(row)  # read once, measured at every floor
            for name, fmin in floors.items():
                med[g, name].append(signal_checks.median_f0(audio, sr, fmin=fmin))
    report["f0_female_higher_pairs"] = {name: female_higher(np.array(med["female", name]), np.array(med["male", name]))
                                        for name in floors}
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
