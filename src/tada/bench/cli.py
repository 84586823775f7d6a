"""``tada bench``: the paper's benchmark, with intervals, resumable, locally or on Ray."""

from __future__ import annotations

from pathlib import Path

import typer

from .. import validate
from ..errors import TadaError


def bench(
    model: str = typer.Argument(
        ..., metavar="MODEL", help="Model id: FAMILY:PATH or random-tiny:FAMILY (see `tada models`)."
    ),
    concepts: str = typer.Option("all", help="Concept presets, comma-separated, or 'all'."),
    methods: str = typer.Option(
        "all", help="Methods (each global and localised) or variants (caa-local), comma-separated, or 'all'."
    ),
    scopes: str = typer.Option("global,local", help="Scopes every named method runs in: global, local or both."),
    prompts: int = typer.Option(16, help="Test prompts (spread over the ten genre groups)."),
    seeds: int = typer.Option(2, help="Noise seeds per prompt (intervals are over prompts and seeds)."),
    points: int = typer.Option(8, help="Alphas per direction, calibrated to reach the prompt-swap cutoff."),
    out: Path = typer.Option(
        ...,
        help="Run directory: units/ (the journal to commit), bench.sqlite, report, curves, audio; resumes.",
    ),
    executor: str = typer.Option("local", help="local (this process) or ray."),
    ray_address: str | None = typer.Option(None, help="Address of a running Ray cluster (default: start a local one)."),
    workers: int | None = typer.Option(None, help="Ray actors (default: the cluster's CPUs / --threads)."),
    threads: int | None = typer.Option(None, help="CPU threads per worker (Ray default 1)."),
    batch: int = typer.Option(16, help="Clips per denoising batch."),
    dtype: str = typer.Option("float32", help="Weights dtype of the model: float32, bfloat16 or float16."),
    device: str = typer.Option("cpu", help="Torch device the workers run the model and scorer on, e.g. cuda."),
    tuning_prompts: int = typer.Option(6, help="Held-out prompts the alpha grids are calibrated on."),
    fit_pairs: int = typer.Option(50, help="Base prompts each method is fitted on."),
    top: int = typer.Option(2, help="Layers a localised variant acts on (the top of each impact table)."),
    impact: Path | None = typer.Option(
        None, help="Impact tables to localise with ({concept}.safetensors or a `tada localize --out` directory)."
    ),
    artifacts: list[Path] = typer.Option(
        [],
        "--artifacts",
        help="Folders of fitted artifacts to reuse (same method, concept, scope, fit pairs, layers); repeatable.",
    ),
    sae: Path | None = typer.Option(None, help="Trained SAEs for the sae variants (`tada sae train` output)."),
    reference_clips: int = typer.Option(
        512, help="Held-out corpus clips the quality reference is made of (0: measure no quality)."
    ),
    metrics: str = typer.Option("probe", help="Alignment metrics: probe (offline scorer), clap, muq; comma-separated."),
    clap: str | None = typer.Option(None, help="CLAP weights directory (e.g. laion/larger_clap_music) for 'clap'."),
    muq: str | None = typer.Option(None, help="MuQ-MuLan weights directory for 'muq' (needs the muq package)."),
    seconds: float | None = typer.Option(None, help="Clip length in seconds (model default if omitted)."),
    steps: int | None = typer.Option(None, help="Denoising steps (model default if omitted)."),
    guidance: float | None = typer.Option(None, help="Classifier-free guidance scale (model default if omitted)."),
    bootstrap: int = typer.Option(1000, help="Bootstrap replicates for the 95% intervals."),
    report_only: bool = typer.Option(False, "--report-only", help="Write the report from what is stored; run nothing."),
) -> None:
    """Benchmark steering methods on the paper's protocol: calibrated alpha sweeps per concept and
    direction, alignment / preservation / quality per clip, AUC, smoothness and quality with
    bootstrap intervals, paired comparisons, and a report with curves and audio."""
    from ..adapters.registry import parse_dtype
    from .executors import make_executor
    from .plan import BenchSettings, parse_concepts, parse_variants
    from .report import write_report
    from .run import BenchRun

    validate.integer("--bootstrap", bootstrap, 100, 1_000_000, "bootstrap replicates")
    dtype = str(parse_dtype(dtype)).removeprefix("torch.")  # one name per dtype in the stored settings
    validate.generation(seconds, steps, guidance)
    validate.writable_directory(out, "--out", "the benchmark run")
    metric_list = [m.strip() for m in metrics.split(",") if m.strip()]
    unknown = [m for m in metric_list if m not in ("probe", "clap", "muq")]
    if unknown:
        raise TadaError(f"unknown alignment metric {unknown[0]!r}; choose probe, clap, muq")
    if "probe" not in metric_list:
        metric_list.insert(0, "probe")
    settings = BenchSettings(
        model=model,
        concepts=parse_concepts(concepts),
        variants=[v.name for v in parse_variants(methods, scopes)],
        prompts=prompts,
        seeds=seeds,
        points=points,
        seconds=seconds,
        steps=steps,
        guidance=guidance,
        batch=batch,
        tuning_prompts=tuning_prompts,
        fit_pairs=fit_pairs,
        top=top,
        metrics=metric_list,
        reference_clips=reference_clips,
        sae=str(sae) if sae else None,
        dtype=dtype,
    )
    run = BenchRun(settings, out)
    try:
        if not report_only:
            if impact is not None:
                taken = run.adopt_impact_tables(impact)
                if taken:
                    typer.echo(f"impact tables from {impact}: {', '.join(taken)}")
            ex = make_executor(
                executor,
                settings,
                out,
                address=ray_address,
                workers=workers,
                threads=threads,
                clap=clap,
                muq=muq,
                device=device,
            )
            try:
                run.run(ex, adopt=artifacts)
            finally:
                ex.close()
        paths = write_report(run, replicates=bootstrap)
    finally:
        run.close()
    typer.echo(paths["markdown"].read_text())
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())}")
