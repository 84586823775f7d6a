"""Log-mel features at one fixed rate, so every clip the scorer sees is measured alike.

Audio at another rate is resampled to 16 kHz with librosa's soxr resampler (``soxr_hq``)
before the spectrogram; multi-channel audio is averaged to mono. Empty, too short or
non-finite audio is refused with a :class:`TadaError` instead of producing a silent NaN score.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch

from ..errors import TadaError

SAMPLE_RATE = 16_000
N_FFT = 1024
HOP = 256
N_MELS = 64
F_MIN, F_MAX = 20.0, 8_000.0
MIN_SECONDS = 0.5
MAX_CHANNELS = 16
LOG_FLOOR = 1e-6


@lru_cache(maxsize=1)
def mel_basis() -> torch.Tensor:
    """librosa's Slaney mel filter bank, (N_MELS, N_FFT // 2 + 1)."""
    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=F_MIN, fmax=F_MAX)
    return torch.from_numpy(basis).float()


@lru_cache(maxsize=1)
def _window() -> torch.Tensor:
    return torch.hann_window(N_FFT)


def to_mono_16k(audio: np.ndarray | torch.Tensor, sr: int) -> torch.Tensor:
    """One clip, ``(frames,)`` or ``(channels, frames)`` at rate ``sr``, as mono float32 at 16 kHz."""
    wave = audio.detach().cpu().float().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio, np.float32)
    if wave.ndim == 2:
        if wave.shape[0] > MAX_CHANNELS:
            raise TadaError(f"audio of shape {wave.shape} has {wave.shape[0]} channels; "
                            "pass one clip as (frames,) or (channels, frames)")
        wave = wave.mean(axis=0)
    elif wave.ndim != 1:
        raise TadaError(f"audio of shape {wave.shape} is not one clip: use (frames,) or (channels, frames)")
    if wave.size == 0:
        raise TadaError("audio is empty")
    if not np.isfinite(wave).all():
        raise TadaError("audio contains NaN or infinite samples")
    if sr <= 0:
        raise TadaError(f"sample rate {sr} is not positive")
    if sr != SAMPLE_RATE:
        wave = librosa.resample(wave, orig_sr=sr, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    if wave.shape[-1] < MIN_SECONDS * SAMPLE_RATE:
        raise TadaError(f"audio is {wave.shape[-1] / SAMPLE_RATE:.2f} s long; the scorer needs at least {MIN_SECONDS} s")
    return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))


def log_mel(wave: torch.Tensor) -> torch.Tensor:
    """Natural-log mel power spectrogram of 16 kHz mono audio: ``(..., frames)`` -> ``(..., N_MELS, time)``."""
    shape = wave.shape[:-1]
    spec = torch.stft(wave.reshape(-1, wave.shape[-1]).float(), N_FFT, HOP, window=_window(), center=True,
                      return_complex=True)
    mel = torch.matmul(mel_basis(), spec.abs().square())
    return mel.clamp_min(LOG_FLOOR).log().reshape(*shape, N_MELS, -1)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """A sound file as ``(channels, frames)`` float32 and its rate; one-line errors for missing or bad files."""
    path = Path(path)
    if not path.is_file():
        raise TadaError(f"audio file {path} does not exist")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise TadaError(f"cannot read audio file {path}: {exc}") from None
    return np.ascontiguousarray(data.T), int(sr)


def load_16k(path: str | Path) -> torch.Tensor:
    """A sound file as mono 16 kHz float32; errors name the file."""
    audio, sr = read_audio(path)
    try:
        return to_mono_16k(audio, sr)
    except TadaError as exc:
        raise TadaError(f"{path}: {exc}") from None


def file_features(path: str | Path) -> torch.Tensor:
    """Log-mel of a sound file, ``(N_MELS, time)``."""
    return log_mel(load_16k(path))
