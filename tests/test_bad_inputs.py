"""A catalogue of bad and hostile input, as an adversarial new user would type it.

Every case must end in exit code 2 with exactly one line on stderr, starting with
``error: ``, no traceback, and nothing written or left behind in the working directory.
The cases run the CLI in this process (``run_cli``), with tiny random models.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import random_vector, run_cli

from tada.artifacts import SteeringVector, write_artifact
from tada.runs import UnitStore

MODEL = "random-tiny:stable-audio"
QUICK = ["--seconds", "1", "--steps", "3"]
GEN = ["generate", MODEL, "--prompt", "lofi", *QUICK]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_models):
    """Inputs the cases point at: a good vector, vectors made for other models or broken, CSVs."""
    root = tmp_path_factory.mktemp("inputs")
    model = tiny_models("stable-audio")
    unit = random_vector(model, ["xattn.3"])
    unit.save(root / "good.safetensors")
    random_vector(tiny_models("ace-step-1.5"), ["xattn.1"]).save(root / "ace.safetensors")
    huge = SteeringVector(
        {"xattn.3": unit.vectors["xattn.3"] * 1e37}, unit.timesteps, model.family, model.width, normalisation="none"
    )
    huge.save(root / "huge.safetensors")
    tensors = {"vector/xattn.3": huge.vectors["xattn.3"], "timesteps": unit.timesteps.double()}
    write_artifact(root / "not-unit.safetensors", tensors, unit.metadata())  # says unit norm, is not
    empty = {"vector/xattn.3": torch.zeros(0, model.width), "timesteps": torch.zeros(0, dtype=torch.float64)}
    write_artifact(root / "empty-table.safetensors", empty, unit.metadata())
    narrow = SteeringVector(
        {"xattn.3": torch.ones(2, 7)},
        unit.timesteps,
        model.family,
        model.width,
        operation="project",
        normalisation="none",
    )
    narrow.save(root / "narrow.safetensors")
    (root / "garbage.safetensors").write_bytes(b"not a safetensors file")
    (root / "swaps.csv").write_text('positive,negative\n"lofi, with violin","lofi, with a very loud trumpet"\n')
    (root / "one-column.csv").write_text("just one prompt\n")
    (root / "empty.csv").write_text("positive,negative\n")
    (root / "two.csv").write_text('"lofi, with piano",lofi\n"rock, with piano",rock\n')
    (root / "a-file").write_text("I am a file, not a directory\n")
    (root / "not-audio.wav").write_text("RIFF? no\n")
    (root / "adir").mkdir()
    torch.save({"direction": torch.zeros(768)}, root / "piano_direction.pt")
    (root / "bad-corpus").mkdir()
    (root / "bad-corpus" / "labels.jsonl").write_text("{}\n{}\n")
    return root


def _cases() -> list[tuple[str, list[str], str]]:
    """(id, arguments with {f} for the inputs folder and {w} for the working folder, fragment of the message)."""
    caa = ["caa", MODEL, "--concept", "piano", "--n-pairs", "2", *QUICK]
    loc = ["localize", MODEL, "--concept", "tempo", "--n-pairs", "1", *QUICK]
    steer = ["steer", MODEL, "--prompt", "lofi", *QUICK]
    return [
        # generation settings
        ("seconds-nan", [*GEN[:4], "--seconds", "nan", "--out", "{w}/x.wav"], "--seconds must be a finite number"),
        ("seconds-inf", [*GEN[:4], "--seconds", "inf", "--out", "{w}/x.wav"], "--seconds"),
        ("seconds-negative", [*GEN[:4], "--seconds", "-1", "--out", "{w}/x.wav"], "--seconds"),
        ("seconds-zero", [*GEN[:4], "--seconds", "0", "--out", "{w}/x.wav"], "(0, 600]"),
        ("seconds-huge", [*GEN[:4], "--seconds", "1e9", "--out", "{w}/x.wav"], "--seconds"),
        ("steps-zero", [*GEN[:4], "--steps", "0", "--out", "{w}/x.wav"], "--steps must be an integer"),
        ("steps-huge", [*GEN[:4], "--steps", "1000000000", "--out", "{w}/x.wav"], "--steps"),
        ("steps-float", [*GEN[:4], "--steps", "1e9", "--out", "{w}/x.wav"], "--steps"),
        ("steps-word", [*GEN[:4], "--steps", "many", "--out", "{w}/x.wav"], "--steps"),
        ("guidance-nan", [*GEN, "--guidance", "nan", "--out", "{w}/x.wav"], "--guidance"),
        ("guidance-inf", [*GEN, "--guidance", "inf", "--out", "{w}/x.wav"], "--guidance"),
        ("guidance-huge", [*GEN, "--guidance", "1e30", "--out", "{w}/x.wav"], "--guidance"),
        ("guidance-negative", [*GEN, "--guidance", "-2", "--out", "{w}/x.wav"], "--guidance"),
        ("seed-negative", [*GEN, "--seed", "-1", "--out", "{w}/x.wav"], "--seed"),
        ("seed-23-digits", [*GEN, "--seed", "12345678901234567890123", "--out", "{w}/x.wav"], "--seed"),
        ("seed-overflow-pairs", [*caa[:-4], "--seed", str(2**32 - 1), "--out", "{w}/v.safetensors"], "--seed"),
        # devices, dtypes, models
        ("device-cuda", [*GEN, "--device", "cuda", "--out", "{w}/x.wav"], "cannot use it"),
        ("device-made-up", [*GEN, "--device", "banana", "--out", "{w}/x.wav"], "not a torch device"),
        ("device-cuda-7", [*GEN, "--device", "cuda:7", "--out", "{w}/x.wav"], "--device"),
        ("dtype-bogus", [*GEN, "--dtype", "int3", "--out", "{w}/x.wav"], "unknown dtype"),
        ("model-family", ["generate", "banana:/x", "--prompt", "p", "--out", "{w}/x.wav"], "unknown model family"),
        ("model-no-dir", ["generate", "stable-audio:/no/such", "--prompt", "p", "--out", "{w}/x.wav"], "no model dir"),
        (
            "model-random-size",
            ["generate", "random-huge:stable-audio", "--prompt", "p", "--out", "{w}/x.wav"],
            "unknown",
        ),
        ("model-no-colon", ["generate", "stable-audio", "--prompt", "p", "--out", "{w}/x.wav"], "model id"),
        # output paths
        ("out-directory", [*GEN, "--out", "{f}/adir"], "a directory"),
        ("out-proc", [*GEN, "--out", "/proc/tada-x.wav"], "cannot write"),
        ("out-sys", [*GEN, "--out", "/sys/tada/x.wav"], "cannot write"),
        ("out-mp3", [*GEN, "--out", "{w}/x.mp3"], "must end in .wav"),
        ("out-txt", [*GEN, "--out", "{w}/x.txt"], "must end in .wav"),
        ("out-under-file", [*GEN, "--out", "{f}/a-file/x.wav"], "cannot write"),
        ("caa-out-directory", [*caa, "--out", "{f}/adir"], "a directory"),
        ("caa-out-wav", [*caa, "--out", "{w}/v.wav"], "must end in .safetensors"),
        ("caa-work-dir-file", [*caa, "--work-dir", "{f}/a-file", "--out", "{w}/v.safetensors"], "is a file"),
        ("localize-window-backwards", [*loc, "--window", "0.5-0.2", "--out", "{w}/loc"], "0 <= START < END <= 1"),
        ("localize-mode-unknown", [*loc, "--mode", "sideways", "--out", "{w}/loc"], "--mode takes input"),
        ("localize-out-file", [*loc, "--out", "{w}/t.safetensors"], "is a directory"),
        ("localize-group-unknown", [*loc, "--group", "xattn.1+xattn.99", "--out", "{w}/loc"], "xattn.99"),
        ("localize-two-sources", [*loc, "--pairs", "{f}/two.csv", "--out", "{w}/loc"], "exactly one of"),
        # prompt pairs
        ("n-pairs-negative", [*caa[:4], "--n-pairs", "-1", "--out", "{w}/v.safetensors"], "--n-pairs"),
        ("n-pairs-zero", [*caa[:4], "--n-pairs", "0", "--out", "{w}/v.safetensors"], "--n-pairs"),
        ("n-pairs-too-many", [*caa[:4], "--n-pairs", "51", "--out", "{w}/v.safetensors"], "between 1 and 50"),
        (
            "csv-n-pairs-too-many",
            ["caa", MODEL, "--pairs", "{f}/two.csv", "--n-pairs", "3", "--out", "{w}/v.safetensors"],
            "between 1 and 2",
        ),
        ("batch-pairs-zero", [*caa, "--batch-pairs", "0", "--out", "{w}/v.safetensors"], "--batch-pairs"),
        ("concept-and-pairs", [*caa, "--pairs", "{f}/two.csv", "--out", "{w}/v.safetensors"], "exactly one"),
        ("neither-concept-nor-pairs", ["caa", MODEL, "--out", "{w}/v.safetensors"], "exactly one"),
        ("concept-unknown", ["caa", MODEL, "--concept", "banjo", "--out", "{w}/v.safetensors"], "unknown concept"),
        ("pairs-missing", ["caa", MODEL, "--pairs", "{f}/none.csv", "--out", "{w}/v.safetensors"], "no prompt-pair"),
        ("pairs-one-column", ["caa", MODEL, "--pairs", "{f}/one-column.csv", "--out", "{w}/v.safetensors"], "two"),
        ("pairs-empty", ["caa", MODEL, "--pairs", "{f}/empty.csv", "--out", "{w}/v.safetensors"], "no prompt pairs"),
        ("pairs-directory", ["caa", MODEL, "--pairs", "{f}/adir", "--out", "{w}/v.safetensors"], "prompt-pair"),
        ("sites-unknown", [*caa, "--sites", "xattn.99", "--out", "{w}/v.safetensors"], "no site"),
        ("localize-no-probe", ["localize", MODEL, "--pairs", "{f}/two.csv", "--out", "{w}/loc"], "--probe"),
        (
            "localize-unequal-swap",
            ["localize", "tada-mini", "--pairs", "{f}/swaps.csv", "--probe", "violin", "--out", "{w}/loc"],
            "different token counts",
        ),
        ("localize-empty-probe", [*loc, "--probe", " ", "--out", "{w}/loc"], "probe"),
        # steering vectors
        (
            "steer-alpha-nan",
            [*steer, "--steer", "{f}/good.safetensors:nan", "--out", "{w}/x.wav"],
            "caa takes alpha in",
        ),
        ("steer-alpha-word", [*steer, "--steer", "{f}/good.safetensors:lots", "--out", "{w}/x.wav"], "--steer"),
        ("steer-no-alpha", [*steer, "--steer", "{f}/good.safetensors", "--out", "{w}/x.wav"], "--steer"),
        ("steer-missing-file", [*steer, "--steer", "{f}/none.safetensors:2", "--out", "{w}/x.wav"], "no steering"),
        ("steer-garbage", [*steer, "--steer", "{f}/garbage.safetensors:2", "--out", "{w}/x.wav"], "not a readable"),
        ("steer-other-family", [*steer, "--steer", "{f}/ace.safetensors:2", "--out", "{w}/x.wav"], "ace-step-1.5"),
        ("steer-wrong-width", [*steer, "--steer", "{f}/narrow.safetensors:1", "--out", "{w}/x.wav"], "width"),
        ("steer-huge-vector", [*steer, "--steer", "{f}/huge.safetensors:1", "--out", "{w}/x.wav"], "non-finite audio"),
        ("steer-not-unit", [*steer, "--steer", "{f}/not-unit.safetensors:1", "--out", "{w}/x.wav"], "inconsistent"),
        ("steer-empty-table", [*steer, "--steer", "{f}/empty-table.safetensors:1", "--out", "{w}/x.wav"], "non-empty"),
        (
            "steer-mode-bogus",
            [*steer, "--steer", "{f}/good.safetensors:2", "--mode", "x", "--out", "{w}/x.wav"],
            "mode",
        ),
        (
            "steer-schedule-bogus",
            [*steer, "--steer", "{f}/good.safetensors:2", "--schedule", "soon", "--out", "{w}/x.wav"],
            "schedule",
        ),
        (
            "steer-schedule-reversed",
            [*steer, "--steer", "{f}/good.safetensors:2", "--schedule", "0.8-0.2", "--out", "{w}/x.wav"],
            "schedule",
        ),
        (
            "steer-site-not-in-file",
            [*steer, "--steer", "{f}/good.safetensors:2", "--sites", "xattn.0", "--out", "{w}/x.wav"],
            "no site xattn.0",
        ),
        # the corpus
        ("data-n-zero", ["data", "make", "--n", "0", "--out", "{w}/c"], "--n must be at least 1"),
        ("data-workers-zero", ["data", "make", "--n", "1", "--workers", "0", "--out", "{w}/c"], "--workers"),
        ("data-seed-negative", ["data", "make", "--n", "1", "--seed", "-1", "--out", "{w}/c"], "--seed"),
        (
            "data-seed-23-digits",
            ["data", "make", "--n", "1", "--seed", "12345678901234567890123", "--out", "{w}/c"],
            "--seed",
        ),
        ("data-out-file", ["data", "make", "--n", "1", "--out", "{f}/a-file"], "is a file"),
        (
            "data-soundfont-missing",
            ["data", "make", "--n", "1", "--soundfont", "{f}/none.sf2", "--out", "{w}/c"],
            "does not exist",
        ),
        (
            "data-soundfont-not-one",
            ["data", "make", "--n", "1", "--soundfont", "{f}/a-file", "--out", "{w}/c"],
            "soundfont",
        ),
        ("data-labels-empty-record", ["data", "make", "--n", "1", "--out", "{f}/bad-corpus"], "labels.jsonl:1"),
        # other commands
        ("sites-kind-bogus", ["sites", MODEL, "--kind", "bogus"], "--kind"),
        ("score-dev-null", ["score", "/dev/null", "--text", "a piano song"], "not a regular file"),
        ("score-missing", ["score", "{f}/none.wav", "--text", "a piano song"], "does not exist"),
        ("score-directory", ["score", "{f}/adir", "--text", "a piano song"], "not a regular file"),
        ("score-not-audio", ["score", "{f}/not-audio.wav", "--text", "a piano song"], "not-audio.wav"),
        ("score-empty-text", ["score", "{f}/not-audio.wav", "--text", ""], "--text"),
        ("unknown-command", ["bogus"], "No such command"),
        ("missing-option", ["generate", MODEL, "--out", "{w}/x.wav"], "Missing option"),
        (
            "scorer-threads-zero",
            ["scorer", "train", "--corpus", "{f}/adir", "--out", "{w}/s", "--threads", "0"],
            "--threads",
        ),
        (
            "mini-time-limit-nan",
            ["mini", "train", "--corpus", "{f}/adir", "--out", "{w}/m", "--time-limit", "nan"],
            "--time-limit",
        ),
        # the studio
        ("studio-port", ["studio", "random-tiny:tada-mini", "--port", "0"], "--port must be"),
        ("studio-artifact-missing", ["studio", "random-tiny:tada-mini", "--artifacts", "{f}/none"], "no artifact"),
        (
            "studio-artifact-other-model",
            ["studio", "random-tiny:tada-mini", "--artifacts", "{f}/ace.safetensors"],
            "ace-step",
        ),
        # importing the paper's artifacts
        ("import-missing", ["import", "{f}/nothing-here", "--out", "{w}/imported"], "nothing at"),
        ("import-not-an-artifact", ["import", "{f}/swaps.csv", "--out", "{w}/imported"], "not an artifact tada can"),
        ("import-pt-without-model", ["import", "{f}/piano_direction.pt", "--out", "{w}/imported"], "needs --model"),
        # listening studies
        ("study-clips-missing", ["study", "make", "--clips", "{f}/nope", "--out", "{w}/s"], "no folder of clips"),
        ("study-clips-empty", ["study", "make", "--clips", "{f}/adir", "--out", "{w}/s"], "no study items"),
        (
            "study-mushra-size-zero",
            ["study", "make", "--clips", "{f}/adir", "--out", "{w}/s", "--mushra-size", "0"],
            "--mushra-size",
        ),
        ("study-serve-not-a-study", ["study", "serve", "{f}/adir"], "is not a study"),
        ("study-serve-port", ["study", "serve", "{f}/adir", "--port", "70000"], "--port must be"),
        ("study-analyze-not-a-study", ["study", "analyze", "{f}/adir"], "is not a study"),
    ]


CASES = _cases()


def test_the_catalogue_is_large():
    assert len(CASES) >= 60 and len({case[0] for case in CASES}) == len(CASES)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert result.returncode == 2, result.stderr
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(line == errors[0] or "it/s" in line or "%|" in line for line in lines), result.stderr
    assert fragment in errors[0], errors[0]


@pytest.mark.parametrize("name,args,fragment", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_error_line(name, args, fragment, files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    before_inputs = _tree(files)
    result = run_cli(*(a.replace("{f}", str(files)).replace("{w}", str(work)) for a in args))
    assert_one_line_error(result, fragment)
    assert _tree(work) == set(), f"{name} left {sorted(_tree(work))}"
    assert _tree(tmp_path) == {"work"}
    assert _tree(files) == before_inputs


def _count_generations(monkeypatch) -> list[int]:
    from tada.adapters.base import Adapter

    calls: list[int] = []
    original = Adapter.generate

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Adapter, "generate", counted)
    return calls


def test_a_failed_final_write_keeps_the_parts_and_the_rerun_reuses_them(tmp_path, monkeypatch):
    out = tmp_path / "v.safetensors"
    args = ["caa", MODEL, "--concept", "piano", "--n-pairs", "4", "--batch-pairs", "2", *QUICK, "--out", str(out)]
    calls = _count_generations(monkeypatch)
    original_save = SteeringVector.save

    def full_disk(self, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(SteeringVector, "save", full_disk)
    assert_one_line_error(run_cli(*args), "No space left on device")
    parts = out.with_name(out.name + ".parts")
    assert len(calls) == 2 and len(list(parts.glob("chunk-*.safetensors"))) == 2 and not out.exists()

    monkeypatch.setattr(SteeringVector, "save", original_save)
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert len(calls) == 2, "the rerun generated again instead of reading the kept parts"
    assert out.is_file() and not parts.exists()


def test_a_run_that_failed_before_any_unit_does_not_block_the_corrected_one(tmp_path):
    work = tmp_path / "job.parts"
    UnitStore(work, {"steps": 0}).close()  # what a run that died in its first batch leaves
    with UnitStore(work, {"steps": 4}) as store:
        store.save("chunk-00000", {"x": torch.zeros(1)})
    with pytest.raises(Exception, match="different job"):
        UnitStore(work, {"steps": 8})  # finished units of another job are never mixed in


def test_a_failed_command_leaves_nothing_that_blocks_the_corrected_one(tmp_path):
    out = tmp_path / "v.safetensors"
    args = ["caa", MODEL, "--concept", "piano", "--n-pairs", "1", "--seconds", "1", "--out", str(out)]
    assert_one_line_error(run_cli(*args, "--steps", "0"), "--steps")
    result = run_cli(*args, "--steps", "3")
    assert result.returncode == 0, result.stderr
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["v.safetensors"]


def test_a_second_process_is_told_the_work_directory_is_taken(tmp_path):
    out = tmp_path / "v.safetensors"
    with UnitStore(out.with_name(out.name + ".parts"), {"owner": "someone else"}):
        result = run_cli("caa", MODEL, "--concept", "piano", "--n-pairs", "1", *QUICK, "--out", str(out))
    assert_one_line_error(result, "another tada process")
    assert not out.exists()


def test_a_csv_saved_with_a_byte_order_mark_keeps_its_header_out(tmp_path):
    from tada.concepts import read_pairs

    path = tmp_path / "pairs.csv"
    path.write_bytes('\ufeffpositive,negative\n"lofi, with piano",lofi\n'.encode())
    assert read_pairs(path) == [("lofi, with piano", "lofi")]


def test_help_and_models_import_neither_torch_nor_diffusers():
    commands = [
        "generate",
        "sites",
        "caa",
        "localize",
        "steer",
        "demo",
        "score",
        "data make",
        "data captions",
        "sae cache",
        "sae train",
        "sae report",
        "fit",
        "methods",
        "scorer train",
        "mini train",
        "bench",
        "studio",
        "study make",
        "study serve",
        "study analyze",
        "import",
    ]
    for args in (["--help"], ["models"], *([*command.split(), "--help"] for command in commands)):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "tada.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        assert result.returncode == 0, result.stderr[-2000:]
        imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
        assert not imported & {"torch", "diffusers", "transformers"}, (args, sorted(imported & {"torch", "diffusers"}))


def test_an_error_after_a_progress_bar_starts_on_its_own_line(monkeypatch):
    from tqdm import tqdm

    from tada import cli

    bar = tqdm(total=3, desc="working")
    bar.update()
    written = []
    monkeypatch.setattr(sys, "stderr", type("W", (), {"write": lambda self, s: written.append(s)})())
    cli._end_progress_line()
    bar.close()
    assert written == ["\n"]
