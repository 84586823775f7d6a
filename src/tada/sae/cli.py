"""`tada sae ...`: cache activations, train TopK SAEs, and report what their features learnt."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import TadaError

sae_app = typer.Typer(no_args_is_help=True, help="Sparse autoencoders: cache activations, train, report.")


@sae_app.command("cache")
def cache(
    model: str = typer.Argument(..., help="Model id (tada-mini, a hub id or a local directory)."),
    sites: str = typer.Option(..., help="Sites to cache, e.g. xattn.2,xattn.3 (cross-attention outputs)."),
    captions: Path | None = typer.Option(None, help="Text file of captions, one per line."),
    corpus: Path | None = typer.Option(None, help="Or a corpus directory from `tada data make` (its captions)."),
    n_captions: int | None = typer.Option(None, help="Use only the first N captions."),
    every: int = typer.Option(6, help="Cache every N-th denoising step (0, N, 2N, ...)."),
    rows: str = typer.Option("cond", help="Guidance pass to cache: cond, uncond or both."),
    seconds: float | None = typer.Option(None, help="Clip length in seconds (model default if omitted)."),
    steps: int | None = typer.Option(None, help="Denoising steps (model default if omitted)."),
    guidance: float | None = typer.Option(None, help="Guidance scale (model default if omitted)."),
    seed: int = typer.Option(0, help="Seed of caption 0; caption i uses seed + i."),
    batch: int = typer.Option(16, help="Captions generated together (one shard each)."),
    out: Path = typer.Option(..., help="Cache directory (shards, job.json, captions.txt); resumes."),
    dtype: str = typer.Option("float32", help="Weights dtype: float32, bfloat16 or float16."),
    device: str = typer.Option("cpu", help="Torch device, e.g. cpu or cuda."),
) -> None:
    """Generate from many captions and store the chosen sites' outputs (every token) in safetensors shards."""
    from .. import validate
    from ..cli import _load
    from .cache import ActivationCache, cache_activations, read_captions

    texts = read_captions(captions, corpus)
    validate.count("--n-captions", n_captions, "how many of the captions to use")
    if n_captions is not None:
        texts = texts[:n_captions]
    adapter = _load(model, dtype, device, progress=False)
    cache_activations(
        adapter,
        texts,
        sites,
        out,
        every=every,
        rows=rows,
        seconds=seconds,
        steps=steps,
        guidance=guidance,
        seed=seed,
        batch=batch,
    )
    done = ActivationCache(out)
    typer.echo(f"{out}: {len(texts)} captions, sites {', '.join(done.sites)}, steps {done.config['cached_steps']}")


