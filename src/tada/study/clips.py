"""The clips a listening study is made from: items, each an unsteered reference and steered clips of it.

Two layouts are read:

* **item folders**: ``DIR/<item>/reference.wav`` (the unsteered clip) and ``DIR/<item>/<condition>.wav``
  (one steered clip per condition, e.g. per method), with an optional ``DIR/<item>/item.json`` holding
  ``{"change": "toward more piano"}``, the change the conditions were asked to make;
* **a benchmark run** (``tada bench --out DIR``, or its ``audio/`` folder): ``audio/<concept>/baseline/alpha+0.wav``
  is the reference and ``audio/<concept>/<variant>/alpha<a>.wav`` the steered examples. An item is one concept,
  direction and strength: the variants' examples are paired by the rank of ``|alpha|`` within a direction
  (each variant has its own calibrated alphas), and the change is the concept's prompt in that direction.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TadaError

REFERENCE = "reference"
LEVELS = {2: ("mid", "strong")}  # the benchmark saves each direction's middle and last alpha


@dataclass(frozen=True)
class Item:
    """One thing listened to: an unsteered reference and the same music steered under each condition."""

    name: str
    reference: Path
    conditions: dict[str, Path] = field(default_factory=dict)
    change: str = ""  # what the steering was asked to do, in words, for the page's question


def find_items(folder: str | Path) -> list[Item]:
    """The items under ``folder`` in either layout, sorted by name; a folder with none is one clear error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TadaError(f"no folder of clips at {folder}")
    audio = folder / "audio" if (folder / "audio").is_dir() else folder
    if any((audio / c / "baseline").is_dir() for c in _dirs(audio)):
        items = bench_items(audio)
    else:
        items = folder_items(folder)
    if not items:
        raise TadaError(
            f"no study items in {folder}: expected <item>/reference.wav beside <item>/<condition>.wav, "
            "or a `tada bench` run's audio/<concept>/baseline/alpha+0.wav"
        )
    return items


def folder_items(folder: Path) -> list[Item]:
    """Items in the item-folder layout; a folder without ``reference.wav`` or without conditions is refused."""
    items = []
    for sub in _dirs(folder):
        wavs = {p.stem: p for p in sorted(sub.glob("*.wav"))}
        if not wavs:
            continue
        if REFERENCE not in wavs:
            raise TadaError(f"{sub} has clips but no {REFERENCE}.wav (the unsteered clip they are compared with)")
        reference = wavs.pop(REFERENCE)
        if not wavs:
            raise TadaError(f"{sub} has only {REFERENCE}.wav: add a steered clip <condition>.wav beside it")
        change = ""
        meta = sub / "item.json"
        if meta.is_file():
            try:
                change = str(json.loads(meta.read_text(encoding="utf-8")).get("change", ""))
            except (ValueError, AttributeError) as err:
                raise TadaError(f'{meta} is not a JSON object like {{"change": "toward more piano"}}: {err}') from None
        items.append(Item(sub.name, reference, wavs, change))
    return items


def bench_items(audio: Path) -> list[Item]:
    """Items of a benchmark run's example clips: concept x direction x strength, conditions = variants."""
    from ..concepts import CONCEPTS

    items = []
    for concept_dir in _dirs(audio):
        reference = concept_dir / "baseline" / "alpha+0.wav"
        if not reference.is_file():
            continue
        by_level: dict[tuple[str, int], dict[str, Path]] = {}
        counts: dict[str, int] = {}
        for variant_dir in _dirs(concept_dir):
            if variant_dir.name == "baseline":
                continue
            for sign, clips in _by_direction(variant_dir).items():
                counts[sign] = max(counts.get(sign, 0), len(clips))
                for rank, path in enumerate(clips):
                    by_level.setdefault((sign, rank), {})[variant_dir.name] = path
        concept = CONCEPTS.get(concept_dir.name)
        for (sign, rank), conditions in sorted(by_level.items()):
            level = LEVELS.get(counts[sign], tuple(f"level{i}" for i in range(counts[sign])))[rank]
            direction = "up" if sign == "+" else "down"
            change = _change(concept, sign) if concept else ""
            items.append(Item(f"{concept_dir.name}-{direction}-{level}", reference, conditions, change))
    return items


def _by_direction(variant_dir: Path) -> dict[str, list[Path]]:
    """A variant's example clips ``alpha<a>.wav`` split by the sign of alpha, each sorted by ``|alpha|``."""
    out: dict[str, list[tuple[float, Path]]] = {}
    for path in variant_dir.glob("alpha*.wav"):
        try:
            alpha = float(path.stem.removeprefix("alpha"))
        except ValueError:
            continue
        if alpha != 0:
            out.setdefault("+" if alpha > 0 else "-", []).append((abs(alpha), path))
    return {sign: [p for _, p in sorted(clips)] for sign, clips in out.items()}


def _phrase(template: str) -> str:
    """A prompt template's own words: ``"{p}, with piano"`` -> ``"with piano"``."""
    return re.sub(r"\s+", " ", template.replace("{p}", "")).strip(" ,")


def _change(concept, sign: str) -> str:
    positive, negative = _phrase(concept.positive), _phrase(concept.negative)
    if sign == "+":
        return f"toward “{positive}”"
    return f"toward “{negative}”" if negative else f"away from “{positive}”"


def _dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
