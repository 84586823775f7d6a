"""``tada studio``: the sliders in the browser."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import TadaError


def studio(
    model: str = typer.Argument(
        "tada-mini", metavar="[MODEL]", help="Model id (default: tada-mini, the bundled model; see `tada models`)."
    ),
    artifacts: list[Path] = typer.Option(
        [], "--artifacts", help="A steering artifact, or a folder of them (searched recursively); repeatable."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to serve on (localhost only unless told otherwise)."),
    port: int = typer.Option(7860, help="Port to serve on."),
    export_dir: Path | None = typer.Option(None, help="Where exported takes go (default: a new temporary folder)."),
    dtype: str = typer.Option("float32", help="Weights dtype: float32, bfloat16 or float16."),
    device: str = typer.Option("cpu", help="Torch device, e.g. cpu or cuda."),
) -> None:
    """Steer a model with sliders in the browser: unsteered and steered takes from the same seed, an
    A/B switch, spectrograms, scores, a history, grids of alphas for instant scrubbing, and export."""
    from .. import validate
    from .app import StudioApp, launch
    from .takes import Studio

    validate.integer("--port", port, 1, 65535, "a TCP port")
    engine = Studio(model, dtype=dtype, device=device)
    for path in artifacts:
        if path.is_dir():
            engine.add_folder(path)
        elif path.is_file():
            engine.add_artifact(path)
        else:
            raise TadaError(f"no artifact or folder at {path}")
    for problem in engine.problems:
        typer.echo(f"skipped: {problem}", err=True)
    if not engine.sliders:
        typer.echo("no sliders: give steering artifacts with --artifacts DIR (`tada fit`, `tada caa`)", err=True)
    typer.echo(f"tada studio: {model}, {len(engine.sliders)} sliders, on http://{host}:{port}")
    launch(StudioApp(engine, export_dir), host=host, port=port, quiet=True)
