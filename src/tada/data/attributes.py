"""What a corpus clip is made of: instruments, genres, and the sampled clip specification.

Every attribute the benchmark concepts ask about (piano, violin, acoustic vs electric
guitar, tempo, mode/mood, vocals' gender and style, jazz/rock/classical/electronic) is
sampled here, partly independently of genre, so a model trained on the corpus cannot
learn "piano" from "classical" alone.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any

#: how a twin clip differs from its original (``tada.data.corpus``); records without
#: ``twin_kind`` are mode twins
TWIN_KINDS = ("mode", "gender")

CLIP_SECONDS = 5.0
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Instrument:
    name: str  # label used in labels.jsonl and captions
    program: int  # General MIDI program (0-based); ignored for drums
    roles: tuple[str, ...]  # parts it can play: chords, melody, bass, drums
    low: int = 48  # playable MIDI range for melodies
    high: int = 84
    is_drum: bool = False
    drum_kit: int = 0  # GM drum-kit preset (bank 128) for drums


INSTRUMENTS: dict[str, Instrument] = {
    i.name: i
    for i in (
        Instrument("piano", 0, ("chords", "melody"), 55, 84),
        Instrument("electric piano", 4, ("chords", "melody"), 55, 79),
        Instrument("organ", 16, ("chords",), 48, 79),
        Instrument("acoustic guitar", 25, ("chords", "melody"), 52, 76),
        Instrument("electric guitar", 29, ("chords", "melody"), 52, 79),
        Instrument("bass", 33, ("bass",), 28, 52),
        Instrument("upright bass", 32, ("bass",), 28, 52),
        Instrument("synth bass", 38, ("bass",), 28, 52),
        Instrument("violin", 40, ("melody",), 62, 88),
        Instrument("cello", 42, ("bass", "melody"), 36, 64),
        Instrument("strings", 48, ("chords",), 48, 79),
        Instrument("trumpet", 56, ("melody",), 58, 82),
        Instrument("brass", 61, ("chords",), 48, 72),
        Instrument("saxophone", 65, ("melody",), 52, 77),
        Instrument("clarinet", 71, ("melody",), 55, 82),
        Instrument("flute", 73, ("melody",), 65, 91),
        Instrument("harmonica", 22, ("melody",), 60, 84),
        Instrument("synth lead", 81, ("melody",), 60, 84),
        Instrument("synth pad", 89, ("chords",), 48, 76),
        Instrument("drums", 0, ("drums",), is_drum=True, drum_kit=0),
        Instrument("drum machine", 0, ("drums",), is_drum=True, drum_kit=25),
        Instrument("jazz drums", 0, ("drums",), is_drum=True, drum_kit=32),
    )
}

# The label every drum kit reports: captions and probes speak of "drums".
LABEL_ALIASES = {"drum machine": "drums", "jazz drums": "drums", "upright bass": "bass"}


@dataclass(frozen=True)
class GenreStyle:
    name: str
    bpm: tuple[int, int]
    drums: str | None  # drum instrument, or None for no drums
    bass: tuple[str, ...]
    chords: tuple[str, ...]
    melody: tuple[str, ...]
    rap_share: float = 0.25  # of vocal clips


GENRES: dict[str, GenreStyle] = {
    g.name: g
    for g in (
        GenreStyle(
            "jazz",
            (70, 190),
            "jazz drums",
            ("upright bass",),
            ("piano", "electric piano", "electric guitar"),
            ("saxophone", "trumpet", "piano", "clarinet", "flute"),
        ),
        GenreStyle(
            "rock",
            (80, 180),
            "drums",
            ("bass",),
            ("electric guitar", "electric guitar", "acoustic guitar", "organ", "piano"),
            ("electric guitar", "synth lead", "harmonica"),
        ),
        GenreStyle(
            "classical",
            (60, 150),
            None,
            ("cello",),
            ("strings", "piano", "strings"),
            ("violin", "flute", "clarinet", "piano", "cello"),
        ),
        GenreStyle(
            "electronic",
            (100, 180),
            "drum machine",
            ("synth bass",),
            ("synth pad", "electric piano"),
            ("synth lead", "synth lead", "piano"),
        ),
        GenreStyle(
            "pop",
            (75, 150),
            "drums",
            ("bass", "synth bass"),
            ("piano", "acoustic guitar", "electric piano", "synth pad"),
            ("synth lead", "piano", "electric guitar", "flute"),
        ),
        GenreStyle(
            "hiphop",
            (65, 110),
            "drum machine",
            ("synth bass", "bass"),
            ("electric piano", "piano", "strings"),
            ("synth lead", "flute", "saxophone"),
            rap_share=0.75,
        ),
        GenreStyle(
            "folk",
            (60, 150),
            "drums",
            ("bass", "upright bass"),
            ("acoustic guitar", "acoustic guitar", "piano"),
            ("violin", "harmonica", "flute"),
        ),
        GenreStyle(
            "latin",
            (85, 180),
            "drums",
            ("bass",),
            ("piano", "acoustic guitar", "brass"),
            ("trumpet", "flute", "saxophone"),
        ),
    )
}


@dataclass(frozen=True)
class Part:
    role: str  # chords, melody, bass, drums
    instrument: str


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip; the notes themselves derive from ``seed``."""

    id: str
    seed: int
    genre: str
    bpm: int
    mode: str  # major / minor
    tonic: int  # pitch class of the key, 0 = C
    parts: tuple[Part, ...]
    vocals: dict[str, str] | None = None  # {"gender": ..., "style": ...}
    seconds: float = CLIP_SECONDS
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def instruments(self) -> list[str]:
        """Labelled instruments, each once, in part order."""
        names: list[str] = []
        for part in self.parts:
            name = LABEL_ALIASES.get(part.instrument, part.instrument)
            if name not in names:
                names.append(name)
        return names

    def with_instrument(self, old: str, new: str) -> ClipSpec:
        """The same piece with one instrument swapped (same notes, other timbre)."""
        if new not in INSTRUMENTS:
            raise KeyError(new)
        parts = tuple(replace(p, instrument=new) if p.instrument == old else p for p in self.parts)
        return replace(self, parts=parts)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["parts"] = [asdict(p) for p in self.parts]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClipSpec:
        data = dict(data)
        data["parts"] = tuple(Part(**p) for p in data["parts"])
        return cls(**data)


