"""Turning notes into audio: FluidSynth with a General MIDI soundfont, espeak-ng for voices.

One :class:`Renderer` per process keeps the soundfont loaded. Audio is read from
FluidSynth as float (``fluid_synth_write_float``: no dither), reverb and chorus are off,
and every clip starts from a full reset, so a clip's samples depend on its notes alone,
not on what the process rendered before.
"""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from ..errors import TadaError
from .attributes import INSTRUMENTS, SAMPLE_RATE, ClipSpec
from .compose import VocalNote, compose, vocal_line

SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2")
ESPEAK = "espeak-ng"
FEMALE_VOICES = ("f1", "f2", "f3", "f4", "f5")
MALE_VOICES = ("m1", "m2", "m3", "m4", "m6", "m7")
DRUM_VOLUME = 80  # MIDI channel volume (CC7) of the drum channel, of 127 (about -8 dB)
VOICE_LEVEL = 0.8  # vocal RMS relative to the instruments' RMS


def find_soundfont(path: str | None = None) -> str:
    """``path`` when given, else the first installed default. A given path that is missing is the
    user's typo, not a missing package, so the error names that file rather than the package."""
    if path:
        if not Path(path).is_file():
            problem = "is not a file" if Path(path).exists() else "does not exist"
            raise TadaError(f"soundfont {path} {problem} (--soundfont takes a General MIDI .sf2 file)")
        return path
    for candidate in SOUNDFONTS:
        if Path(candidate).is_file():
            return candidate
    raise TadaError("no General MIDI soundfont found: install fluid-soundfont-gm (run `make setup`)")


