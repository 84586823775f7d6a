"""How much of the music survives tada-mini's audio path: mel -> autoencoder -> mel -> Griffin-Lim.

On held-out corpus clips, side by side for the original audio, Griffin-Lim of the true
mel (the vocoder's own loss) and Griffin-Lim of the autoencoder's reconstruction (what
generation can at best produce): the key-mode estimate's accuracy against the labelled
mode, the median tempo estimate difference to the original, and the held-out L1 of the
normalised mel. Mode and tempo are the acceptance signal checks of tada-mini, so its
representation must keep them.

    python benchmarks/mini_autoencoder.py --autoencoder out/mini/autoencoder/model \
        --corpus data/corpus-heldout --clips 100
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from tada import signal_checks
from tada.data.corpus import read_labels
from tada.mini import mel
from tada.mini.autoencoder import MelAutoencoder
from tada.scorer.features import load_16k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--autoencoder", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=100)
    args = parser.parse_args()
    ae = MelAutoencoder.from_pretrained(args.autoencoder).eval()
    records = read_labels(args.corpus)[: args.clips]
    right = {"original": 0, "griffin_lim": 0, "autoencoder": 0}
    tempo_diff = {"griffin_lim": [], "autoencoder": []}
    errors = []
    for record in records:
        wave = load_16k(args.corpus / record["path"])
        spec = mel.log_mel(wave)
        spec = spec[..., : spec.shape[-1] - spec.shape[-1] % ae.downsample]
        with torch.no_grad():
            normal = ae.stats.normalise(spec)
            rebuilt = ae.decode(ae.encode(normal[None])[0])[0]
        errors.append(float((rebuilt - normal).abs().mean()))
        audio = {"original": wave.numpy(), "griffin_lim": mel.mel_to_audio(spec).numpy(),
                 "autoencoder": mel.mel_to_audio(ae.stats.denormalise(rebuilt)).numpy()}
        bpm = signal_checks.tempo_bpm(audio["original"], mel.SAMPLE_RATE)
        for name, clip in audio.items():
            right[name] += signal_checks.mode(clip, mel.SAMPLE_RATE) == record["mode"]
            if name != "original":
                tempo_diff[name].append(abs(signal_checks.tempo_bpm(clip, mel.SAMPLE_RATE) - bpm))
    n = len(records)
    print(json.dumps({"clips": n, "mel_l1": float(np.mean(errors)),
                      "mode_accuracy": {k: v / n for k, v in right.items()},
                      "median_tempo_difference_bpm": {k: float(np.median(v)) for k, v in tempo_diff.items()}}))


if __name__ == "__main__":
    main()
