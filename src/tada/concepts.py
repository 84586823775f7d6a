"""Concept presets (the nine bipolar concepts of the TADA benchmark) and prompt-pair files.

A concept decorates a neutral base prompt into a positive and a negative prompt; CAA
averages activations over such pairs. The 50 base prompts below avoid every concept's
own words (instruments, vocals, tempo, mood, the four genres) so that the only
difference inside a pair is the concept.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConceptError


@dataclass(frozen=True)
class Concept:
    """A bipolar concept: its positive and negative decorations of a base prompt, the probe text
    that scores it, and the *neutral wrap* activation methods see at evaluation (the reference
    protocol's: a decoration that names the concept's slot, not its value, around the same base
    prompt), whose ``generic_word`` is where the token-embedding baseline adds its direction."""

    name: str
    positive: str = ""
    negative: str = ""
    probe: str = ""
    neutral: str = "{p}"
    generic_word: str = ""

    def __post_init__(self) -> None:
        if self.generic_word and self.generic_word not in self.neutral:
            raise ValueError(f"{self.name}: the generic word {self.generic_word!r} is not in {self.neutral!r}")

    def pair(self, base: str) -> tuple[str, str]:
        return self.positive.format(p=base), self.negative.format(p=base)

    def neutral_prompt(self, base: str) -> str:
        """The base prompt in the concept's neutral wrap ("lofi music, with instrument")."""
        return self.neutral.format(p=base)

    # -- as a steering artifact's record of its concept ------------------------------
    @property
    def has_templates(self) -> bool:
        """Whether the decorations are templates (a concept fitted from bare prompt pairs has none)."""
        return "{p}" in self.positive and "{p}" in self.negative

    def require_templates(self, method: str) -> None:
        if not self.has_templates:
            raise ConceptError(
                f"{method} builds the positive and negative prompts from the one being generated, so it needs "
                "templates: fit it with --concept, or with --positive and --negative such as '{p}, with piano'"
            )

    def base_of(self, prompt: str) -> str:
        """The base prompt inside the neutral wrap ("lofi, with instrument" -> "lofi"); else the prompt itself."""
        head, _, tail = self.neutral.partition("{p}")
        if not head and not tail:
            return prompt
        match = re.fullmatch(re.escape(head) + "(.*)" + re.escape(tail), prompt, flags=re.DOTALL)
        return match.group(1) if match else prompt

    def positive_prompt(self, prompt: str) -> str:
        """The positive decoration of a prompt (of its base, if it is in the neutral wrap)."""
        return self.positive.format(p=self.base_of(prompt))

    def negative_prompt(self, prompt: str) -> str:
        return self.negative.format(p=self.base_of(prompt))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Concept:
        data = json.loads(text) if text else {}
        if not isinstance(data, dict) or not isinstance(data.get("name", ""), str):
            raise ValueError("concept")
        return cls(**{k: str(v) for k, v in data.items() if k in cls.__dataclass_fields__})


def word_spans(text: str, word: str) -> list[tuple[int, int]]:
    """Character spans of every whole-word occurrence of ``word`` in ``text``, ignoring case."""
    pattern = r"(?<!\w)" + re.escape(word.strip()) + r"(?!\w)"
    return [m.span() for m in re.finditer(pattern, text, flags=re.IGNORECASE)] if word.strip() else []


# The reference protocol's neutral wraps (REFERENCE.md, "Concepts and wraps") and their generic words.
INSTRUMENT = ("{p}, with instrument", "instrument")
SONG = ("a song, {p}", "song")
VOCAL = ("{p}, with clean vocal", "vocal")
GUITAR = ("{p}, with a guitar", "guitar")

CONCEPTS: dict[str, Concept] = {
    c.name: c
    for c in (
        Concept("piano", "{p}, with piano", "{p}", "a piano song", *INSTRUMENT),
        Concept("mood", "happy song, {p}", "sad song, {p}", "a cheerful track", *SONG),
        Concept("tempo", "fast song, {p}", "slow song, {p}", "a fast track", *SONG),
        Concept("vocal_gender", "{p}, with female vocal", "{p}, with male vocal", "female vocal singing", *VOCAL),
        Concept("vocal_style", "{p}, with rap vocal", "{p}, with sung vocal", "music with rap vocal", *VOCAL),
        Concept(
            "guitar", "{p}, with acoustic guitar", "{p}, with electric guitar", "a song with acoustic guitar", *GUITAR
        ),
        Concept("violin", "{p}, with violin", "{p}", "a song with violin", *INSTRUMENT),
        Concept("jazz_vs_rock", "jazz song, {p}", "rock song, {p}", "a jazz song", *SONG),
        Concept("classical_vs_electronic", "classical song, {p}", "electronic song, {p}", "a classical song", *SONG),
    )
}

