"""Procedural composition: a clip specification becomes timed notes per part.

Each part draws from its own random stream seeded by (clip seed, role), so swapping one
part's instrument, or adding a part, leaves every other part's notes unchanged; that is
what lets the preservation test re-render "the same piece with one instrument swapped".
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .attributes import INSTRUMENTS, ClipSpec

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# Every progression opens on the tonic and uses only the degrees whose triads have the
# mode's own quality (I, IV, V major; i, iv, v minor in natural minor), so a 5-second
# clip of one to three bars still makes its mode audible in every chord.
PROGRESSIONS = {
    "major": ((0, 3, 4, 0), (0, 4, 3, 0), (0, 3, 0, 4), (0, 0, 4, 3)),
    "minor": ((0, 3, 4, 0), (0, 4, 3, 0), (0, 3, 0, 4), (0, 0, 4, 3)),
}
CHORD_STYLE = {
    "jazz": "comp",
    "rock": "eighths",
    "classical": "arpeggio",
    "electronic": "sustain",
    "pop": "quarters",
    "hiphop": "halves",
    "folk": "strum",
    "latin": "montuno",
}
BASS_STYLE = {
    "jazz": "walking",
    "rock": "eighths",
    "classical": "halves",
    "electronic": "offbeat",
    "pop": "eighths",
    "hiphop": "hiphop",
    "folk": "root_fifth",
    "latin": "tumbao",
}

# Drum patterns on a 16-step bar: (GM drum pitch, steps, velocity).
KICK, SNARE, RIM, CLAP, HAT, PEDAL, OPEN, RIDE, CRASH = 36, 38, 37, 39, 42, 44, 46, 51, 49
BONGO_HI, CONGA_MUTE, CONGA_OPEN, CONGA_LOW, MARACAS, CLAVES = 60, 62, 63, 64, 70, 75
DRUMS = {
    "rock": ((KICK, (0, 8, 10), 110), (SNARE, (4, 12), 105), (HAT, (0, 2, 4, 6, 8, 10, 12, 14), 80)),
    "pop": ((KICK, (0, 6, 8), 105), (SNARE, (4, 12), 95), (HAT, (0, 2, 4, 6, 8, 10, 12, 14), 70)),
    "jazz": ((RIDE, (0, 4, 6, 8, 12, 14), 75), (PEDAL, (4, 12), 60), (KICK, (0,), 55), (SNARE, (7, 14), 40)),
    "electronic": (
        (KICK, (0, 4, 8, 12), 120),
        (CLAP, (4, 12), 100),
        (OPEN, (2, 6, 10, 14), 75),
        (HAT, tuple(range(16)), 55),
    ),
    "hiphop": ((KICK, (0, 7, 10), 115), (SNARE, (4, 12), 110), (HAT, (0, 2, 4, 6, 8, 10, 12, 14), 65)),
    "folk": ((KICK, (0, 8), 80), (RIM, (4, 12), 70), (MARACAS, (0, 2, 4, 6, 8, 10, 12, 14), 60)),
    "latin": (
        (KICK, (0, 6, 8), 90),
        (CLAVES, (0, 3, 6, 10, 12), 85),
        (CONGA_MUTE, (2, 10), 80),
        (CONGA_OPEN, (6, 7, 14, 15), 90),
        (BONGO_HI, (4, 12), 70),
        (MARACAS, tuple(range(16)), 50),
    ),
    "classical": (),
}
SWING = {"jazz": 1 / 3, "hiphop": 1 / 6}  # offbeat eighths delayed by this share of a beat


@dataclass(frozen=True)
class Note:
    part: int  # index into spec.parts
    pitch: int
    start: float
    end: float
    velocity: int


@dataclass(frozen=True)
class VocalNote:
    """One sung or rapped syllable-word: where it starts, how long, which pitch."""

    word: str
    start: float
    duration: float
    pitch: int


class Grid:
    """Musical time for one clip: beats, bars, swing."""

    def __init__(self, spec: ClipSpec):
        self.beat = 60.0 / spec.bpm
        self.bar = 4 * self.beat
        self.n_bars = math.ceil(spec.seconds / self.bar)
        self.swing = SWING.get(spec.genre, 0.0)
        self.seconds = spec.seconds

    def at(self, bar: int, step16: float) -> float:
        """Time of a 16th-note step in a bar, with swung off-beat eighths."""
        beat, within = divmod(step16, 4)
        if self.swing and within == 2:
            within = 2 + 4 * self.swing
        return bar * self.bar + (beat + within / 4) * self.beat


def chord_pitches(spec: ClipSpec, degree: int, base: int = 48, ninths: bool = False) -> list[int]:
    """The triad on a scale degree (plus its ninth for jazz colour). Not sevenths: a major
    seventh chord contains a minor triad (C-E-G-B holds E-G-B) and a minor seventh a major
    one, which blurs the mode; an added ninth keeps the chord's quality unambiguous."""
    scale = SCALES[spec.mode]
    tones = [0, 2, 4, 8] if ninths else [0, 2, 4]
    out = []
    for t in tones:
        d = degree + t
        out.append(base + spec.tonic + scale[d % 7] + 12 * (d // 7))
    return out


def _fit(pitch: int, low: int, high: int) -> int:
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


def _chords(spec: ClipSpec, idx: int, grid: Grid, prog: tuple[int, ...], rng: random.Random) -> list[Note]:
    inst = INSTRUMENTS[spec.parts[idx].instrument]
    style = CHORD_STYLE[spec.genre]
    notes: list[Note] = []
    for bar in range(grid.n_bars):
        pitches = chord_pitches(spec, prog[bar % len(prog)], ninths=spec.genre == "jazz")
        pitches = [_fit(p, max(inst.low, 48), max(inst.low + 24, 72)) for p in pitches]
        if style == "eighths":
            # Full triads, not power chords: a root-fifth chord has no third and so no mode.
            hits = [(s, 2, (*pitches, pitches[0] + 12)) for s in range(0, 16, 2)]
        elif style == "comp":
            steps = sorted(rng.sample([0, 2, 3, 6, 7, 10, 11, 14], 3))
            hits = [(s, 2, pitches) for s in steps]
        elif style == "arpeggio":
            cycle = pitches + [pitches[0] + 12]
            hits = [(s, 2, (cycle[(s // 2) % len(cycle)],)) for s in range(0, 16, 2)]
        elif style == "sustain":
            hits = [(0, 16, pitches)]
        elif style == "halves":
            hits = [(0, 8, pitches), (8, 8, pitches)]
        elif style == "montuno":
            hits = [(s, 1.5, pitches) for s in (0, 3, 6, 8, 11, 14)]
        else:  # quarters, strum
            hits = [(s, 4, pitches) for s in range(0, 16, 4)]
        for step, length, chord in hits:
            start = grid.at(bar, step)
            for k, pitch in enumerate(chord):
                offset = 0.012 * k if style == "strum" else 0.0
                vel = 70 + rng.randrange(20) - (10 if step % 4 else 0)
                notes.append(Note(idx, pitch, start + offset, start + length * grid.beat / 4 * 0.95, vel))
    return notes


def _bass(spec: ClipSpec, idx: int, grid: Grid, prog: tuple[int, ...], rng: random.Random) -> list[Note]:
    inst = INSTRUMENTS[spec.parts[idx].instrument]
    style = BASS_STYLE[spec.genre]
    scale = SCALES[spec.mode]
    notes: list[Note] = []
    for bar in range(grid.n_bars):
        chord = chord_pitches(spec, prog[bar % len(prog)], base=36)
        root, fifth = _fit(chord[0], inst.low, inst.low + 14), _fit(chord[2], inst.low, inst.low + 19)
        if style == "walking":
            walk = [
                root,
                _fit(chord[1], inst.low, inst.low + 16),
                fifth,
                _fit(root + scale[rng.randrange(7)], inst.low, inst.low + 19),
            ]
            hits = [(s, 4, walk[s // 4]) for s in range(0, 16, 4)]
        elif style == "eighths":
            hits = [(s, 2, root) for s in range(0, 16, 2)]
        elif style == "offbeat":
            hits = [(s, 2, root) for s in (2, 6, 10, 14)]
        elif style == "halves":
            hits = [(0, 8, root), (8, 8, fifth)]
        elif style == "hiphop":
            hits = [(0, 6, root), (7, 3, root), (10, 4, fifth)]
        elif style == "root_fifth":
            hits = [(0, 4, root), (8, 4, fifth)]
        else:  # tumbao
            hits = [(6, 2, fifth), (12, 4, root)]
        for step, length, pitch in hits:
            start = grid.at(bar, step)
            notes.append(Note(idx, pitch, start, start + length * grid.beat / 4 * 0.9, 90 + rng.randrange(15)))
    return notes


def melody_line(
    spec: ClipSpec, grid: Grid, prog: tuple[int, ...], rng: random.Random, low: int, high: int
) -> list[tuple[float, float, int]]:
    """(start, duration, pitch) of a scale-wise melody that lands on chord tones on strong beats."""
    scale = SCALES[spec.mode]
    fast = spec.bpm >= 120
    lengths = (4, 4, 8, 2) if fast else (2, 2, 4, 4, 1, 8)
    degree = rng.randrange(7) + 7
    line: list[tuple[float, float, int]] = []
    for bar in range(grid.n_bars):
        step = 0
        chord_degree = prog[bar % len(prog)]
        while step < 16:
            length = min(rng.choice(lengths), 16 - step)
            if step % 8 == 0:  # strong beat: nearest chord tone
                options = [chord_degree + t + 7 * o for t in (0, 2, 4) for o in (0, 1, 2)]
                degree = min(options, key=lambda d: abs(d - degree))
            else:
                degree += rng.choice((-2, -1, -1, 1, 1, 2))
            pitch = 60 + spec.tonic + scale[degree % 7] + 12 * (degree // 7 - 1)
            if rng.random() > 0.12:  # a few rests
                line.append((grid.at(bar, step), length * grid.beat / 4, _fit(pitch, low, high)))
            step += length
    return line


def _melody(spec: ClipSpec, idx: int, grid: Grid, prog: tuple[int, ...], rng: random.Random) -> list[Note]:
    inst = INSTRUMENTS[spec.parts[idx].instrument]
    return [
        Note(idx, pitch, start, start + dur * 0.92, 85 + rng.randrange(20))
        for start, dur, pitch in melody_line(spec, grid, prog, rng, inst.low, inst.high)
    ]


def _drums(spec: ClipSpec, idx: int, grid: Grid, prog: tuple[int, ...], rng: random.Random) -> list[Note]:
    notes: list[Note] = []
    for bar in range(grid.n_bars):
        for pitch, steps, velocity in DRUMS[spec.genre]:
            for step in steps:
                start = grid.at(bar, step)
                notes.append(Note(idx, pitch, start, start + 0.1, max(1, min(127, velocity + rng.randrange(-8, 9)))))
        if bar == 0 and spec.genre in ("rock", "pop", "latin"):
            notes.append(Note(idx, CRASH, 0.0, 0.5, 90))
    return notes


ROLE_WRITERS = {"chords": _chords, "bass": _bass, "melody": _melody, "drums": _drums}


def progression(spec: ClipSpec) -> tuple[int, ...]:
    options = PROGRESSIONS[spec.mode]
    return options[random.Random(f"{spec.seed}-progression").randrange(len(options))]


def compose(spec: ClipSpec) -> list[Note]:
    """All instrument notes of a clip, clipped to its length."""
    grid = Grid(spec)
    prog = progression(spec)
    notes: list[Note] = []
    for idx, part in enumerate(spec.parts):
        rng = random.Random(f"{spec.seed}-{part.role}")
        notes.extend(ROLE_WRITERS[part.role](spec, idx, grid, prog, rng))
    return [n for n in notes if n.start < spec.seconds]


LYRICS = (
    "love",
    "night",
    "city",
    "dream",
    "fire",
    "heart",
    "light",
    "rain",
    "home",
    "road",
    "sky",
    "gold",
    "run",
    "stay",
    "free",
    "alive",
    "tonight",
    "forever",
    "baby",
    "together",
    "shine",
    "rise",
    "fall",
    "ocean",
    "summer",
    "money",
    "street",
    "crown",
    "rhythm",
    "flow",
    "hold",
    "away",
    "believe",
    "morning",
)


def vocal_line(spec: ClipSpec) -> list[VocalNote]:
    """Words placed on the beat grid: long pitched notes when sung, quick even syllables when rapped."""
    if spec.vocals is None:
        return []
    grid = Grid(spec)
    rng = random.Random(f"{spec.seed}-vocals")
    female = spec.vocals["gender"] == "female"
    if spec.vocals["style"] == "sung":
        low, high = (60, 76) if female else (48, 64)
        line = melody_line(spec, grid, progression(spec), rng, low, high)
        return [VocalNote(rng.choice(LYRICS), start, dur, pitch) for start, dur, pitch in line if dur >= grid.beat / 2]
    words: list[VocalNote] = []
    base = 57 if female else 45
    for bar in range(grid.n_bars):
        for step in range(0, 16, 2):
            if rng.random() < 0.85:
                words.append(
                    VocalNote(rng.choice(LYRICS), grid.at(bar, step), grid.beat / 2, base + rng.choice((0, 0, 2, -2)))
                )
    return [w for w in words if w.start < spec.seconds]
