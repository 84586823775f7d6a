"""Output files written atomically and byte-reproducibly.

Every file tada writes goes beside its target as ``<name>.tmp`` and is then renamed, so
a killed write never leaves a torn file. Equal contents give equal bytes, so two runs
can be compared with ``sha256sum``: safetensors serialises its ``__metadata__`` map in
a random order (here the header is re-serialised with sorted keys), and libsndfile
stamps float WAVs with a PEAK chunk holding the write time (here the RIFF file is
written directly, with no PEAK chunk).
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save

# soundfile's subtype name -> little-endian sample type (the floats are WAVE format 3, PCM_16 format 1).
_WAV_SUBTYPES = {"FLOAT": np.dtype("<f4"), "DOUBLE": np.dtype("<f8"), "PCM_16": np.dtype("<i2")}
_IEEE_FLOAT, _PCM = 3, 1


def _write_atomic(path: str | Path, data: bytes) -> Path:
    """Write beside, then rename: a kill mid-write leaves the target absent or whole, never torn."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file whose header lists tensors and metadata in sorted key order.

    The data buffer is left as safetensors lays it out (by dtype, then name: already
    deterministic), so each entry's offsets stay valid; only the header JSON is rewritten,
    padded with spaces to a multiple of 8 as safetensors does.
    """
    raw = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + length :]


def write_safetensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Path:
    """Write ``tensors`` (moved to CPU, made contiguous) and string ``metadata`` atomically and reproducibly."""
    return _write_atomic(path, _safetensors_bytes(tensors, metadata))


def _wav_bytes(samples: np.ndarray, sample_rate: int, subtype: str = "FLOAT") -> bytes:
    """A RIFF/WAVE file of float ``samples`` (``(frames,)`` or ``(frames, channels)``, as soundfile takes them).

    The chunks libsndfile writes (fmt, fact for float, data), without its PEAK chunk and so without
    a timestamp. FLOAT and DOUBLE keep the samples as libsndfile casts them. PCM_16 is lossy, for
    listening only, with libsndfile 1.2's values: ``floor(x * 32768)`` clipped to the 16-bit range.
    Integer input is refused, since libsndfile would rescale it.
    """
    if subtype not in _WAV_SUBTYPES:
        raise ValueError(f"unsupported WAV subtype {subtype!r}; choose one of {', '.join(_WAV_SUBTYPES)}")
    dtype = _WAV_SUBTYPES[subtype]
    samples = np.asarray(samples)
    if not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(f"samples must be floating point; got {samples.dtype}")
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[1] < 1:
        raise ValueError(f"samples must be (frames,) or (frames, channels); got shape {samples.shape}")
    frames, channels = samples.shape
    width = dtype.itemsize
    tag = _PCM if dtype.kind == "i" else _IEEE_FLOAT
    fmt = struct.pack(
        "<HHIIHH", tag, channels, sample_rate, sample_rate * channels * width, channels * width, 8 * width
    )
    if tag == _PCM:
        scaled = np.floor(samples.astype(np.float64) * 32768.0)  # exact: a power-of-two scale
        data = np.clip(scaled, -32768, 32767).astype(dtype).tobytes()
        chunks = ((b"fmt ", fmt), (b"data", data))
    else:
        data = np.ascontiguousarray(samples, dtype=dtype).tobytes()
        chunks = ((b"fmt ", fmt), (b"fact", struct.pack("<I", frames)), (b"data", data))
    body = b"WAVE" + b"".join(name + struct.pack("<I", len(payload)) + payload for name, payload in chunks)
    if len(body) > 0xFFFFFFFF:
        raise ValueError("audio too long for a WAV file (over 4 GiB)")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int, subtype: str = "FLOAT") -> Path:
    """Write ``samples`` as a WAV file atomically; identical samples give identical bytes."""
    return _write_atomic(path, _wav_bytes(samples, sample_rate, subtype))


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically (configs, reports, caption lists)."""
    return _write_atomic(path, text.encode("utf-8"))


def json_ready(value: Any) -> Any:
    """``value`` as strict JSON holds it: a non-finite float (an undefined figure) is null, numpy
    scalars and arrays are Python numbers and lists, dataclass instances are dicts of their fields."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value


def write_json(path: str | Path, value: Any, sort_keys: bool = False) -> Path:
    """Write ``value`` as strict JSON (:func:`json_ready`: no NaN, which browsers' parsers refuse),
    indented, atomically."""
    return write_text(path, json.dumps(json_ready(value), indent=1, sort_keys=sort_keys, allow_nan=False) + "\n")


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically (figures rendered in memory)."""
    return _write_atomic(path, data)
