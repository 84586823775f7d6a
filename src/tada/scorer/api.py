"""The offline scorer: text-audio alignment and perceptual preservation distance.

``similarity`` is the cosine between a clip's and a text's shared-space embeddings
(CLAP-style alignment to a probe such as "a piano song"). ``preservation_distance`` is
the LPAPS idea: each mel conv block's activations (and the chroma filters') are
unit-normalised over channels at every (frequency, time) position, and the squared
difference between two clips is averaged over channels, frequency and time, then summed
over layers; 0 for identical clips, symmetric.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import TadaError
from ..fingerprint import weights_fingerprint
from . import features
from .model import TextAudioScorer
from .text import SentenceEncoder

WEIGHTS = Path(__file__).parent / "weights"
BATCH = 32

Audio = np.ndarray | torch.Tensor


def _clips(audio: Audio | Sequence[Audio]) -> list[Audio]:
    """One clip ((frames,) or (channels, frames)), a list of clips, or a (batch, channels, frames) array."""
    if isinstance(audio, (list, tuple)):
        if not audio:
            raise TadaError("no audio clips given")
        return list(audio)
    if getattr(audio, "ndim", None) == 3:
        return list(audio)
    return [audio]


class Scorer:
    def __init__(self, model: TextAudioScorer, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self._encoder: SentenceEncoder | None = None

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu") -> Scorer:
        """A scorer from a ``save_pretrained`` directory (default: the weights shipped in the package)."""
        directory = Path(path) if path is not None else WEIGHTS
        if not (directory / "config.json").is_file():
            hint = " (train one with `tada scorer train`, then pass --weights OUT/model)" if path is None else ""
            raise TadaError(f"no scorer weights in {directory}{hint}")
        try:
            model = TextAudioScorer.from_pretrained(str(directory))
        except (OSError, ValueError, RuntimeError) as exc:
            raise TadaError(f"cannot load scorer weights from {directory}: {exc}") from None
        return cls(model, device)

    @property
    def fingerprint(self) -> str:
        """A short hash of the weights: which scorer made a set of scores (a resumed job checks it)."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = weights_fingerprint(self.model)
        return self._fingerprint

    @property
    def encoder(self) -> SentenceEncoder:
        if self._encoder is None:
            self._encoder = SentenceEncoder()
        return self._encoder

    def _features(self, clip: Audio, sr: int) -> torch.Tensor:
        return features.clip_features(features.to_mono_16k(clip, sr)).to(self.device)

    def clip_features(self, audio: Audio | Sequence[Audio], sr: int) -> list[torch.Tensor]:
        """What the model reads of each clip, ``(N_FEATURES, time)``; clips of one length share one
        batched transform (the constant-Q filter bank is built once per batch, not once per clip)."""
        waves = [features.to_mono_16k(clip, sr) for clip in _clips(audio)]
        out: list[torch.Tensor] = [torch.empty(0)] * len(waves)
        for length in dict.fromkeys(w.shape[-1] for w in waves):
            rows = [i for i, w in enumerate(waves) if w.shape[-1] == length]
            for start in range(0, len(rows), BATCH):
                chunk = rows[start : start + BATCH]
                feats = features.clip_features(torch.stack([waves[i] for i in chunk])).to(self.device)
                for j, i in enumerate(chunk):
                    out[i] = feats[j]
        return out

    @torch.no_grad()
    def embed_features(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Unit-norm embeddings ``(clips, dim)`` of :meth:`clip_features`; equal lengths run together."""
        out = torch.empty(len(feats), self.model.config.embed_dim, device=self.device)
        for frames in {f.shape[-1] for f in feats}:
            same = [i for i, f in enumerate(feats) if f.shape[-1] == frames]
            for start in range(0, len(same), BATCH):
                rows = same[start : start + BATCH]
                out[rows] = self.model.audio_embedding(torch.stack([feats[i] for i in rows]))
        return out.cpu()

    def embed_audio(self, audio: Audio | Sequence[Audio], sr: int) -> torch.Tensor:
        """Unit-norm embeddings ``(clips, dim)``."""
        return self.embed_features(self.clip_features(audio, sr))

    @torch.no_grad()
    def embed_text(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Unit-norm embeddings ``(texts, dim)``; sentence embeddings of repeated texts come from a cache."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise TadaError("no text given")
        sentences = self.encoder.encode(texts).to(self.device)
        return self.model.text_embedding(sentences).cpu()

    def similarity(self, audio: Audio | Sequence[Audio], sr: int, texts: str | Sequence[str]) -> torch.Tensor:
        """Cosine similarity ``(clips, texts)``, in [-1, 1]."""
        return self.embed_audio(audio, sr) @ self.embed_text(texts).T

    def preservation_distance(self, a: Audio, b: Audio, sr: int) -> float:
        """LPAPS-like distance between two clips; the longer one is cropped to the shorter's length."""
        feat_a, feat_b = self.clip_features([a, b], sr)
        return self.feature_distance(feat_a, feat_b)

    @torch.no_grad()
    def feature_distance(self, feat_a: torch.Tensor, feat_b: torch.Tensor) -> float:
        """The preservation distance of two clips' :meth:`clip_features` (so a clip compared with many
        others is transformed once)."""
        frames = min(feat_a.shape[-1], feat_b.shape[-1])
        layers_a = self.model.layer_features(feat_a[None, :, :frames])
        layers_b = self.model.layer_features(feat_b[None, :, :frames])
        total = 0.0
        for fa, fb in zip(layers_a, layers_b):
            diff = F.normalize(fa, dim=1, eps=1e-8) - F.normalize(fb, dim=1, eps=1e-8)
            total += float(diff.square().mean())
        return total

    # -- files ----------------------------------------------------------------------
    def embed_files(self, paths: Sequence[str | Path]) -> torch.Tensor:
        """Audio embeddings of sound files, ``(files, dim)``."""
        return self.embed_audio([features.load_16k(p) for p in paths], features.SAMPLE_RATE)

    def similarity_files(self, paths: Sequence[str | Path], texts: str | Sequence[str]) -> torch.Tensor:
        """Cosine similarity ``(files, texts)``."""
        return self.embed_files(paths) @ self.embed_text(texts).T

    def preservation_distance_files(self, a: str | Path, b: str | Path) -> float:
        """Preservation distance between two sound files, resampled to 16 kHz as needed."""
        return self.preservation_distance(features.load_16k(a), features.load_16k(b), features.SAMPLE_RATE)