BASE_PROMPTS: tuple[str, ...] = (
    "lofi music",
    "a catchy tune",
    "background music for a video",
    "cinematic soundtrack",
    "ambient soundscape",
    "pop music",
    "folk tune",
    "music for a road trip",
    "a summer anthem",
    "instrumental music",
    "film score for a chase scene",
    "music for a coffee shop",
    "a lullaby",
    "a dance track",
    "soul music",
    "blues music",
    "country music",
    "reggae music",
    "funk groove",
    "a waltz",
    "latin music",
    "music for studying",
    "a march",
    "video game music",
    "a melody in a minor key",
    "a melody in a major key",
    "music for a wedding",
    "a theme for a documentary",
    "a short jingle",
    "music for a workout",
    "a bossa nova tune",
    "indie music",
    "a ballad",
    "gospel music",
    "music for a night drive",
    "a holiday tune",
    "world music",
    "music for meditation",
    "a theme for a cartoon",
    "a sunrise theme",
    "music with a steady groove",
    "music with a simple melody",
    "music with rich harmony",
    "a repetitive hypnotic loop",
    "music for a city walk",
    "music for a rainy day",
    "an opening theme for a show",
    "a tune for a campfire",
    "music for a party",
    "an evening serenade",
)


def get_concept(name: str) -> Concept:
    try:
        return CONCEPTS[name]
    except KeyError:
        raise ConceptError(f"unknown concept {name!r}; choose one of {', '.join(CONCEPTS)}") from None


def concept_pairs(name: str, n_pairs: int | None = None) -> list[tuple[str, str]]:
    """The preset's (positive, negative) prompts over the first ``n_pairs`` base prompts."""
    concept = get_concept(name)
    n = len(BASE_PROMPTS) if n_pairs is None else n_pairs
    if not 1 <= n <= len(BASE_PROMPTS):
        raise ConceptError(f"n_pairs must be between 1 and {len(BASE_PROMPTS)}, got {n}")
    return [concept.pair(base) for base in BASE_PROMPTS[:n]]


def twin_pairs(name: str, n_pairs: int | None = None) -> list[tuple[str, str]]:
    """The preset's (clean, corrupted) twins for activation patching: its (positive, negative) prompts
    where the negative is a word swap ("with acoustic guitar" / "with electric guitar"); where the
    negative is the bare base prompt ("{p}, with piano" / "{p}"), the neutral wrap of the same length
    ("{p}, with piano" / "{p}, with instrument"), so the text inputs line up token for token."""
    concept = get_concept(name)
    pairs = concept_pairs(name, n_pairs)
    if concept.negative.strip() != "{p}":
        return pairs
    return [(positive, concept.neutral_prompt(base)) for (positive, _), base in zip(pairs, BASE_PROMPTS)]


def read_pairs(path: str | Path, n_pairs: int | None = None) -> list[tuple[str, str]]:
    """(positive, negative) rows from a CSV; a header row ``positive,negative`` is optional."""
    path = Path(path)
    rows = [row for _, row in csv_rows(path, "prompt-pair")]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["positive", "negative"]:
        rows = rows[1:]
    pairs = []
    for line, row in enumerate(rows, start=1):
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise ConceptError(f"{path}, pair {line}: expected two non-empty columns (positive, negative), got {row}")
        pairs.append((row[0].strip(), row[1].strip()))
    if not pairs:
        raise ConceptError(f"{path} holds no prompt pairs")
    if n_pairs is None:
        return pairs
    if not 1 <= n_pairs <= len(pairs):
        raise ConceptError(f"n_pairs must be between 1 and {len(pairs)} (the pairs in {path}), got {n_pairs}")
    return pairs[:n_pairs]


def csv_rows(path: str | Path, what: str) -> list[tuple[int, list[str]]]:
    """The rows of a CSV file that hold any text, each with the file line it starts on; a missing or
    unreadable file (not UTF-8, a broken quote) is one :class:`ConceptError` naming it as a ``what`` file."""
    path = Path(path)
    if not path.is_file():
        raise ConceptError(f"no {what} file at {path}")
    rows = []
    try:
        # utf-8-sig: a spreadsheet's byte-order mark must not become part of the header row
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader, line = csv.reader(handle), 1
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append((line, row))
                line = reader.line_num + 1
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConceptError(f"cannot read the {what} file {path} as CSV: {exc}") from None
    return rows
