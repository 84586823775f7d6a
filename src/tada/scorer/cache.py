"""Per-corpus caches of clip features and caption embeddings, so epochs skip audio decoding and MiniLM.

Both are ``safetensors`` files in the training output directory, stamped with a
fingerprint of ``labels.jsonl`` and the feature settings; a stale cache (other corpus,
other settings) is rebuilt rather than used. Features are stored as float16 (log-mels
and [0, 1] chroma, ~1e-3 relative error) to halve the size; clips are cropped to the
corpus's shortest clip.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..training.files import read_stamp, save_stamped
from ..training.parallel import map_files
from . import features
from .labels import LABELS, Clip
from .text import SentenceEncoder

FEATURES = "features.safetensors"
TEXT = "captions.safetensors"


@dataclass
class CorpusCache:
    features: torch.Tensor  # (clips, N_FEATURES, time) float16
    caption_index: torch.Tensor  # (clips,) int64 rows of ``captions``
    captions: torch.Tensor  # (unique captions, 384) MiniLM sentence embeddings


def fingerprint(corpus: str | Path) -> str:
    """Hash of the label file and the feature settings that the cached tensors depend on."""
    digest = hashlib.sha256((Path(corpus) / LABELS).read_bytes())
    settings = (
        features.SAMPLE_RATE,
        features.N_FFT,
        features.HOP,
        features.N_MELS,
        features.F_MIN,
        features.F_MAX,
        features.CQT_FMIN,
        features.CQT_OCTAVES,
        features.CQT_BINS_PER_SEMITONE,
        features.CHROMA_FLOOR,
    )
    digest.update(json.dumps(settings).encode())
    return digest.hexdigest()[:16]


def _clip_features(path: str) -> torch.Tensor:
    return features.file_features(path).half()


def _extract_features(clips: list[Clip], progress: bool) -> torch.Tensor:
    """Every clip's features, in order, on all cores (the constant-Q chroma is the slow part)."""
    feats = map_files(_clip_features, [str(c.path) for c in clips], "clip features", progress)
    frames = min(f.shape[-1] for f in feats)
    return torch.stack([f[..., :frames] for f in feats])


def _embed_captions(clips: list[Clip]) -> tuple[torch.Tensor, torch.Tensor]:
    unique = list(dict.fromkeys(clip.caption for clip in clips))
    row = {caption: i for i, caption in enumerate(unique)}
    index = torch.tensor([row[clip.caption] for clip in clips], dtype=torch.int64)
    return index, SentenceEncoder().encode(unique)


def load_or_build(corpus: str | Path, clips: list[Clip], directory: str | Path, progress: bool = True) -> CorpusCache:
    """The corpus's cached tensors, computed now where missing or stale."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = fingerprint(corpus)
    feature_path, text_path = directory / FEATURES, directory / TEXT
    if read_stamp(feature_path) != stamp:
        save_stamped(feature_path, {"features": _extract_features(clips, progress)}, stamp)
    if read_stamp(text_path) != stamp:
        index, captions = _embed_captions(clips)
        save_stamped(text_path, {"caption_index": index, "captions": captions}, stamp)
    text = load_file(str(text_path))
    return CorpusCache(load_file(str(feature_path))["features"], text["caption_index"], text["captions"])
