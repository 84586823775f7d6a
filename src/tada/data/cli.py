"""`tada data ...`: build the labelled procedural corpus."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(no_args_is_help=True, help="Build the labelled procedural music corpus.")


@data_app.command("make")
def make(
    n: int = typer.Option(..., help="Number of clips."),
    seed: int = typer.Option(0, help="Seed of the first clip; clip i has seed SEED + i."),
    out: Path = typer.Option(..., help="Corpus directory (audio/ and labels.jsonl); resumes if partly built."),
    workers: int = typer.Option(2, help="Rendering processes."),
    soundfont: str | None = typer.Option(None, help="General MIDI .sf2 (default: FluidR3_GM from Debian)."),
    mode_twins: bool = typer.Option(
        False,
        help="Also render each clip in the other mode (same notes by degree, "
        "same tonic): major/minor pairs for tada-mini's training.",
    ),
    gender_twins: bool = typer.Option(
        False,
        help="Also render each clip with vocals with the other gender's voice "
        "(same accompaniment, words and rhythm): female/male pairs.",
    ),
) -> None:
    """Render N labelled clips with FluidSynth and espeak-ng."""
    from .corpus import make_corpus

    report = make_corpus(
        n, seed, out, workers=workers, soundfont=soundfont, mode_twins=mode_twins, gender_twins=gender_twins
    )
    typer.echo(
        f"{out}: {report.clips} clips ({report.rendered} rendered now: {report.audio_seconds:.0f} s of audio "
        f"in {report.wall_seconds:.1f} s, {report.realtime_factor:.1f}x real time)"
    )


@data_app.command("captions")
def captions(
    n: int = typer.Option(..., help="Number of captions."),
    seed: int = typer.Option(0, help="Seed of the first caption; caption i describes the clip of seed SEED + i."),
    out: Path = typer.Option(..., help="Text file, one caption per line."),
) -> None:
    """Write N captions of procedural clips (no audio rendered): prompts for `tada sae cache`."""
    from .. import validate
    from ..files import write_text
    from .attributes import sample_spec
    from .captions import caption

    validate.count("--n", n, "how many captions", high=10_000_000)
    lines = [caption(sample_spec(seed + i)) for i in range(n)]
    write_text(out, "\n".join(lines) + "\n")
    typer.echo(f"{out}: {n} captions (seeds {seed} to {seed + n - 1})")
