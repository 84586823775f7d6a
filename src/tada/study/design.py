"""A listening study's design: the trials it holds and the blind, randomised plan each rater gets.

Three kinds of trial, all on one item (a reference and its steered clips):

* ``ab``: two conditions side by side, "which clip makes the change better, keeping the rest of the music?";
* ``mushra``: up to ``mushra_size`` conditions plus the hidden reference and the anchor (the reference low-passed
  at 3.5 kHz, as ITU-R BS.1534 prescribes), each rated 0-100 for audio quality against the named reference;
* ``check``: an attention check shaped like an ``ab`` trial, a steered clip against the anchor: an attentive
  rater never prefers the anchor, which neither makes the change nor keeps the quality.

Every rater gets an A/B block then a MUSHRA block. Which trials a rater gets rotates through the study's
shuffled trial lists by the rater's ordinal, so raters together cover every trial evenly; the order of trials,
the A/B sides and the order of stimuli on a MUSHRA page are drawn per rater from the study's seed and the
ordinal, so a plan can always be rebuilt, and a rater who comes back continues the same plan.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from ..errors import TadaError

FORMAT, VERSION = "tada/study", 1
HIDDEN_REFERENCE, ANCHOR = "hidden-reference", "anchor"
KINDS = ("ab", "check", "mushra")


@dataclass(frozen=True)
class StudySettings:
    seed: int = 0
    ab_trials: int = 0  # A/B trials per rater; 0: every pair
    mushra_pages: int = 0  # MUSHRA pages per rater; 0: every page
    mushra_size: int = 6  # conditions per MUSHRA page, besides the hidden reference and the anchor
    checks: int = 2  # attention checks per rater
    require_listening: bool = True  # every clip on a page must be played before the answer is taken
    loudness_db: float = -20.0  # every clip of an item is brought to one RMS level (dBFS), peaks kept below 0 dBFS
    anchor_hz: float = 3500.0


@dataclass(frozen=True)
class StudyItem:
    name: str
    change: str
    reference: str  # clip token
    anchor: str
    conditions: dict[str, str] = field(default_factory=dict)  # condition -> clip token

    def clip(self, condition: str) -> str:
        if condition == HIDDEN_REFERENCE:
            return self.reference
        if condition == ANCHOR:
            return self.anchor
        return self.conditions[condition]


@dataclass(frozen=True)
class Trial:
    """One page as one rater sees it: ``stimuli`` are condition names in the order shown (A then B)."""

    kind: str
    item: str
    stimuli: tuple[str, ...]


class Study:
    """A study folder: ``study.json`` (design and clips), ``clips/`` (anonymous WAVs), ``answers.sqlite``."""

    def __init__(self, folder: Path, settings: StudySettings, items: list[StudyItem], clips: dict[str, Any]):
        self.folder, self.settings, self.clips = Path(folder), settings, clips
        self.items = {item.name: item for item in items}
        self.pairs, self.pages, self.check_trials = self._trials()

    # ------------------------------------------------------------------ files
    @classmethod
    def load(cls, folder: str | Path) -> Study:
        folder = Path(folder)
        path = folder / "study.json"
        if not path.is_file():
            raise TadaError(f"{folder} is not a study (no study.json): make one with `tada study make`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise TadaError(f"{path} is not valid JSON: {err}") from None
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise TadaError(f"{path} is not a {FORMAT} v{VERSION} file")
        items = [StudyItem(**item) for item in data["items"]]
        return cls(folder, StudySettings(**data["settings"]), items, data["clips"])

    def to_json(self) -> str:
        data = {
            "format": FORMAT,
            "version": VERSION,
            "settings": asdict(self.settings),
            "items": [asdict(item) for item in self.items.values()],
            "clips": self.clips,
        }
        return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"

    def clip_path(self, token: str) -> Path:
        return self.folder / "clips" / f"{token}.wav"

    @property
    def answers_path(self) -> Path:
        return self.folder / "answers.sqlite"

    # ------------------------------------------------------------------ design
    def _trials(self) -> tuple[list[tuple], list[tuple], list[tuple]]:
        rng = random.Random(f"{self.settings.seed}:trials")
        pairs, pages, checks = [], [], []
        for item in self.items.values():
            conditions = sorted(item.conditions)
            pairs += [(item.name, a, b) for a, b in combinations(conditions, 2)]
            shuffled = conditions[:]
            rng.shuffle(shuffled)
            n_pages = -(-len(shuffled) // self.settings.mushra_size)
            pages += [(item.name, tuple(sorted(shuffled[i::n_pages]))) for i in range(n_pages)]
            checks += [(item.name, c) for c in conditions]
        rng.shuffle(pairs)
        rng.shuffle(pages)
        rng.shuffle(checks)
        return pairs, pages, checks

    def plan(self, ordinal: int) -> list[Trial]:
        """The trials rater number ``ordinal`` (0, 1, ...) gets, in order, sides and stimuli as shown."""
        s = self.settings
        rng = random.Random(f"{s.seed}:rater:{ordinal}")
        ab = [Trial("ab", item, _sides(rng, a, b)) for item, a, b in _rotate(self.pairs, s.ab_trials, ordinal)]
        rng.shuffle(ab)
        checks = rng.sample(self.check_trials, min(s.checks, len(self.check_trials)))
        for item, condition in checks:  # never first: the first page is where a rater learns the task
            ab.insert(rng.randint(1, len(ab)) if ab else 0, Trial("check", item, _sides(rng, condition, ANCHOR)))
        mushra = []
        for item, conditions in _rotate(self.pages, s.mushra_pages, ordinal):
            stimuli = [*conditions, HIDDEN_REFERENCE, ANCHOR]
            rng.shuffle(stimuli)
            mushra.append(Trial("mushra", item, tuple(stimuli)))
        rng.shuffle(mushra)
        return ab + mushra


def _rotate(trials: list, per_rater: int, ordinal: int) -> list:
    """``per_rater`` trials (all when 0 or more than there are), rater k starting where rater k-1 stopped."""
    n = len(trials)
    if not per_rater or per_rater >= n:
        return list(trials)
    start = ordinal * per_rater % n
    return [trials[(start + i) % n] for i in range(per_rater)]


def _sides(rng: random.Random, a: str, b: str) -> tuple[str, str]:
    return (a, b) if rng.random() < 0.5 else (b, a)


def clip_token(seed: int, item: str, role: str) -> str:
    """An opaque, reproducible clip name: the page's URLs say nothing about the condition."""
    return hashlib.sha256(f"tada-study:{seed}:{item}:{role}".encode()).hexdigest()[:16]


def study_settings_check(settings: StudySettings) -> None:
    from .. import validate

    validate.integer("--ab-trials", settings.ab_trials, 0, 100_000, "A/B trials per rater; 0: every pair")
    validate.integer("--mushra-pages", settings.mushra_pages, 0, 100_000, "MUSHRA pages per rater; 0: every page")
    validate.integer("--mushra-size", settings.mushra_size, 1, 12, "conditions per MUSHRA page")
    validate.integer("--checks", settings.checks, 0, 100, "attention checks per rater")
    validate.finite("--loudness-db", settings.loudness_db, -60.0, -3.0, "an RMS level in dBFS")


__all__ = ["ANCHOR", "HIDDEN_REFERENCE", "Study", "StudyItem", "StudySettings", "Trial", "clip_token"]
