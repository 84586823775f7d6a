"""The command line end to end, as a user runs it: files written, one-line errors, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import run_cli

MODEL = "random-tiny:stable-audio"
QUICK = ["--seconds", "1", "--steps", "3"]


def tada(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tada.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def vector_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "tempo.safetensors"
    result = run_cli(
        "caa", MODEL, "--concept", "tempo", "--n-pairs", "2", "--sites", "xattn.3,xattn.4", *QUICK, "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "2 sites x 3 timesteps, 2 pairs" in result.stdout
    assert not out.with_name(out.name + ".parts").exists()
    return out


def test_models_and_sites():
    listed = run_cli("models")
    assert listed.returncode == 0 and "random-tiny:ace-step-1.5" in listed.stdout and "audioldm2:PATH" in listed.stdout
    sites = run_cli("sites", MODEL, "--kind", "xattn")
    assert sites.returncode == 0
    aliases = [line.split()[0] for line in sites.stdout.splitlines()[1:]]
    assert aliases == [f"xattn.{i}" for i in range(8)] and "transformer_blocks.0.attn2" in sites.stdout


def test_generate_and_steer_write_float_wavs(tmp_path, vector_file):
    plain, steered, zero = tmp_path / "plain.wav", tmp_path / "steered.wav", tmp_path / "zero.wav"
    console = tmp_path / "console.wav"  # the installed entry point, in its own process
    assert (
        tada("generate", MODEL, "--prompt", "lofi music", *QUICK, "--seed", "7", "--out", str(console)).returncode == 0
    )
    assert sf.info(str(console)).subtype == "FLOAT"
    assert (
        run_cli("generate", MODEL, "--prompt", "lofi music", *QUICK, "--seed", "7", "--out", str(plain)).returncode == 0
    )
    result = run_cli(
        "steer",
        MODEL,
        "--prompt",
        "lofi music",
        "--steer",
        f"{vector_file}:25",
        "--renorm",
        *QUICK,
        "--seed",
        "7",
        "--out",
        str(steered),
    )
    assert result.returncode == 0, result.stderr
    assert (
        run_cli(
            "steer",
            MODEL,
            "--prompt",
            "lofi music",
            "--steer",
            f"{vector_file}:0",
            *QUICK,
            "--seed",
            "7",
            "--out",
            str(zero),
        ).returncode
        == 0
    )
    info = sf.info(str(plain))
    assert info.subtype == "FLOAT"
    a, b, z = (sf.read(str(p), dtype="float32")[0] for p in (plain, steered, zero))
    assert np.array_equal(a, z) and not np.array_equal(a, b)


def test_two_vectors_and_a_schedule(tmp_path, vector_file):
    out = tmp_path / "mix.wav"
    result = run_cli(
        "steer",
        MODEL,
        "--prompt",
        "lofi music",
        "--steer",
        f"{vector_file}:10",
        "--steer",
        f"{vector_file}:-4",
        "--schedule",
        "0-0.5",
        "--mode",
        "both",
        *QUICK,
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr and out.exists()


def test_bad_inputs_give_one_clear_line(tmp_path, vector_file):
    out = str(tmp_path / "x.wav")
    assert_one_line_error(
        run_cli("steer", "random-tiny:ace-step-1.5", "--prompt", "p", "--steer", f"{vector_file}:3", "--out", out),
        "stable-audio",
        "ace-step-1.5",
    )
    assert_one_line_error(
        run_cli("caa", MODEL, "--concept", "banjo", "--out", str(tmp_path / "v.safetensors")), "unknown concept 'banjo'"
    )
    assert_one_line_error(
        run_cli("steer", MODEL, "--prompt", "p", "--steer", f"{vector_file}:nan", "--out", out), "caa takes alpha in"
    )
    assert_one_line_error(
        run_cli("steer", MODEL, "--prompt", "p", "--steer", f"{vector_file}:3", "--sites", "xattn.0", "--out", out),
        "no site xattn.0",
    )
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"garbage")
    assert_one_line_error(
        run_cli("steer", MODEL, "--prompt", "p", "--steer", f"{corrupt}:3", "--out", out),
        "not a readable safetensors file",
    )
    assert_one_line_error(
        run_cli("generate", "ace-step-1.5:/no/such/dir", "--prompt", "p", "--out", out), "no model directory"
    )
    assert_one_line_error(run_cli("generate", "banana:/x", "--prompt", "p", "--out", out), "unknown model family")
    assert_one_line_error(
        run_cli("caa", MODEL, "--concept", "piano", "--sites", "xattn.99", "--out", str(tmp_path / "v.safetensors")),
        "no site 'xattn.99'",
    )
    assert not (tmp_path / "x.wav").exists()