@sae_app.command("train")
def train(
    cache_dir: Path = typer.Argument(..., metavar="CACHE", help="Activation cache from `tada sae cache`."),
    site: str = typer.Option(..., help="Cached site to train on (alias like xattn.3 or its hookpoint)."),
    expansion: int = typer.Option(4, help="Latents per input dimension."),
    k: int = typer.Option(24, help="Latents kept per token."),
    batch_topk: bool = typer.Option(False, help="Train with BatchTopK (threshold stored for inference)."),
    batch_size: int = typer.Option(4096, help="Activation vectors per step."),
    epochs: int = typer.Option(10, help="Passes over the training vectors."),
    lr: float | None = typer.Option(None, help="Adam learning rate (default 2e-4 / sqrt(latents / 16384))."),
    warmup: int = typer.Option(1000, help="Warm-up steps (at most a tenth of all steps)."),
    auxk_weight: float = typer.Option(1 / 32, help="Weight of the AuxK loss on dead latents."),
    dead_after: int = typer.Option(10_000_000, help="Vectors without firing before a latent counts as dead."),
    seed: int = typer.Option(0, help="Seed of the initialisation and batch order."),
    checkpoint_every: int = typer.Option(200, help="Steps between checkpoints."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    threads: int | None = typer.Option(None, help="CPU threads for torch (default: torch's choice)."),
    out: Path = typer.Option(..., help="SAE directory (one folder per hookpoint, sparsify's layout); resumes."),
) -> None:
    """Train a TopK SAE on one cached site; report held-out FVU, L0 and dead latents; plot the loss."""
    import torch

    from .train import TrainSettings, train_sae

    if threads is not None:
        torch.set_num_threads(max(1, threads))
    settings = TrainSettings(
        expansion=expansion,
        k=k,
        batch_topk=batch_topk,
        batch_size=batch_size,
        epochs=epochs,
        lr=lr,
        warmup=warmup,
        auxk_weight=auxk_weight,
        dead_after=dead_after,
        seed=seed,
        checkpoint_every=checkpoint_every,
        device=device,
    )
    sae, report = train_sae(cache_dir, site, out, settings)
    held, seen = report["held_out"], report["training_set"]
    typer.echo(
        f"{out / report['hookpoint']}: {sae.num_latents} latents, k {sae.k}; held-out FVU {held['fvu']:.4f}, "
        f"L0 {held['l0']:.1f}, never firing on {held['vectors']} held-out vectors {held['dead_share']:.1%}, "
        f"dead (never firing on the {seen['vectors']} training vectors) {seen['dead_share']:.1%}"
    )


@sae_app.command("evaluate")
def evaluate_command(
    sae_dir: Path = typer.Argument(..., metavar="SAE_DIR", help="SAE directory (or one hookpoint folder)."),
    cache_dir: Path = typer.Argument(..., metavar="CACHE", help="Activation cache to evaluate on."),
    part: str = typer.Option(
        "all", help="Vectors to use: all, train or held-out (every 20th caption, as training reports them)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures to this JSON file."),
) -> None:
    """FVU, L0 and the share of latents that never fire, per SAE, on the vectors of an activation cache
    (for example one made from captions the SAEs never saw)."""
    from .train import evaluate_on_cache

    rows = evaluate_on_cache(sae_dir, cache_dir, part=part)
    typer.echo("| site | hookpoint | vectors | FVU | L0 | never fire |")
    typer.echo("|---|---|---|---|---|---|")
    for row in rows:
        typer.echo(
            f"| {row['site']} | {row['hookpoint']} | {row['vectors']} | {row['fvu']:.4f} | {row['l0']:.1f} "
            f"| {row['dead_share']:.1%} |"
        )
    if json_out is not None:
        import json

        from ..files import write_text

        write_text(json_out, json.dumps({"cache": str(cache_dir), "part": part, "saes": rows}, indent=1))


@sae_app.command("report")
def report(
    sae_dir: Path = typer.Argument(..., metavar="SAE_DIR", help="SAE directory (or one hookpoint folder)."),
    model: str = typer.Argument(..., help="The model the SAE was trained on."),
    concept: str | None = typer.Option(None, help="Rank features by this concept preset's scores."),
    cache_dir: Path | None = typer.Option(None, "--cache", help="Activation cache (default: the SAE's own)."),
    features: int = typer.Option(12, help="How many top features to show per SAE."),
    examples: int = typer.Option(4, help="Captions (with audio) shown per feature."),
    n_pairs: int = typer.Option(16, help="Concept pairs used to score features (with --concept)."),
    out: Path = typer.Option(..., help="Output directory: index.html, report.md, audio/, figures."),
) -> None:
    """An HTML page (and markdown) of the top features: captions and audio that activate them most,
    their timestep profile and their concept scores."""
    from ..cli import _load
    from .report import write_report

    if features < 1 or examples < 1:
        raise TadaError("--features and --examples must be at least 1")
    adapter = _load(model, "float32", "cpu", progress=False)
    page = write_report(
        sae_dir, adapter, out, concept=concept, cache_dir=cache_dir, top=features, examples=examples, n_pairs=n_pairs
    )
    typer.echo(f"wrote {page}")
