"""``tada study make``: a study folder from steered clips, with anonymous, loudness-matched copies.

Within an item every clip (reference, anchor, each condition) is brought to the same RMS level, so no
condition wins for being louder; when a clip's peaks would clip at that level, the whole item is lowered
together. The anchor is the reference low-passed at ``anchor_hz``. Clips are written under opaque names
(:func:`~tada.study.design.clip_token`), as 32-bit float WAV, with their gains recorded in ``study.json``.
Equal inputs and settings give byte-identical study folders.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import TadaError
from ..files import write_text, write_wav
from .clips import Item, find_items
from .design import ANCHOR, HIDDEN_REFERENCE, Study, StudyItem, StudySettings, clip_token, study_settings_check

PEAK = 0.99


def make_study(
    clips: str | Path,
    out: str | Path,
    settings: StudySettings | None = None,
    conditions: list[str] | None = None,
    change: str | None = None,
) -> Study:
    """Write a study built from the clips under ``clips`` to the new folder ``out``.

    ``conditions`` keeps only those conditions (names as in the clips folder); ``change`` overrides every
    item's description of the change asked for. An existing study is never overwritten.
    """
    settings = settings or StudySettings()
    study_settings_check(settings)
    out = Path(out)
    if (out / "study.json").exists() or (out / "answers.sqlite").exists():
        raise TadaError(f"{out} already holds a study: make the new one in another folder")
    items = find_items(clips)
    if conditions:
        known = {c for item in items for c in item.conditions}
        unknown = sorted(set(conditions) - known)
        if unknown:
            raise TadaError(f"unknown condition(s) {', '.join(unknown)}; the clips have {', '.join(sorted(known))}")
        items = [replace(i, conditions={c: p for c, p in i.conditions.items() if c in conditions}) for i in items]
        items = [i for i in items if i.conditions]
    if change is not None:
        items = [replace(i, change=change) for i in items]
    if not items:  # every item read has a condition; a --conditions filter may leave none
        raise TadaError("no steered clips to study")
    study_items, catalogue = [], {}
    for item in items:
        study_items.append(_write_item(out, item, settings, catalogue))
    study = Study(out, settings, study_items, catalogue)
    write_text(out / "study.json", study.to_json())
    return study


def _write_item(out: Path, item: Item, settings: StudySettings, catalogue: dict) -> StudyItem:
    reference, sr = _read(item.reference)
    sources = {HIDDEN_REFERENCE: (reference, sr, item.reference)}
    sources[ANCHOR] = (lowpass(reference, sr, settings.anchor_hz), sr, item.reference)
    for condition, path in item.conditions.items():
        if condition in (HIDDEN_REFERENCE, ANCHOR):
            raise TadaError(f"{path}: the condition names {HIDDEN_REFERENCE!r} and {ANCHOR!r} are the study's own")
        audio, rate = _read(path)
        sources[condition] = (audio, rate, path)
    target = 10 ** (settings.loudness_db / 20)
    for audio, _, _ in sources.values():  # one level for the whole item, below full scale for every clip
        rms, peak = _rms(audio), float(np.max(np.abs(audio), initial=0.0))
        if rms > 0 and peak > 0:
            target = min(target, PEAK * rms / peak)
    tokens = {}
    for role, (audio, rate, path) in sources.items():
        rms = _rms(audio)
        gain = target / rms if rms > 0 else 1.0
        token = clip_token(settings.seed, item.name, role)
        write_wav(out / "clips" / f"{token}.wav", (audio * gain).astype(np.float32), rate)
        catalogue[token] = {
            "item": item.name,
            "condition": role,
            "source": str(path),
            "gain_db": round(20 * math.log10(gain), 4),
            "sample_rate": rate,
            "seconds": round(audio.shape[0] / rate, 4),
        }
        tokens[role] = token
    conditions = {c: tokens[c] for c in item.conditions}
    return StudyItem(item.name, item.change, tokens[HIDDEN_REFERENCE], tokens[ANCHOR], conditions)


def lowpass(audio: np.ndarray, sr: int, hz: float) -> np.ndarray:
    """``audio`` ``(frames, channels)`` with everything above ``hz`` removed (an FFT brick wall)."""
    spectrum = np.fft.rfft(audio, axis=0)
    spectrum[np.fft.rfftfreq(audio.shape[0], 1 / sr) > hz] = 0
    return np.fft.irfft(spectrum, n=audio.shape[0], axis=0)


def _read(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        audio, sr = sf.read(str(path), dtype="float64", always_2d=True)
    except Exception as err:  # noqa: BLE001 - libsndfile's reasons are many; the line names the file
        raise TadaError(f"{path} is not a readable audio file: {err}") from None
    if audio.shape[0] == 0:
        raise TadaError(f"{path} holds no audio")
    if not np.isfinite(audio).all():
        raise TadaError(f"{path} holds NaN or infinite samples")
    return audio, int(sr)


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio))))


__all__ = ["lowpass", "make_study"]
