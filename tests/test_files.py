"""Output files: atomic, and byte-identical for identical contents, so runs compare with sha256sum."""

from __future__ import annotations

import json
import os
import struct
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import random_vector, xattn_aliases
from safetensors import safe_open
from safetensors.torch import load_file

from tada import files
from tada.files import write_safetensors, write_wav

# Many keys: safetensors orders metadata at random, so two unsorted writes agree with chance 1/12!.
METADATA = {f"key{i:02d}": f"value {i}" for i in range(12)} | {"é": "ünïcode", "quote": 'a "b"\n'}


def _tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "weights": torch.randn(3, 5, generator=gen).T,  # not contiguous
        "timesteps": torch.linspace(0, 1000, 7, dtype=torch.float64),
        "index": torch.arange(9, dtype=torch.int8),
        "half": torch.randn(4, generator=gen).half(),
    }


def _chunks(data: bytes) -> list[bytes]:
    """The chunk ids of a RIFF/WAVE file, in order."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    ids, at = [], 12
    while at < len(data):
        size = struct.unpack("<I", data[at + 4 : at + 8])[0]
        ids.append(data[at : at + 4])
        at += 8 + size + size % 2
    return ids


def _next_second() -> None:
    """Sleep past a wall-clock second, so anything stamping the time in seconds would differ."""
    time.sleep(1.01 - time.time() % 1)


def test_safetensors_same_contents_give_same_bytes(tmp_path):
    tensors = _tensors()
    shuffled = dict(reversed(list(METADATA.items())))
    a = write_safetensors(tmp_path / "a.safetensors", tensors, METADATA)
    b = write_safetensors(tmp_path / "b.safetensors", dict(reversed(list(tensors.items()))), shuffled)
    assert a.read_bytes() == b.read_bytes()
    (length,) = struct.unpack("<Q", a.read_bytes()[:8])
    assert length % 8 == 0


def test_safetensors_reads_back_exactly(tmp_path):
    tensors = _tensors()
    path = write_safetensors(tmp_path / "sub" / "t.safetensors", tensors, METADATA)
    back = load_file(str(path))
    assert set(back) == set(tensors)
    for key, value in tensors.items():
        assert back[key].dtype == value.dtype and torch.equal(back[key], value)
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == METADATA
        assert torch.equal(handle.get_tensor("weights"), tensors["weights"])
    assert not (tmp_path / "sub" / "t.safetensors.tmp").exists()


def test_safetensors_without_metadata(tmp_path):
    path = write_safetensors(tmp_path / "t.safetensors", {"x": torch.ones(2)})
    with safe_open(str(path), framework="pt") as handle:
        assert not handle.metadata()
        assert torch.equal(handle.get_tensor("x"), torch.ones(2))


def _killed(src: object, dst: object) -> None:
    raise KeyboardInterrupt  # the process dies between writing the temporary file and renaming it


@pytest.mark.parametrize(
    "write",
    [
        lambda path: write_safetensors(path, _tensors(), METADATA),
        lambda path: write_wav(path, np.zeros((10, 2), np.float32), 16000),
    ],
    ids=["safetensors", "wav"],
)
def test_a_killed_write_leaves_no_file(tmp_path, monkeypatch, write):
    monkeypatch.setattr(files.os, "replace", _killed)
    target = tmp_path / "out.bin"
    with pytest.raises(KeyboardInterrupt):
        write(target)
    assert not target.exists()
    assert os.listdir(tmp_path) == []


def test_a_killed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = write_safetensors(tmp_path / "t.safetensors", {"x": torch.ones(2)})
    before = target.read_bytes()
    monkeypatch.setattr(files.os, "replace", _killed)
    with pytest.raises(KeyboardInterrupt):
        write_safetensors(target, {"x": torch.zeros(2)})
    assert target.read_bytes() == before


def test_wav_same_samples_give_same_bytes_and_read_back_bitwise(tmp_path):
    samples = np.random.default_rng(0).standard_normal((4001, 2)).astype(np.float32)
    a = write_wav(tmp_path / "a.wav", samples, 44100)
    _next_second()
    b = write_wav(tmp_path / "b.wav", samples.copy(), 44100)
    assert a.read_bytes() == b.read_bytes()
    assert _chunks(a.read_bytes()) == [b"fmt ", b"fact", b"data"]  # no PEAK chunk, so no timestamp
    back, rate = sf.read(a, dtype="float32")
    assert rate == 44100 and sf.info(a).subtype == "FLOAT"
    assert back.dtype == np.float32 and np.array_equal(back.view(np.uint32), samples.view(np.uint32))


def test_wav_holds_what_soundfile_would_write(tmp_path):
    """Same header fields and sample bytes as libsndfile's file, less its PEAK chunk."""
    for samples in (np.random.default_rng(1).standard_normal(999), np.linspace(-2, 2, 300, dtype=np.float32)):
        ours = write_wav(tmp_path / "ours.wav", samples, 22050)
        sf.write(tmp_path / "ref.wav", samples, 22050, subtype="FLOAT")
        ours_back, _ = sf.read(ours, dtype="float32")
        ref_back, _ = sf.read(tmp_path / "ref.wav", dtype="float32")
        assert np.array_equal(ours_back, ref_back)
        assert ours.read_bytes()[12:48] == (tmp_path / "ref.wav").read_bytes()[12:48]  # fmt and fact chunks
    samples = np.random.default_rng(2).standard_normal((500, 3))
    double = write_wav(tmp_path / "d.wav", samples, 8000, subtype="DOUBLE")
    assert sf.info(double).subtype == "DOUBLE" and np.array_equal(sf.read(double)[0], samples)


