"""``tada import PATH --out DIR``: the paper's published artifacts as tada artifacts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer

from ..errors import TadaError

KINDS = (
    "a CAA folder (config.json + sv.pkl), an AUSteer austeer.pkl, an SAE score pickle, SAE folders "
    "(transformer_blocks.N.cross_attn/cfg.json + sae.safetensors), or a Concept Slider folder "
    "(pytorch_lora_weights.safetensors + train_config.json), or a token-embedding <concept>_direction.pt"
)


def import_command(
    path: Path = typer.Argument(..., help=f"A published artifact: {KINDS}."),
    out: Path = typer.Option(..., help="Folder the tada artifacts are written to."),
    k: int = typer.Option(2048, help="AUSteer: channels steered per step, over all layers (the paper's 2048)."),
    model: str | None = typer.Option(
        None, help="Token-embedding .pt files: the ace-step-v1:PATH model whose text projection maps the direction."
    ),
    sae: Path | None = typer.Option(
        None, help="SAE score pickles: the SAE folder of their layer; also writes the paper's SAE steering vector."
    ),
    top: int = typer.Option(20, help="With --sae: features kept per step."),
    score: str = typer.Option("tfidf", help="With --sae: the score features are ranked by (tfidf, diff, mean_pos)."),
) -> None:
    """Convert the paper's published ACE-Step v1 artifacts into tada artifacts (family ace-step-v1), reading
    their pickles with an allow-list that runs nothing from the file."""
    from . import ace_step_v1 as v1

    if not path.exists():
        raise TadaError(f"nothing at {path}")
    if path.is_dir() and (path / "sv.pkl").is_file():
        vectors = v1.import_caa(path)
        stem = _stem(next(iter(vectors.values())).concept or path.name)
        for which, vector in vectors.items():
            target = out / (f"{stem}.safetensors" if which == "conditional" else f"{stem}-{which}-pass.safetensors")
            _report(vector.save(target), f"CAA, {which} pass", vector)
    elif path.is_dir() and (path / v1.LORA_FILE).is_file():
        artifact = v1.import_concept_slider(path)
        target = out / f"{_stem(artifact.concept)}.safetensors"
        artifact.save(target)
        typer.echo(
            f"{target}: Concept Slider LoRA on {len(artifact.tensors) // 2} projections of {', '.join(artifact.sites)}"
        )
    elif path.is_dir():
        for folder in v1.import_sae(path, out):
            typer.echo(f"{folder}: SAE for {json.loads((folder / 'cfg.json').read_text())['tada']['site']}")
    elif path.suffix == ".pkl":
        _import_pickle(path, out, k, sae, top, score)
    elif path.suffix == ".pt":
        if model is None:
            raise TadaError(f"{path}: a token-embedding direction needs --model ace-step-v1:PATH (its text projection)")
        from ..adapters import load_model

        artifact = v1.import_token_embedding(path, load_model(model))
        target = out / f"{_stem(artifact.concept)}-token-embedding.safetensors"
        artifact.save(target)
        typer.echo(
            f"{target}: token-embedding direction at '{artifact.decorations.generic_word}', {len(artifact.sites)} sites"
        )
    else:
        raise TadaError(f"{path} is not an artifact tada can import: give {KINDS}")


def _import_pickle(path: Path, out: Path, k: int, sae: Path | None, top: int, score: str) -> None:
    from ..files import write_safetensors
    from . import ace_step_v1 as v1
    from .safe_pickle import load_pickle

    raw = load_pickle(path, tensors=True)
    if isinstance(raw, dict) and any(key in raw for key in v1.SCORE_KEYS):
        tables, concept = v1.import_sae_scores(path, raw)
        vector = v1.sae_vector_from_scores(tables, concept, sae, top, score) if sae is not None else None
        steps = next(iter(tables.values())).shape[0]
        target = out / f"{_stem(path.stem)}.safetensors"
        metadata = {
            "format": "tada/sae-scores",
            "format_version": "1",
            "family": v1.FAMILY,
            "concept": concept,
            "timesteps": json.dumps([round(float(t), 6) for t in v1.v1_timesteps(steps)]),
            "imported_from": path.name,
        }
        write_safetensors(target, tables, metadata)
        features = next(iter(tables.values())).shape[1]
        typer.echo(f"{target}: SAE feature scores ({', '.join(tables)}), {steps} steps x {features} features")
        if vector is not None:
            target = out / f"{_stem(concept or path.stem)}-sae.safetensors"
            vector.save(target)
            _report(target, f"SAE, top {top} features by {score}", vector)
    else:
        vector = v1.import_austeer(path, k, raw)
        target = out / f"{_stem(path.stem)}.safetensors"
        vector.save(target)
        _report(target, f"AUSteer, top {vector.settings['k']} channels per step", vector)


def _stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "imported"


def _report(target: Path, what: str, vector) -> None:
    sites = ", ".join(vector.sites[:3]) + (f" ... ({len(vector.sites)} sites)" if len(vector.sites) > 3 else "")
    typer.echo(f"{target}: {what}, {vector.timesteps.shape[0]} steps, {sites}")
