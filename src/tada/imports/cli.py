"""``tada import PATH --out DIR``: the paper's published artifacts as tada artifacts."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from ..errors import TadaError


def import_command(
    path: Path = typer.Argument(..., help="A published artifact: a CAA folder (config.json + sv.pkl)."),
    out: Path = typer.Option(..., help="Folder the tada artifacts (safetensors) are written to."),
) -> None:
    """Convert the paper's published artifacts into tada artifacts for the family ace-step-v1, reading their
    pickles with an allow-list that runs nothing from the file."""
    from .ace_step_v1 import import_caa

    if not path.exists():
        raise TadaError(f"nothing at {path}")
    if path.is_dir() and (path / "sv.pkl").is_file():
        vectors = import_caa(path)
    else:
        raise TadaError(f"{path} is not an artifact tada can import yet: a CAA folder holds sv.pkl and config.json")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", next(iter(vectors.values())).concept or path.name).strip("-") or "caa"
    for which, vector in vectors.items():
        target = out / (f"{stem}.safetensors" if which == "conditional" else f"{stem}-{which}-pass.safetensors")
        vector.save(target)
        sites = ", ".join(vector.sites[:3]) + (f" ... ({len(vector.sites)} sites)" if len(vector.sites) > 3 else "")
        typer.echo(f"{target}: CAA, {which} pass, {vector.timesteps.shape[0]} steps, {sites}")