def test_wav_pcm16_is_the_file_soundfile_writes(tmp_path):
    """16-bit PCM (for listening): byte for byte libsndfile's file, clipping included."""
    rng = np.random.default_rng(3)
    for samples in (rng.uniform(-1, 1, (20_000, 2)).astype(np.float32), np.linspace(-1.5, 1.5, 301)):
        ours = write_wav(tmp_path / "ours.wav", samples, 16000, subtype="PCM_16")
        sf.write(tmp_path / "ref.wav", samples, 16000, subtype="PCM_16")
        assert ours.read_bytes() == (tmp_path / "ref.wav").read_bytes()
        assert _chunks(ours.read_bytes()) == [b"fmt ", b"data"] and sf.info(ours).subtype == "PCM_16"
        back, _ = sf.read(ours, dtype="float64")
        inside = np.abs(samples) < 1
        assert np.abs(back - samples.reshape(back.shape))[inside.reshape(back.shape)].max() <= 1 / 32768


def test_wav_refuses_what_it_cannot_write_faithfully(tmp_path):
    with pytest.raises(ValueError, match="subtype"):
        write_wav(tmp_path / "a.wav", np.zeros(4, np.float32), 8000, subtype="PCM_24")
    with pytest.raises(ValueError, match="floating point"):
        write_wav(tmp_path / "a.wav", np.zeros(4, np.int16), 8000)
    assert not (tmp_path / "a.wav").exists()


def test_two_runs_give_identical_files(tmp_path):
    """End to end: generating and saving twice gives the same WAV bytes; a vector saved twice the same file."""
    from tada.adapters import load_model

    model = load_model("random-tiny:stable-audio")
    paths = []
    for run in range(2):
        if run:
            _next_second()
        audio = model.generate("lofi hip hop", seconds=1.0, steps=3, seed=0)
        paths.append(audio.save(tmp_path / f"run{run}.wav"))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    vector = random_vector(model, xattn_aliases(model)[:2])
    a, b = vector.save(tmp_path / "a.safetensors"), vector.save(tmp_path / "b.safetensors")
    assert a.read_bytes() == b.read_bytes()


def test_json_files_are_strict_json(tmp_path):
    """NaN (an undefined figure) is written as null, so browsers' JSON.parse reads the file; numpy numbers and
    dataclasses become plain JSON."""
    from dataclasses import dataclass

    from tada.files import write_json

    @dataclass
    class Figure:
        value: float
        n: int | None = None

    value = {
        "nan": float("nan"),
        "inf": np.float32(np.inf),
        "figure": Figure(np.float64(0.5)),
        "undefined": Figure(float("nan"), 3),
        "counts": (np.int64(2), np.bool_(True)),
        "array": np.array([1.5, np.nan]),
    }
    path = write_json(tmp_path / "a.json", value, sort_keys=True)

    def refuse(constant):
        raise AssertionError(f"{constant} in strict JSON")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "array": [1.5, None],
        "counts": [2, True],
        "figure": {"n": None, "value": 0.5},
        "inf": None,
        "nan": None,
        "undefined": {"n": 3, "value": None},
    }