def _pick(rng: random.Random, options: tuple[str, ...]) -> str:
    return options[rng.randrange(len(options))]


def sample_spec(seed: int, clip_id: str | None = None) -> ClipSpec:
    """Sample a clip's attributes from its seed alone (same seed, same clip)."""
    rng = random.Random(seed)
    genre = GENRES[_pick(rng, tuple(GENRES))]
    # Tempo: mostly the genre's range, sometimes anywhere, so fast/slow is not genre.
    low, high = genre.bpm if rng.random() < 0.75 else (60, 180)
    bpm = rng.randint(low, high)
    mode = "major" if rng.random() < 0.5 else "minor"
    parts: list[Part] = []
    if genre.drums and rng.random() < 0.9:
        parts.append(Part("drums", genre.drums))
    if rng.random() < 0.9:
        parts.append(Part("bass", _pick(rng, genre.bass)))
    chords = _pick(rng, genre.chords)
    roll = rng.random()
    if roll < 0.2:
        chords = "piano"  # decorrelate piano, violin and guitars from genre
    elif roll < 0.3:
        chords = "acoustic guitar"
    elif roll < 0.4:
        chords = "electric guitar"
    parts.append(Part("chords", chords))
    vocals = None
    if rng.random() < 0.55:
        style = "rap" if rng.random() < genre.rap_share else "sung"
        vocals = {"gender": "female" if rng.random() < 0.5 else "male", "style": style}
    if vocals is None or rng.random() < 0.5:
        melody = _pick(rng, genre.melody)
        roll = rng.random()
        if roll < 0.2:
            melody = "violin"
        elif roll < 0.3:
            melody = "piano"
        if melody != chords:
            parts.append(Part("melody", melody))
    return ClipSpec(
        id=clip_id or f"clip-{seed}",
        seed=seed,
        genre=genre.name,
        bpm=bpm,
        mode=mode,
        tonic=rng.randrange(12),
        parts=tuple(parts),
        vocals=vocals,
    )
