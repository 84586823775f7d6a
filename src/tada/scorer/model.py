"""The contrastive text-audio model: a small CNN on log-mels plus a chroma branch, and a projection of MiniLM text.

Both sides land, L2-normalised, in one shared space where cosine similarity is the
alignment score. The frozen sentence encoder is not part of this module (see
:mod:`tada.scorer.text`), so ``save_pretrained`` writes only the ~2M trainable weights.
The attribute heads (instruments, genre, mode, vocals, tempo) read the audio embedding
and are trained alongside the contrastive loss: they push the attributes that probes
ask about into that space. They are not used for scoring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from .features import N_CHROMA, N_MELS
from .text import TEXT_DIM

# Scalar attribute heads after the instrument and genre logits, in this order.
SCALAR_HEADS = ("mode_major", "has_vocals", "vocal_female", "vocal_rap", "tempo")


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with batch norm; its output is one layer of preservation features."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


class TemporalBlock(nn.Module):
    """A residual dilated 1-D convolution over time: widens the receptive field for rhythm and tempo."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, padding=2, dilation=2, bias=False)
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.bn(self.conv(x)))


class ChromaBranch(nn.Module):
    """Key-invariant harmony: a convolution spanning all 12 pitch classes, tried at every root, max over roots.

    A filter can learn a chord shape (root, third, fifth); the max over roots keeps
    "a minor chord is sounding" and drops which key it is in.
    """

    def __init__(self, width: int, out: int):
        super().__init__()
        self.conv = nn.Conv2d(1, width, (N_CHROMA, 3), padding=(0, 1), bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.temporal = nn.Conv1d(width, out, 3, padding=1, bias=False)
        self.bn_t = nn.BatchNorm1d(out)

    def roots(self, chroma: torch.Tensor) -> torch.Tensor:
        """Filter responses at every root, ``(batch, width, 12, time)``."""
        x = chroma.unsqueeze(1)
        x = torch.cat([x, x[:, :, : N_CHROMA - 1]], dim=2)  # circular in pitch class
        return F.relu(self.bn(self.conv(x)))

    def forward(self, chroma: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn_t(self.temporal(self.roots(chroma).amax(dim=2))))


class TextAudioScorer(ModelMixin, ConfigMixin):
    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        n_mels: int = N_MELS,
        channels: Sequence[int] = (24, 48, 96, 192),
        chroma_width: int = 32,
        chroma_out: int = 64,
        embed_dim: int = 256,
        text_dim: int = TEXT_DIM,
        text_hidden: int = 512,
        instruments: Sequence[str] = (),
        genres: Sequence[str] = (),
    ):
        super().__init__()
        self.input_norm = nn.BatchNorm1d(n_mels)
        widths = [1, *channels]
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.temporal = TemporalBlock(channels[-1])
        self.chroma = ChromaBranch(chroma_width, chroma_out)
        self.audio_head = nn.Sequential(
            nn.Linear(2 * (channels[-1] + chroma_out), channels[-1]), nn.ReLU(), nn.Linear(channels[-1], embed_dim)
        )
        self.text_head = nn.Sequential(nn.Linear(text_dim, text_hidden), nn.GELU(), nn.Linear(text_hidden, embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.attributes = nn.Linear(embed_dim, len(instruments) + len(genres) + len(SCALAR_HEADS))

    def _trunk(self, features: torch.Tensor, taps: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Mel CNN then dilated time conv; ``taps`` collects each block's activations."""
        x = self.input_norm(features[:, : self.config.n_mels]).unsqueeze(1)
        for i, block in enumerate(self.blocks):
            if i:
                x = F.avg_pool2d(x, 2, ceil_mode=True)
            x = block(x)
            if taps is not None:
                taps.append(x)
        return self.temporal(x.mean(dim=2))

    def audio_embedding(self, features: torch.Tensor) -> torch.Tensor:
        """Unit-norm audio embeddings of clip features ``(batch, n_mels + 12, time)``."""
        h = self._trunk(features)
        c = self.chroma(features[:, self.config.n_mels :])
        pooled = torch.cat([h.mean(dim=-1), h.amax(dim=-1), c.mean(dim=-1), c.amax(dim=-1)], dim=-1)
        return F.normalize(self.audio_head(pooled), dim=-1)

    def text_embedding(self, sentence: torch.Tensor) -> torch.Tensor:
        """Unit-norm shared-space embeddings of MiniLM sentence embeddings ``(batch, text_dim)``."""
        return F.normalize(self.text_head(sentence), dim=-1)

    def layer_features(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Each mel conv block's activations ``(batch, channels, mels, time)`` and the chroma filters'
        ``(batch, width, 12, time)``: the preservation feature space (timbre, and the notes)."""
        taps: list[torch.Tensor] = []
        self._trunk(features, taps)
        return [*taps, self.chroma.roots(features[:, self.config.n_mels :])]

    def attribute_logits(self, audio_embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training-only attribute predictions from the unit-norm audio embedding, split by head.

        The embedding is scaled by sqrt(dim) first so its components are O(1): read from a
        unit vector, a freshly initialised linear head could only give near-zero logits.
        """
        out = self.attributes(audio_embedding * math.sqrt(self.config.embed_dim))
        n_inst, n_genre = len(self.config.instruments), len(self.config.genres)
        heads = {"instruments": out[:, :n_inst], "genre": out[:, n_inst : n_inst + n_genre]}
        for i, name in enumerate(SCALAR_HEADS):
            heads[name] = out[:, n_inst + n_genre + i]
        return heads

    def scale(self) -> torch.Tensor:
        """The contrastive inverse temperature, capped at 100 as in CLIP."""
        return self.logit_scale.clamp(max=math.log(100.0)).exp()
