"""Training-time augmentation on cached features: random crop, gain and a small white-noise floor.

Working on the cached features keeps epochs cheap. Gain and noise touch the log-mel
rows only (chroma is normalised per frame, so gain leaves it as it is). Gain is a
constant shift of the log power; noise is added in the power domain with white noise's
mel-band shape, at a random signal-to-noise ratio relative to each clip's mean power,
so it is what adding noise to the waveform would do on average.
"""

from __future__ import annotations

import math

import torch

from . import features


def augment(
    feats: torch.Tensor,
    frames: int,
    generator: torch.Generator,
    gain_db: float,
    snr_db: tuple[float, float],
    noise_prob: float,
) -> torch.Tensor:
    """Crop ``(batch, N_FEATURES, time)`` features to ``frames`` at random offsets, then apply gain and noise."""
    batch, _, total = feats.shape
    frames = min(frames, total)
    offsets = torch.randint(0, total - frames + 1, (batch,), generator=generator)
    crops = torch.stack([feats[i, :, o : o + frames] for i, o in enumerate(offsets.tolist())]).float()
    gain = (torch.rand(batch, 1, 1, generator=generator) * 2 - 1) * gain_db * math.log(10) / 10
    power = (crops[:, : features.N_MELS] + gain).exp()
    snr = snr_db[0] + torch.rand(batch, 1, 1, generator=generator) * (snr_db[1] - snr_db[0])
    noisy = torch.rand(batch, 1, 1, generator=generator) < noise_prob
    shape = features.mel_basis().sum(dim=1)
    level = power.mean(dim=(1, 2), keepdim=True) * 10 ** (-snr / 10) * noisy
    power = power + level * (shape / shape.mean())[None, :, None]
    return torch.cat([power.clamp_min(features.LOG_FLOOR).log(), crops[:, features.N_MELS :]], dim=1)
