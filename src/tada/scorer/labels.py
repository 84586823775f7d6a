"""A corpus's ``labels.jsonl`` read into clip records and per-clip training targets.

The label vocabularies (instruments, genres) come from the corpus itself, sorted, so the
attribute heads follow whatever the generator produces; they are stored in the model
config, so a trained scorer knows which output is which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import TadaError

LABELS = "labels.jsonl"
_REQUIRED = ("id", "path", "caption", "bpm", "mode", "genre", "instruments", "vocals", "seed")


@dataclass(frozen=True)
class Clip:
    id: str
    path: Path
    caption: str
    bpm: int
    mode: str
    genre: str
    instruments: tuple[str, ...]
    vocals: dict[str, str] | None
    seed: int

    @classmethod
    def from_json(cls, data: dict[str, Any], root: Path) -> Clip:
        return cls(
            id=str(data["id"]),
            path=root / data["path"],
            caption=str(data["caption"]),
            bpm=int(data["bpm"]),
            mode=str(data["mode"]),
            genre=str(data["genre"]),
            instruments=tuple(data["instruments"]),
            vocals=data["vocals"],
            seed=int(data["seed"]),
        )


def read_labels(corpus: str | Path) -> list[Clip]:
    """Every clip of a corpus directory, in file order; malformed lines are refused with their line number."""
    root = Path(corpus)
    path = root / LABELS
    if not path.is_file():
        raise TadaError(f"{root} is not a corpus: {LABELS} is missing (make one with `tada data make`)")
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:  # a binary or unreadable file: one line, not a traceback
        raise TadaError(f"cannot read {path} as UTF-8 text ({exc})") from None
    clips = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            missing = [key for key in _REQUIRED if key not in data]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
            clips.append(Clip.from_json(data, root))
        except (ValueError, TypeError) as exc:
            raise TadaError(f"{path}:{number} is not a valid label line ({exc})") from None
    if not clips:
        raise TadaError(f"{path} lists no clips")
    return clips


def vocabularies(clips: list[Clip]) -> tuple[list[str], list[str]]:
    """Sorted instrument and genre names present in the corpus."""
    instruments = sorted({name for clip in clips for name in clip.instruments})
    genres = sorted({clip.genre for clip in clips})
    return instruments, genres


def targets(clips: list[Clip], instruments: list[str], genres: list[str]) -> dict[str, torch.Tensor]:
    """Per-clip attribute targets; vocal gender/style are -1 where a clip has no vocals (masked in the loss)."""
    inst_index = {name: i for i, name in enumerate(instruments)}
    multi_hot = torch.zeros(len(clips), len(instruments))
    for row, clip in enumerate(clips):
        for name in clip.instruments:
            multi_hot[row, inst_index[name]] = 1.0
    vocals = [clip.vocals or {} for clip in clips]
    return {
        "instruments": multi_hot,
        "genre": torch.tensor([genres.index(clip.genre) for clip in clips]),
        "mode_major": torch.tensor([float(clip.mode == "major") for clip in clips]),
        "has_vocals": torch.tensor([float(bool(v)) for v in vocals]),
        "vocal_female": torch.tensor([float(v["gender"] == "female") if v else -1.0 for v in vocals]),
        "vocal_rap": torch.tensor([float(v["style"] == "rap") if v else -1.0 for v in vocals]),
        "bpm": torch.tensor([float(clip.bpm) for clip in clips]),
    }
