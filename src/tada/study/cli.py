"""``tada study make | serve | analyze``: a blind listening study of steered clips."""

from __future__ import annotations

import signal
from pathlib import Path

import typer

study_app = typer.Typer(
    no_args_is_help=True, help="Blind listening studies: make one from steered clips, serve it, analyse the answers."
)


@study_app.command("make")
def make(
    clips: Path = typer.Option(
        ...,
        help="Clips: DIR/<item>/reference.wav beside DIR/<item>/<condition>.wav, or a `tada bench` run directory.",
    ),
    out: Path = typer.Option(..., help="The new study folder (never overwritten)."),
    conditions: str | None = typer.Option(None, help="Comma-separated conditions to keep (default: all)."),
    change: str | None = typer.Option(None, help='The change asked for, for every item, e.g. "toward more piano".'),
    ab_trials: int = typer.Option(0, help="A/B pairs per rater (0: every pair of every item)."),
    mushra_pages: int = typer.Option(0, help="MUSHRA pages per rater (0: every page)."),
    mushra_size: int = typer.Option(6, help="Conditions per MUSHRA page, besides the hidden reference and anchor."),
    checks: int = typer.Option(2, help="Attention checks per rater (a steered clip against the anchor)."),
    require_listening: bool = typer.Option(True, help="Every clip of a page must be played before answering."),
    loudness_db: float = typer.Option(-20.0, help="RMS level (dBFS) every clip of an item is brought to."),
    seed: int = typer.Option(0, help="Seed of the trial lists and of every rater's order and sides."),
) -> None:
    """Make a blind study: pairwise A/B pages and MUSHRA pages with a hidden reference and a 3.5 kHz anchor,
    loudness-matched anonymous clips, randomised order and sides per rater, attention checks."""
    from .design import StudySettings
    from .make import make_study

    settings = StudySettings(
        seed=seed,
        ab_trials=ab_trials,
        mushra_pages=mushra_pages,
        mushra_size=mushra_size,
        checks=checks,
        require_listening=require_listening,
        loudness_db=loudness_db,
    )
    keep = [c.strip() for c in conditions.split(",") if c.strip()] if conditions else None
    study = make_study(clips, out, settings, keep, change)
    n_conditions = len({c for item in study.items.values() for c in item.conditions})
    plan = study.plan(0)
    typer.echo(
        f"study in {out}: {len(study.items)} items, {n_conditions} conditions, {len(study.pairs)} A/B pairs, "
        f"{len(study.pages)} MUSHRA pages; each rater gets {len(plan)} pages. Serve it with `tada study serve {out}`"
    )


@study_app.command("serve")
def serve(
    study: Path = typer.Argument(..., help="A study folder from `tada study make`."),
    host: str = typer.Option("127.0.0.1", help="Address to serve on (localhost only unless told otherwise)."),
    port: int = typer.Option(8765, help="Port to serve on."),
) -> None:
    """Serve the study's pages; each answer is in STUDY/answers.sqlite before the page moves on."""
    from .. import validate
    from .design import Study
    from .server import StudyServer

    validate.integer("--port", port, 1, 65535, "a TCP port")
    server = StudyServer(Study.load(study), host, port)
    typer.echo(f"tada study: {study} on {server.url} (Ctrl-C stops; answers are saved as they come)")

    def stop(signum: int, frame: object) -> None:  # SIGTERM stops as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped; every submitted answer is saved")


@study_app.command("analyze")
def analyze(
    study: Path = typer.Argument(..., help="A study folder with answers."),
    out: Path | None = typer.Option(None, help="Where report.md, results.json, preference.png go (STUDY/analysis)."),
    replicates: int = typer.Option(2000, help="Bootstrap replicates (raters redrawn)."),
    max_failed_checks: int = typer.Option(0, help="Attention checks a rater may fail and still be kept."),
    keep_all: bool = typer.Option(False, help="Keep every rater, screened or not."),
) -> None:
    """Per-condition preference (win rate, Bradley-Terry) and quality (MUSHRA) with 95% intervals, agreement
    between raters (Krippendorff's alpha), a plot."""
    from .. import validate
    from .analyze import analyze as run_analysis
    from .analyze import write_analysis
    from .design import Study

    validate.integer("--replicates", replicates, 10, 1_000_000, "bootstrap replicates")
    validate.integer("--max-failed-checks", max_failed_checks, 0, 1000, "attention checks")
    loaded = Study.load(study)
    result = run_analysis(loaded, replicates=replicates, max_failed_checks=max_failed_checks, keep_all=keep_all)
    folder = write_analysis(loaded, result, out)
    typer.echo((folder / "report.md").read_text(encoding="utf-8"))
    typer.echo(f"written: {folder}/report.md, results.json, preference.png")
