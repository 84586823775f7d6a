"""`tada data make` on bad input: one `error:` line and exit code 2, no hang, no labels lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from tada.data import corpus
from tada.data.corpus import LABELS, make_corpus, read_labels
from tada.errors import TadaError


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def run_python(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run Python in a new process group with a deadline; a hang kills the whole group and fails the test."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the pool's workers too
        proc.communicate()
        pytest.fail(f"still running after {timeout} s: {args}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.fixture
def not_a_soundfont(tmp_path) -> Path:
    path = tmp_path / "notes.sf2"
    path.write_text("this is a text file, not a soundfont\n")
    return path


def test_unloadable_soundfont_is_one_error_not_a_hang(tmp_path, not_a_soundfont):
    out = tmp_path / "corpus"
    args = ("data", "make", "--n", "2", "--seed", "0", "--out", str(out), "--soundfont", str(not_a_soundfont))
    result = run_python("-m", "tada.cli", *args)
    assert_one_line_error(result, str(not_a_soundfont), "soundfont")
    assert not out.exists()  # refused before anything was written


def test_worker_start_failure_ends_the_pool(tmp_path, not_a_soundfont):
    # Past the parent's check (skipped here), a worker that cannot load its renderer ends the run.
    script = (
        "import sys; from tada.data import corpus; from tada.errors import TadaError\n"
        "corpus.check_soundfont = lambda path: None\n"
        "try:\n"
        f"    corpus.make_corpus(2, 0, {str(tmp_path / 'corpus')!r}, workers=2, soundfont={str(not_a_soundfont)!r},"
        " progress=False)\n"
        "except TadaError as exc:\n"
        "    print('refused:', exc); sys.exit(2)\n"
    )
    result = run_python("-c", script)
    assert result.returncode == 2 and "refused:" in result.stdout and "soundfont" in result.stdout, result


def test_missing_soundfont_names_the_file(tmp_path):
    missing = tmp_path / "nowhere.sf2"
    result = run_cli("data", "make", "--n", "1", "--out", str(tmp_path / "corpus"), "--soundfont", str(missing))
    assert_one_line_error(result, str(missing), "does not exist")
    assert "fluid-soundfont-gm" not in result.stderr


def test_out_that_is_a_file(tmp_path):
    out = tmp_path / "corpus.txt"
    out.write_text("keep me\n")
    result = run_cli("data", "make", "--n", "1", "--out", str(out))
    assert_one_line_error(result, str(out), "is a file")
    assert out.read_text() == "keep me\n"


def seeds_in(out: Path) -> list[tuple[int, str | None]]:
    return [(r["seed"], r.get("twin_of")) for r in map(json.loads, (out / LABELS).read_text().splitlines())]


def test_later_runs_with_other_settings_keep_every_label(tmp_path):
    out = tmp_path / "corpus"
    assert run_cli("data", "make", "--n", "2", "--seed", "0", "--out", str(out), "--workers", "1").returncode == 0
    assert seeds_in(out) == [(0, None), (1, None)]
    for args in (("--n", "1", "--seed", "0"), ("--n", "1", "--seed", "1")):  # a smaller --n, another --seed
        result = run_cli("data", "make", *args, "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert seeds_in(out) == [(0, None), (1, None)], args
        assert "2 clips (0 rendered now" in result.stdout
    result = run_cli("data", "make", "--n", "1", "--seed", "5", "--out", str(out), "--workers", "1", "--mode-twins")
    assert result.returncode == 0, result.stderr
    assert seeds_in(out) == [(0, None), (1, None), (5, None), (5, "clip-000000005")]  # merged, in label order
    assert len(list((out / "audio").glob("*.wav"))) == 4


@pytest.mark.parametrize("bad", ["{}", '{"id": "clip-000000000"}', "[1, 2]", '{"id": 3, "path": "a.wav", "seed": 0}'])
def test_label_line_without_id_or_path(tmp_path, bad):
    out = tmp_path / "corpus"
    (out / "audio").mkdir(parents=True)
    (out / LABELS).write_text(f'{{"id": "x", "path": "audio/x.wav", "seed": 0}}\n{bad}\n')
    with pytest.raises(TadaError, match=f"{LABELS}:2 is not a valid label line"):
        read_labels(out)
    result = run_cli("data", "make", "--n", "1", "--out", str(out))
    assert_one_line_error(result, f"{out / LABELS}:2", "not a valid label line")
    assert (out / LABELS).read_text().endswith(f"{bad}\n")  # the file is left as it was


def test_scorer_reads_bad_labels_as_one_error(tmp_path):
    from tada.scorer.labels import read_labels as scorer_labels

    (tmp_path / LABELS).write_text("{}\n")
    with pytest.raises(TadaError, match=f"{LABELS}:1 is not a valid label line"):
        scorer_labels(tmp_path)
    (tmp_path / LABELS).write_bytes(b'{"id": "\xff"}\n')
    with pytest.raises(TadaError, match="UTF-8"):
        scorer_labels(tmp_path)
    with pytest.raises(TadaError, match="UTF-8"):
        read_labels(tmp_path)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (("--n", "0"), ("--n must be at least 1", "got 0")),
        (("--n", "-3"), ("--n must be at least 1",)),
        (("--n", "1", "--workers", "0"), ("--workers must be at least 1", "got 0")),
        (("--n", "1", "--seed", "-1"), ("--seed must be between 0 and 4294967295", "got -1")),
        (("--n", "1", "--seed", "12345678901234567890123"), ("--seed must be between 0 and", "32-bit")),
        (("--n", "2", "--seed", "4294967295"), ("--seed must be between 0 and 4294967294 with --n 2",)),
    ],
)
def test_settings_are_checked_before_any_work(tmp_path, args, fragments):
    out = tmp_path / "corpus"
    result = run_cli("data", "make", *args, "--out", str(out))
    assert_one_line_error(result, *fragments)
    assert not out.exists()


def test_worker_init_error_is_raised_by_the_first_job(monkeypatch, not_a_soundfont):
    monkeypatch.setattr(corpus, "_renderer", None)
    monkeypatch.setattr(corpus, "_init_error", None)
    corpus._init_worker(str(not_a_soundfont))  # must not raise: a pool would restart the worker forever
    with pytest.raises(TadaError, match="soundfont"):
        corpus._make_clip((0, None, "unused"))


def test_library_callers_get_the_same_checks(tmp_path):
    with pytest.raises(TadaError, match="--workers must be at least 1"):
        make_corpus(1, 0, tmp_path / "corpus", workers=0, progress=False)