@contextmanager
def _c_stderr_silenced() -> Iterator[None]:
    """FluidSynth and libinstpatch report a failed load in several lines on the C-level stderr;
    the caller's TadaError says it in one, so file descriptor 2 points at /dev/null meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_soundfont(path: str) -> None:
    """Load ``path`` once in this process and refuse it in one line if FluidSynth cannot: rendering
    workers would otherwise each fail on it (a pool restarts workers whose start fails, forever)."""
    import fluidsynth

    synth = fluidsynth.Synth(samplerate=float(SAMPLE_RATE))
    try:
        with _c_stderr_silenced():
            sfid = synth.sfload(path)
    finally:
        synth.delete()
    if sfid < 0:
        raise TadaError(f"FluidSynth cannot load {path} as a soundfont (--soundfont takes a General MIDI .sf2 file)")


def check_tools(soundfont: str | None = None) -> str:
    """Fail with one clear line if FluidSynth, a soundfont or espeak-ng is missing."""
    try:
        import fluidsynth  # noqa: F401
    except (ImportError, OSError) as exc:
        raise TadaError(f"FluidSynth is not available ({exc}); install fluidsynth (run `make setup`)") from None
    if shutil.which(ESPEAK) is None:
        raise TadaError("espeak-ng is not installed (run `make setup`)")
    return find_soundfont(soundfont)


class Renderer:
    """Renders clip specifications to mono float32 audio at ``SAMPLE_RATE``.

    FluidSynth keeps voices, envelopes and block phase across notes, and a reset does not
    clear all of it, so every clip gets a fresh synth. A long-lived synth holding the
    soundfont keeps FluidSynth's in-process sample cache warm, which makes each fresh
    synth cost ~25 ms instead of a full soundfont load.
    """

    def __init__(self, soundfont: str | None = None):
        self.soundfont = check_tools(soundfont)
        import fluidsynth

        self._fluidsynth = fluidsynth
        self._keeper, _ = self._new_synth()
        self._write = fluidsynth._fl.fluid_synth_write_float
        self._write.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
        ]
        self._write.restype = ctypes.c_int

    def _new_synth(self):
        # Effects off, set before the synth exists: their state would colour the clip.
        settings = {"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 256}
        synth = self._fluidsynth.Synth(samplerate=float(SAMPLE_RATE), gain=0.4, **settings)
        sfid = synth.sfload(self.soundfont)
        if sfid < 0:
            raise TadaError(f"FluidSynth could not load the soundfont {self.soundfont}")
        return synth, sfid

    def _samples(self, synth, n: int) -> np.ndarray:
        buf = np.zeros(2 * n, dtype=np.float32)
        ptr = buf.ctypes.data
        self._write(synth.synth, n, ptr, 0, 2, ptr, 1, 2)
        return buf.reshape(n, 2).mean(axis=1)

    def instruments(self, spec: ClipSpec) -> np.ndarray:
        synth, sfid = self._new_synth()
        try:
            return self._play(synth, sfid, spec)
        finally:
            synth.delete()

    def _play(self, synth, sfid: int, spec: ClipSpec) -> np.ndarray:
        def channel(part: int) -> int:
            return 9 if INSTRUMENTS[spec.parts[part].instrument].is_drum else part if part < 9 else part + 1

        for idx, part in enumerate(spec.parts):
            inst = INSTRUMENTS[part.instrument]
            synth.program_select(
                channel(idx), sfid, 128 if inst.is_drum else 0, inst.drum_kit if inst.is_drum else inst.program
            )
            if inst.is_drum:  # broadband drums at full volume drown the harmony (and so the mode)
                synth.cc(channel(idx), 7, DRUM_VOLUME)
        events: list[tuple[int, int, int, int, int]] = []  # (frame, on, channel, pitch, velocity)
        for note in compose(spec):
            events.append((int(note.start * SAMPLE_RATE), 1, channel(note.part), note.pitch, note.velocity))
            events.append((int(note.end * SAMPLE_RATE), 0, channel(note.part), note.pitch, 0))
        events.sort()
        total = int(spec.seconds * SAMPLE_RATE)
        chunks, now = [], 0
        for frame, is_on, chan, pitch, velocity in events:
            frame = min(frame, total)
            if frame > now:
                chunks.append(self._samples(synth, frame - now))
                now = frame
            if is_on:
                synth.noteon(chan, pitch, velocity)
            else:
                synth.noteoff(chan, pitch)
        if total > now:
            chunks.append(self._samples(synth, total - now))
        return np.concatenate(chunks)[:total] if chunks else np.zeros(total, np.float32)

    def render(self, spec: ClipSpec) -> np.ndarray:
        """The full mix, peak-normalised to 0.9."""
        mix = self.instruments(spec)
        if spec.vocals is not None:
            voice = render_vocals(spec)
            inst_rms = float(np.sqrt(np.mean(mix**2))) or 1e-3
            voice_rms = float(np.sqrt(np.mean(voice**2))) or 1e-3
            mix = mix + voice * (VOICE_LEVEL * inst_rms / voice_rms)
        peak = float(np.abs(mix).max())
        return (mix * (0.9 / peak) if peak > 0 else mix).astype(np.float32)


@lru_cache(maxsize=4096)
def _espeak_word(word: str, voice: str, pitch: int, speed: int) -> np.ndarray:
    """One word from espeak-ng at 16 kHz (cached: lyrics reuse a small vocabulary)."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(
            [ESPEAK, "-v", f"en-us+{voice}", "-p", str(pitch), "-s", str(speed), "-w", tmp.name, word],
            check=True,
            capture_output=True,
        )
        audio, rate = sf.read(tmp.name, dtype="float32")
    audio = resample_poly(audio, SAMPLE_RATE, rate).astype(np.float32) if rate != SAMPLE_RATE else audio
    nonzero = np.flatnonzero(np.abs(audio) > 1e-3)
    return audio[nonzero[0] : nonzero[-1] + 1] if len(nonzero) else audio


def _place(out: np.ndarray, audio: np.ndarray, start: float, duration: float) -> None:
    begin = int(start * SAMPLE_RATE)
    length = min(len(audio), int(duration * SAMPLE_RATE), len(out) - begin)
    if length <= 0:
        return
    clip = audio[:length].copy()
    fade = min(160, length)
    clip[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    out[begin : begin + length] += clip


def render_vocals(spec: ClipSpec) -> np.ndarray:
    """Voices by espeak-ng: female/male voices and registers; slow pitched words (sung) or
    fast even syllables on the eighth-note grid (rap)."""
    assert spec.vocals is not None
    rng = random.Random(f"{spec.seed}-voice")
    female = spec.vocals["gender"] == "female"
    voice = rng.choice(FEMALE_VOICES if female else MALE_VOICES)
    sung = spec.vocals["style"] == "sung"
    out = np.zeros(int(spec.seconds * SAMPLE_RATE), dtype=np.float32)
    notes: list[VocalNote] = vocal_line(spec)
    low = 60 if female else 48
    for note in notes:
        # espeak's pitch control is 0-99; follow the melody's contour within the voice's register
        pitch = int(np.clip((note.pitch - low) * 4 + (55 if female else 30), 0, 99))
        speed = 95 if sung else 250
        _place(out, _espeak_word(note.word, voice, pitch, speed), note.start, note.duration)
    return out
