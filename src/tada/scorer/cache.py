"""Per-corpus caches of log-mels and caption embeddings, so training epochs skip audio decoding and MiniLM.

Both are ``safetensors`` files in the training output directory, stamped with a
fingerprint of ``labels.jsonl`` and the feature settings; a stale cache (other corpus,
other settings) is rebuilt rather than used. Mels are stored as float16 (log values,
~1e-3 relative error) to halve the size; clips are cropped to the corpus's shortest clip.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from . import features
from .labels import LABELS, Clip
from .text import SentenceEncoder

MELS = "mels.safetensors"
TEXT = "captions.safetensors"


@dataclass
class CorpusCache:
    mels: torch.Tensor  # (clips, n_mels, time) float16
    caption_index: torch.Tensor  # (clips,) int64 rows of ``captions``
    captions: torch.Tensor  # (unique captions, 384) MiniLM sentence embeddings


def fingerprint(corpus: str | Path) -> str:
    """Hash of the label file and the feature settings that the cached tensors depend on."""
    digest = hashlib.sha256((Path(corpus) / LABELS).read_bytes())
    settings = (features.SAMPLE_RATE, features.N_FFT, features.HOP, features.N_MELS, features.F_MIN, features.F_MAX)
    digest.update(json.dumps(settings).encode())
    return digest.hexdigest()[:16]


def _stamp(path: Path) -> str | None:
    try:
        with safe_open(str(path), "pt") as handle:
            return (handle.metadata() or {}).get("fingerprint")
    except (SafetensorError, OSError):
        return None


def _save(path: Path, tensors: dict[str, torch.Tensor], stamp: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"fingerprint": stamp})
    os.replace(tmp, path)


def _extract_mels(clips: list[Clip], progress: bool) -> torch.Tensor:
    mels = [features.file_features(clip.path).half() for clip in tqdm(clips, desc="mel features", disable=not progress)]
    frames = min(m.shape[-1] for m in mels)
    return torch.stack([m[..., :frames] for m in mels])


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
    mel_path, text_path = directory / MELS, directory / TEXT
    if _stamp(mel_path) != stamp:
        _save(mel_path, {"mels": _extract_mels(clips, progress)}, stamp)
    if _stamp(text_path) != stamp:
        index, captions = _embed_captions(clips)
        _save(text_path, {"caption_index": index, "captions": captions}, stamp)
    text = load_file(str(text_path))
    return CorpusCache(load_file(str(mel_path))["mels"], text["caption_index"], text["captions"])
