"""The mel autoencoder: 256-band log-mel frames <-> a latent sequence 4x shorter in time.

The diffusion transformer works on its latents (as ACE-Step and Stable Audio work on
their autoencoders' latents), which makes a 5-second clip 78 tokens and keeps the
training set small enough to carry. A variational bottleneck with a small KL weight keeps
the latent space smooth; ``scaling_factor`` (measured on the corpus after training)
brings latents to unit variance, as in Stable Diffusion's VAE.

1-D convolutions over time with mel bands as channels; residual blocks; strided
convolutions down, nearest-neighbour upsampling plus convolution up.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn import functional as F

from .mel import N_MELS, MelStats


class ResBlock(nn.Module):
    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.norm2 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class MelAutoencoder(ModelMixin, ConfigMixin):
    """``encode``: normalised log-mel ``(B, n_mels, frames)`` -> latent mean and log-variance
    ``(B, latent_channels, frames // downsample)``; ``decode``: latent -> normalised log-mel."""

    @register_to_config
    def __init__(
        self,
        n_mels: int = N_MELS,
        channels: int = 192,
        latent_channels: int = 32,
        blocks_per_level: int = 2,
        downsample: int = 4,
        scaling_factor: float = 1.0,
        mel_mean: list[float] | None = None,
        mel_std: list[float] | None = None,
    ):
        super().__init__()
        if downsample not in (1, 2, 4, 8):
            raise ValueError("downsample must be 1, 2, 4 or 8")
        levels = {1: 0, 2: 1, 4: 2, 8: 3}[downsample]
        enc: list[nn.Module] = [nn.Conv1d(n_mels, channels, 3, padding=1)]
        dec: list[nn.Module] = [nn.Conv1d(latent_channels, channels, 3, padding=1)]
        for _ in range(levels):
            enc += [ResBlock(channels, d) for d in (1, 3)[:blocks_per_level]]
            enc.append(nn.Conv1d(channels, channels, 4, stride=2, padding=1))
        enc += [ResBlock(channels) for _ in range(blocks_per_level)]
        enc += [nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv1d(channels, 2 * latent_channels, 3, padding=1)]
        dec += [ResBlock(channels) for _ in range(blocks_per_level)]
        for _ in range(levels):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv1d(channels, channels, 3, padding=1)]
            dec += [ResBlock(channels, d) for d in (1, 3)[:blocks_per_level]]
        dec += [nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv1d(channels, n_mels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    @property
    def stats(self) -> MelStats:
        """The corpus's per-band log-mel statistics the model was trained with (0 / 1 before training)."""
        n = int(self.config.n_mels)
        mean, std = self.config.mel_mean, self.config.mel_std
        return MelStats(tuple(mean) if mean else (0.0,) * n, tuple(std) if std else (1.0,) * n)

    @property
    def downsample(self) -> int:
        return int(self.config.downsample)

    def latent_frames(self, frames: int) -> int:
        return frames // self.downsample

    def encode(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of the latent (unscaled); frames beyond a multiple of ``downsample`` are dropped."""
        frames = mel.shape[-1] - mel.shape[-1] % self.downsample
        moments = self.encoder(mel[..., :frames])
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Unscaled latent -> normalised log-mel with ``latent frames * downsample`` frames."""
        return self.decoder(latent)

    def forward(self, mel: torch.Tensor, generator: torch.Generator | None = None):
        mean, logvar = self.encode(mel)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        latent = mean + (0.5 * logvar).exp() * noise
        return self.decode(latent), mean, logvar
