"""Steering-vector files: round trip, metadata, and one clear error for every bad file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import random_vector, xattn_aliases
from safetensors.torch import save_file

from tada.artifacts import FORMAT, SteeringVector, check_alpha
from tada.errors import ArtifactError, TadaError


@pytest.fixture
def model(tiny_models):
    m = tiny_models("ace-step-1.5")
    yield m
    m.engine.clear()


def test_round_trip_keeps_tensors_metadata_and_effect(model, tmp_path):
    vector = random_vector(model, xattn_aliases(model)[:3])
    vector.prompt_set = {"source": "preset", "n_pairs": 5}
    path = vector.save(tmp_path / "v.safetensors")
    loaded = SteeringVector.load(path)
    assert loaded.sites == vector.sites and loaded.family == vector.family and loaded.width == vector.width
    assert loaded.prompt_set == vector.prompt_set and loaded.operation == "add" and loaded.normalisation == "unit"
    assert torch.equal(loaded.timesteps, vector.timesteps.double())
    for alias in vector.sites:
        assert torch.equal(loaded.vectors[alias], vector.vectors[alias])
    outs = []
    for v in (vector, loaded):
        with v.apply(model, 12.0):
            outs.append(model.generate("lofi music", seed=1, seconds=1.0, steps=3).samples)
    assert np.array_equal(outs[0], outs[1])


def test_metadata_is_plain_strings(model, tmp_path):
    path = random_vector(model, xattn_aliases(model)[:1]).save(tmp_path / "v.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == FORMAT and meta["family"] == "ace-step-1.5" and json.loads(meta["sites"])
    assert meta["tada_version"] and meta["width"] == str(model.width)


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message and message
    return message


def test_corrupt_missing_and_foreign_files(tmp_path):
    with pytest.raises(ArtifactError) as err:
        SteeringVector.load(tmp_path / "nope.safetensors")
    assert "no steering vector file" in one_line(err.value)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a safetensors file at all")
    with pytest.raises(ArtifactError) as err:
        SteeringVector.load(garbage)
    assert "not a readable safetensors file" in one_line(err.value)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "something-else"})
    with pytest.raises(ArtifactError) as err:
        SteeringVector.load(foreign)
    assert "not a tada steering vector" in one_line(err.value)


def test_truncated_file_is_reported(model, tmp_path):
    path = random_vector(model, xattn_aliases(model)[:2]).save(tmp_path / "v.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(ArtifactError) as err:
        SteeringVector.load(path)
    one_line(err.value)


def test_nan_vector_is_refused_in_memory_and_on_disk(model, tmp_path):
    vector = random_vector(model, xattn_aliases(model)[:1])
    good = vector.save(tmp_path / "good.safetensors")
    bad = dict(vector.vectors)
    alias = vector.sites[0]
    bad[alias] = bad[alias].clone()
    bad[alias][0, 0] = float("nan")
    with pytest.raises(ArtifactError, match="NaN"):
        SteeringVector(bad, vector.timesteps, vector.family, vector.width)
    from safetensors import safe_open

    with safe_open(str(good), framework="pt") as f:
        meta = f.metadata()
    nan_file = tmp_path / "nan.safetensors"
    save_file({f"vector/{alias}": bad[alias], "timesteps": vector.timesteps.double()}, str(nan_file), metadata=meta)
    with pytest.raises(ArtifactError) as err:
        SteeringVector.load(nan_file)
    assert "NaN" in one_line(err.value) and str(nan_file) in str(err.value)


def test_wrong_width_is_a_mismatch(model):
    vector = random_vector(model, xattn_aliases(model)[:1])
    vector.width = model.width * 2
    with pytest.raises(ArtifactError) as err:
        vector.apply(model, 1.0)
    assert f"width {model.width * 2}" in one_line(err.value) and f"width {model.width})" in str(err.value)


def test_alpha_range_and_site_subset(model):
    vector = random_vector(model, xattn_aliases(model)[:2])
    for bad in (float("nan"), float("inf"), 1e9):
        with pytest.raises(TadaError, match="out of range"):
            check_alpha(bad)
    with pytest.raises(TadaError, match="has no site"):
        vector.apply(model, 1.0, sites="xattn.7")
    assert not model.engine.active
