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
* vocal pitch: share of (female, male) vocal clip pairs read higher on the female clip, by
  the median pYIN F0 (at two floors) and by the pitch register the tada-mini check uses,
  over two kinds of pairs: unrelated vocal clips of the corpus (every female clip against
  every male clip) and *gender twins*, each vocal clip's piece rendered again with a female
  and with a male voice (same notes, instruments and vocal style), the case of a prompt
  pair with a shared seed. The twins' isolated voices (no accompaniment), read by pYIN, give
  the ceiling: how often the voices themselves differ as labelled.

    python research/signal_checks_calibration.py --corpus DIR [--clips 300]

``DIR`` is a corpus built by ``tada data make`` (``labels.jsonl`` + ``audio/``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from tada import signal_checks
from tada.data.attributes import SAMPLE_RATE, ClipSpec
from tada.data.captions import FAST_BPM, SLOW_BPM
from tada.data.corpus import render_spec
from tada.data.render import render_vocals


def tempo_summary(estimates: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    fast, slow = truth >= FAST_BPM, truth <= SLOW_BPM
    both = fast | slow
    return {
        "gap": float(np.median(estimates[fast]) - np.median(estimates[slow])),
        "within_8pct": float(np.mean(np.abs(estimates / truth - 1) < 0.08)),
        "fast_vs_slow_auc": float(roc_auc_score(fast[both], estimates[both])),
    }


def female_higher(female: np.ndarray, male: np.ndarray) -> float:
    return float(np.mean(np.nan_to_num(female, nan=0.0)[:, None] > np.nan_to_num(male, nan=np.inf)[None, :]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=300, help="clips for tempo and mode (from the corpus's end)")
    parser.add_argument("--vocal-clips", type=int, default=40, help="female and male vocal clips each, for F0")
    parser.add_argument("--twins", type=int, default=80, help="vocal clips rendered again as gender twins")
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.corpus / "labels.jsonl").read_text().splitlines() if line.strip()]
    if not rows:
        sys.exit(f"error: {args.corpus} has no labelled clips")
    rows = rows[-args.clips :]

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
    report = {
        "clips": len(rows),
        "labelled_gap": labelled_gap,
        "tempo_shipped": tempo_summary(np.array(shipped), truth),
        "tempo_without_metrical_level": tempo_summary(np.array(plain), truth),
        "tempo_librosa_default": tempo_summary(np.array(default), truth),
        "mode_auc": float(roc_auc_score(major, mode_scores)),
        "beats_per_onset": {
            "shipped": signal_checks.BEATS_PER_ONSET,
            "these_clips": float(np.median(truth / (60 * np.maximum(rates, 1e-9)))),
        },
    }

    vocal = [r for r in rows if r.get("vocals")]
    voices = {g: [r for r in vocal if r["vocals"]["gender"] == g][: args.vocal_clips] for g in ("female", "male")}
    pitch = {
        "median_f0": signal_checks.median_f0,
        "median_f0_fmin_65": lambda audio, sr: signal_checks.median_f0(audio, sr, fmin=65.0),
        "pitch_register": signal_checks.pitch_register,
    }
    read = {(g, name): [] for g in voices for name in pitch}
    for g, group in voices.items():
        for row in tqdm(group, desc=f"pitch {g}"):
            audio, sr = load(row)  # read once, measured by every estimator
            for name, measure in pitch.items():
                read[g, name].append(measure(audio, sr))
    report["pitch_unrelated_pairs_female_higher"] = {
        name: female_higher(np.array(read["female", name]), np.array(read["male", name])) for name in pitch
    }
    twins = {name: [] for name in [*pitch, "isolated_voice_median_f0"]}
    for row in tqdm(vocal[: args.twins], desc="gender twins"):
        spec = ClipSpec.from_json(row["spec"])
        pair = [replace(spec, vocals={**spec.vocals, "gender": g}) for g in ("female", "male")]
        mixes = [render_spec(s) for s in pair]
        for name, measure in pitch.items():
            twins[name].append([measure(m, SAMPLE_RATE) for m in mixes])
        twins["isolated_voice_median_f0"].append(
            [signal_checks.median_f0(render_vocals(s), SAMPLE_RATE, fmin=60.0) for s in pair]
        )
    report["pitch_gender_twins_female_higher"] = {  # each twin against its own partner only
        name: float(np.mean(np.nan_to_num(f, nan=0.0) > np.nan_to_num(m, nan=np.inf)))
        for name, (f, m) in ((name, np.array(v).T) for name, v in twins.items())
    }
    report["gender_twins"] = len(twins["pitch_register"])
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
