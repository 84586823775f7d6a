"""How much of the music survives tada-mini's audio path: mel -> autoencoder -> mel -> Griffin-Lim.

On held-out corpus clips, side by side for the original audio, Griffin-Lim of the true
mel (the vocoder's own loss) and Griffin-Lim of the autoencoder's reconstruction (what
generation can at best produce): the key-mode estimate's accuracy against the labelled
mode, the median tempo estimate difference to the original, and the held-out L1 of the
normalised mel. Mode and tempo are the acceptance signal checks of tada-mini, so its
representation must keep them. With ``--gender-twins N`` (a corpus made with
``--gender-twins``) also the third check's ceiling: on N twin pairs (one piece with a
female and with a male voice), the share whose female twin reads higher by the pitch
register, and the median register gap in semitones, for the same three versions.

    python research/mini_autoencoder.py --autoencoder out/mini/autoencoder/model \
        --corpus data/corpus-heldout --clips 100 [--gender-twins 100]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from tada import signal_checks
from tada.data.corpus import read_labels, twin_kind
from tada.mini import mel
from tada.mini.autoencoder import MelAutoencoder
from tada.scorer.features import load_16k


def versions(wave: torch.Tensor, ae: MelAutoencoder) -> tuple[dict[str, np.ndarray], float]:
    """The clip as it is, through Griffin-Lim of its mel, and through the autoencoder too;
    and the autoencoder's normalised-mel L1."""
    spec = mel.log_mel(wave)
    spec = spec[..., : spec.shape[-1] - spec.shape[-1] % ae.downsample]
    with torch.no_grad():
        normal = ae.stats.normalise(spec)
        rebuilt = ae.decode(ae.encode(normal[None])[0])[0]
    return (
        {
            "original": wave.numpy(),
            "griffin_lim": mel.mel_to_audio(spec).numpy(),
            "autoencoder": mel.mel_to_audio(ae.stats.denormalise(rebuilt)).numpy(),
        },
        float((rebuilt - normal).abs().mean()),
    )


def gender_twin_registers(ae: MelAutoencoder, corpus: Path, n: int) -> dict:
    """Female twin higher by the pitch register, and the median gap in semitones, per version."""
    labels = read_labels(corpus)
    by_id = {r["id"]: r for r in labels}
    twins = [r for r in labels if twin_kind(r) == "gender"][:n]
    if not twins:
        raise SystemExit(f"{corpus} has no gender twins (make it with `tada data make --gender-twins`)")
    gaps: dict[str, list[float]] = {"original": [], "griffin_lim": [], "autoencoder": []}
    for twin in twins:
        pair = sorted((by_id[twin["twin_of"]], twin), key=lambda r: r["vocals"]["gender"])  # female first
        read = [versions(load_16k(corpus / r["path"]), ae)[0] for r in pair]
        for name in gaps:
            hz = [signal_checks.pitch_register(v[name], mel.SAMPLE_RATE) for v in read]
            gaps[name].append(12 * np.log2(hz[0] / hz[1]) if np.all(np.isfinite(hz)) else -np.inf)
    return {
        "pairs": len(twins),
        "female_higher": {k: float(np.mean(np.array(v) > 0)) for k, v in gaps.items()},
        "median_gap_semitones": {k: float(np.median(v)) for k, v in gaps.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--autoencoder", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--gender-twins", type=int, default=0, help="gender-twin pairs to read the register of")
    args = parser.parse_args()
    ae = MelAutoencoder.from_pretrained(args.autoencoder).eval()
    records = [r for r in read_labels(args.corpus) if twin_kind(r) is None][: args.clips]
    right = {"original": 0, "griffin_lim": 0, "autoencoder": 0}
    tempo_diff = {"griffin_lim": [], "autoencoder": []}
    errors = []
    for record in records:
        audio, error = versions(load_16k(args.corpus / record["path"]), ae)
        errors.append(error)
        bpm = signal_checks.tempo_bpm(audio["original"], mel.SAMPLE_RATE)
        for name, clip in audio.items():
            right[name] += signal_checks.mode(clip, mel.SAMPLE_RATE) == record["mode"]
            if name != "original":
                tempo_diff[name].append(abs(signal_checks.tempo_bpm(clip, mel.SAMPLE_RATE) - bpm))
    n = len(records)
    report = {
        "clips": n,
        "mel_l1": float(np.mean(errors)) if n else None,
        "mode_accuracy": {k: v / n for k, v in right.items()} if n else None,
        "median_tempo_difference_bpm": {k: float(np.median(v)) if v else None for k, v in tempo_diff.items()},
    }
    if args.gender_twins:
        report["gender_twins"] = gender_twin_registers(ae, args.corpus, args.gender_twins)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
