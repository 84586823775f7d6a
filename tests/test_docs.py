"""The front door cannot rot: the README's quickstarts run, every relative link resolves,
and the committed CLI reference is the one the CLI generates."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def markdown_files() -> list[Path]:
    files = sorted(ROOT.glob("*.md"))
    for folder in ("docs", "benchmarks", "research"):
        files += sorted((ROOT / folder).rglob("*.md"))
    return files


def block_after(marker: str) -> str:
    """The fenced code block that follows ``<!-- MARKER`` in the README."""
    text = README.read_text()
    start = text.index(f"<!-- {marker}")
    match = FENCE.search(text, start)
    assert match is not None, f"no code block after {marker}"
    return match.group(1)


def cli_lines(block: str) -> list[list[str]]:
    """Shell lines of a code block: continuations joined, comments dropped, split like a shell."""
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    seen: dict[str, int] = {}
    found = set()
    for line in text.splitlines():
        if line.startswith("#"):
            base = slug(line.lstrip("#"))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def test_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; records belong in docs/"
    blocks = FENCE.findall(README.read_text())
    assert [b.strip() for b in blocks[:2]] == ["make demo", "make test"]


def test_every_relative_link_resolves():
    broken = []
    for path in markdown_files():
        for target in LINK.findall(FENCE.sub("", path.read_text())):
            if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{path.relative_to(ROOT)}: {target} (no heading #{anchor})")
    assert len(markdown_files()) >= 8
    assert not broken, "\n".join(broken)


def test_link_checker_catches_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A title\n\n[ok](#a-title) [bad](#no-such) [gone](missing.md)\n")
    targets = LINK.findall(page.read_text())
    assert targets == ["#a-title", "#no-such", "missing.md"]
    assert anchors(page) == {"a-title"} and not (tmp_path / "missing.md").exists()


def test_cli_reference_is_current(tmp_path):
    generated = tmp_path / "cli.md"
    subprocess.run(
        [sys.executable, "-m", "typer", "tada.cli", "utils", "docs", "--name", "tada", "--output", str(generated)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    committed = (ROOT / "docs" / "cli.md").read_text()
    assert generated.read_text() == committed, "docs/cli.md is stale: run `make docs` and commit it"
    for command in ("caa", "steer", "localize", "data make", "mini train", "scorer train"):
        assert f"## `tada {command}`" in committed


def test_python_quickstart_runs(tmp_path, monkeypatch):
    code, n = re.subn(r'concept_pairs\("(\w+)", \d+\)', r'concept_pairs("\1", 2)', block_after("quickstart:python"))
    assert n == 1, "the quickstart's pair count is what this test shrinks"
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md quickstart", "exec"), scope)
    model, audio = scope["model"], scope["audio"]
    assert (tmp_path / "piano.safetensors").is_file() and (tmp_path / "calm-with-piano.wav").is_file()
    assert not model.engine.active  # the with-block removed every hook
    plain = model.generate("a calm tune for a rainy afternoon", seed=0)
    assert audio.samples.shape == plain.samples.shape and not np.array_equal(audio.samples, plain.samples)


def test_cli_quickstart_runs(tmp_path):
    """Each line in order (later lines read what earlier ones wrote), with two prompt pairs."""
    lines = cli_lines(block_after("quickstart:cli"))
    assert len(lines) >= 5 and all(args[0] == "tada" for args in lines)
    for args in lines:
        args = args[1:]
        if "--n-pairs" in args:
            args[args.index("--n-pairs") + 1] = "2"
        args = [
            str(tmp_path / a) if re.search(r"\.(safetensors|wav|png)(:[-\d.]+)?$", a) or args[i - 1] == "--out" else a
            for i, a in enumerate(args)
        ]
        result = run_cli(*args)
        assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"
        for flag in ("--out", "--plot"):
            if flag in args:
                assert Path(args[args.index(flag) + 1]).exists(), f"{' '.join(args)} wrote no {flag}"
