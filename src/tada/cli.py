"""The ``tada`` command line. Every user error ends in one ``error: ...`` line, exit code 2."""

from __future__ import annotations

import os
import sys

# PyTorch's CPU allocator maps large tensors fresh each time; without transparent huge
# pages every 4 KiB page of them faults on first touch. Training on the 2-core machines
# measured 1.9-2.5 s/step without this and 1.4 s/step with it (tada scorer train).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
from pathlib import Path

import typer

from . import validate
from .bench.cli import bench as bench_command
from .data.cli import data_app
from .errors import TadaError
from .imports.cli import import_command
from .sae.cli import sae_app
from .studio.cli import studio as studio_command
from .study.cli import study_app

SITE_KINDS = ("xattn", "xattn_in", "attn")
WAV = (".wav",)
SAFETENSORS = (".safetensors",)
PLOTS = (".png", ".pdf", ".svg")
DEMO_ALPHA = 2.0  # tada-mini: about one median token norm of its cross-attention outputs

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Steer text-to-music diffusion models from the inside.",
)
app.add_typer(data_app, name="data")
app.add_typer(sae_app, name="sae")
app.add_typer(study_app, name="study")
app.command(name="bench")(bench_command)
app.command(name="studio")(studio_command)
app.command(name="import")(import_command)

MODEL_ARG = typer.Argument(
    ..., metavar="MODEL", help="Model id: FAMILY:PATH or random-tiny:FAMILY (see `tada models`)."
)
DTYPE_OPT = typer.Option("float32", help="Weights dtype: float32, bfloat16 or float16.")
DEVICE_OPT = typer.Option("cpu", help="Torch device, e.g. cpu or cuda.")
THREADS_OPT = typer.Option(None, help="CPU threads for torch (default: torch's choice).")
TIME_LIMIT_OPT = typer.Option(None, help="Stop (with a checkpoint) after this many minutes; run again to go on.")
SECONDS_OPT = typer.Option(None, help="Clip length in seconds (model default if omitted).")
STEPS_OPT = typer.Option(None, help="Denoising steps (model default if omitted).")
GUIDANCE_OPT = typer.Option(None, help="Classifier-free guidance scale (model default if omitted).")
N_PAIRS_OPT = typer.Option(None, help="Use only the first N pairs.")
WORK_DIR_OPT = typer.Option(None, help="Where partial results go (default: OUT.parts); resumes.")
PAIR_SEED_OPT = typer.Option(0, help="Seed of pair 0; pair i uses seed + i for both prompts.")
BATCH_PAIRS_OPT = typer.Option(4, help="Pairs generated together in one batch.")


def _training_budget(threads: int | None, time_limit: float | None) -> float | None:
    """Apply ``--threads``; return ``--time-limit`` in seconds."""
    validate.count("--threads", threads, "CPU threads", high=1024)
    if time_limit is not None:
        validate.finite("--time-limit", time_limit, 0.0, 10**6, "minutes", low_open=True)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return None if time_limit is None else 60 * time_limit


def _load(model_id: str, dtype: str, device: str, progress: bool = True):
    from .adapters import load_model

    _quiet_libraries()
    validate.device(device)
    model = load_model(model_id, dtype=dtype, device=device)
    if progress and hasattr(model, "pipeline"):
        model.pipeline.set_progress_bar_config(disable=False, leave=False, desc="denoising")
    return model


def _prompt_pairs(concept: str | None, pairs: Path | None, n_pairs: int | None) -> tuple[list, dict]:
    """The pairs of a concept preset or of a CSV file (exactly one given), and where they came from."""
    from .concepts import concept_pairs, read_pairs

    if (concept is None) == (pairs is None):
        raise TadaError("give exactly one of --concept or --pairs")
    validate.count("--n-pairs", n_pairs, "how many of the prompt pairs to use")
    if concept is not None:
        prompt_pairs = concept_pairs(concept, n_pairs)
        return prompt_pairs, {"source": "preset", "concept": concept, "n_pairs": len(prompt_pairs)}
    prompt_pairs = read_pairs(pairs, n_pairs)
    return prompt_pairs, {"source": str(pairs), "n_pairs": len(prompt_pairs)}


def _job_arguments(
    n_pairs: int,
    what: str,
    *,
    sites: str | None,
    seconds: float | None,
    steps: int | None,
    guidance: float | None,
    seed: int,
    batch_pairs: int,
    out: Path,
    work_dir: Path | None,
    concept: str,
) -> dict:
    """Check what a resumable job over prompt pairs (CAA, localisation) is given, before anything is
    loaded, and return it as the keyword arguments both job functions take."""
    validate.generation(seconds, steps, guidance, seed, n_seeds=n_pairs)
    validate.count("--batch-pairs", batch_pairs, "prompt pairs generated together", high=10_000)
    validate.output_file(out, SAFETENSORS, what)
    work_dir = validate.work_directory(work_dir or out.with_name(out.name + ".parts"))
    return {
        "sites": sites,
        "seconds": seconds,
        "steps": steps,
        "guidance": guidance,
        "seed": seed,
        "batch_pairs": batch_pairs,
        "work_dir": work_dir,
        "concept": concept,
        "out": out,
    }


def _parse_steer(spec: str) -> tuple[Path, float]:
    path, sep, alpha = spec.rpartition(":")
    try:
        if not sep:
            raise ValueError
        return Path(path), float(alpha)
    except ValueError:
        raise TadaError(f"cannot read --steer {spec!r}: use PATH.safetensors:ALPHA, e.g. piano.safetensors:8") from None


@app.command()
def models() -> None:
    """List the model ids tada understands."""
    from .adapters.kinds import model_kinds

    for kind in model_kinds():  # from the family names alone: no torch import
        typer.echo(f"{kind.pattern:32s} {kind.description}")


@app.command()
def sites(
    model: str = MODEL_ARG,
    kind: str | None = typer.Option(None, help="Only this kind: xattn, xattn_in or attn."),
    dtype: str = DTYPE_OPT,
) -> None:
    """List a model's sites: alias, module path and tensor."""
    if kind is not None and kind not in SITE_KINDS:
        raise TadaError(f"--kind {kind!r}: choose one of {', '.join(SITE_KINDS)}")
    adapter = _load(model, dtype, "cpu", progress=False)
    typer.echo(adapter.describe())
    for site in adapter.sites.values():
        if kind is None or site.kind == kind:
            typer.echo(f"{site.alias:16s} {site.path:60s} {site.tensor}")


@app.command()
def generate(
    model: str = MODEL_ARG,
    prompt: str = typer.Option(..., help="Text prompt."),
    seconds: float | None = SECONDS_OPT,
    steps: int | None = STEPS_OPT,
    guidance: float | None = GUIDANCE_OPT,
    seed: int = typer.Option(0, help="Noise seed."),
    out: Path = typer.Option(..., help="Output WAV (32-bit float)."),
    dtype: str = DTYPE_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """Generate one clip without steering."""
    validate.generation(seconds, steps, guidance, seed)
    validate.output_file(out, WAV, "the audio file")
    adapter = _load(model, dtype, device)
    audio = adapter.generate(prompt, seconds=seconds, steps=steps, guidance=guidance, seed=seed)
    typer.echo(f"wrote {audio.save(out)} ({audio.seconds:.2f} s at {audio.sample_rate} Hz)")


@app.command()
def caa(
    model: str = MODEL_ARG,
    concept: str | None = typer.Option(None, help="A concept preset (piano, mood, tempo, ...)."),
    pairs: Path | None = typer.Option(None, help="CSV of (positive, negative) prompt pairs."),
    n_pairs: int | None = N_PAIRS_OPT,
    sites_: str | None = typer.Option(None, "--sites", help="Comma-separated site aliases (default: every xattn)."),
    seconds: float | None = SECONDS_OPT,
    steps: int | None = STEPS_OPT,
    guidance: float | None = GUIDANCE_OPT,
    seed: int = PAIR_SEED_OPT,
    batch_pairs: int = BATCH_PAIRS_OPT,
    work_dir: Path | None = WORK_DIR_OPT,
    out: Path = typer.Option(..., help="Output .safetensors steering vector."),
    dtype: str = DTYPE_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """Compute a contrastive activation addition (CAA) steering vector (`tada fit --method caa`)."""
    from .caa import compute_caa
    from .concepts import get_concept

    prompt_pairs, prompt_set = _prompt_pairs(concept, pairs, n_pairs)
    job = _job_arguments(
        len(prompt_pairs),
        "a steering vector",
        sites=sites_,
        seconds=seconds,
        steps=steps,
        guidance=guidance,
        seed=seed,
        batch_pairs=batch_pairs,
        out=out,
        work_dir=work_dir,
        concept=concept or pairs.stem,
    )
    adapter = _load(model, dtype, device, progress=False)
    decorations = get_concept(concept) if concept else None
    vector = compute_caa(adapter, prompt_pairs, prompt_set=prompt_set, decorations=decorations, **job)
    typer.echo(f"wrote {out}: {len(vector.sites)} sites x {len(vector.timesteps)} timesteps, {len(prompt_pairs)} pairs")


@app.command()
def localize(
    model: str = MODEL_ARG,
    concept: str | None = typer.Option(None, help="Concept presets, comma-separated, or 'all'."),
    features: str | None = typer.Option(
        None, help="The paper's swap features (violin,female,...) or 'all', applied to --captions."
    ),
    captions: Path | None = typer.Option(
        None, help="Caption pool for --features: a text file, a CSV with a caption column, or a corpus directory."
    ),
    pool_words: bool = typer.Option(
        False, "--pool-words", help="With --features: only twins whose words all occur in the caption pool."
    ),
    pairs: Path | None = typer.Option(None, help="CSV of (clean, corrupted[, probe]) twins."),
    probe: str | None = typer.Option(None, help="Probe text for --pairs rows without one."),
    n_pairs: int | None = typer.Option(None, help="Use at most N pairs per concept or feature."),
    seeds: int = typer.Option(1, help="Noise seeds per pair (intervals are over pairs and seeds)."),
    mode: str = typer.Option("input", help="Comma-separated: input (patch text input), output, ablate."),
    group: list[str] = typer.Option(
        [], "--group", help="Also patch these layers together: xattn.2+xattn.3, or 'all'; repeatable."
    ),
    window: list[str] = typer.Option(
        [], "--window", help="Also run each column only in this part of the trajectory, e.g. 0-0.5; repeatable."
    ),
    sites_: str | None = typer.Option(None, "--sites", help="Single layers to patch (default: every one)."),
    singles: bool = typer.Option(True, "--singles/--no-singles", help="Patch each layer on its own too."),
    seconds: float | None = SECONDS_OPT,
    steps: int | None = STEPS_OPT,
    guidance: float | None = GUIDANCE_OPT,
    seed: int = typer.Option(0, help="Seed of unit 0; pair i with seed index s uses seed + s * pairs + i."),
    batch_pairs: int = typer.Option(8, help="Units (pair x seed) whose clean and corrupted runs share a batch."),
    max_rows: int | None = typer.Option(
        None, help="Samples per patched batch (default: 2 x --batch-pairs on CPU, 8 x on GPU)."
    ),
    bootstrap: int = typer.Option(2000, help="Bootstrap replicates for the 95% intervals."),
    out: Path = typer.Option(..., help="Output directory: tables/, impact.csv, impact.png, summary.md; resumes."),
    json_: bool = typer.Option(False, "--json", help="Print the results as JSON instead of a table."),
    scorer_weights: Path | None = typer.Option(None, help="Scorer weights directory (default: the shipped ones)."),
    dtype: str = DTYPE_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """Activation patching and ablation: how much of a concept each cross-attention layer (or group of
    layers, or part of the trajectory) restores or removes, with bootstrap intervals."""
    from .localisation_run import run_study
    from .patching import FULL, MODES, parse_window
    from .scorer import Scorer

    modes = [m.strip() for m in mode.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise TadaError(f"--mode takes {', '.join(MODES)} (comma-separated); got {mode!r}")
    windows = [FULL, *[parse_window(w) for w in window]]
    validate.count("--n-pairs", n_pairs, "how many pairs to use per concept or feature")
    validate.integer("--seeds", seeds, 1, 1_000, "noise seeds per pair")
    validate.integer("--bootstrap", bootstrap, 100, 1_000_000, "bootstrap replicates")
    validate.count("--batch-pairs", batch_pairs, "units generated together", high=10_000)
    validate.count("--max-rows", max_rows, "samples in one patched batch")
    validate.generation(seconds, steps, guidance, seed)
    validate.writable_directory(out, "--out", "the localisation results")
    if out.suffix == ".safetensors":
        raise TadaError(f"--out is a directory (tables, impact.csv, heatmap, summary), not a file: {out}")
    sources = [concept is not None, features is not None, pairs is not None]
    if sum(sources) != 1:
        raise TadaError("give exactly one of --concept, --features (with --captions) or --pairs")
    adapter = _load(model, dtype, device, progress=False)
    sets = _pair_sets(adapter, concept, features, captions, pairs, probe, n_pairs, pool_words)
    singles_ = [[name.strip()] for name in sites_.split(",") if name.strip()] if sites_ else None
    if singles_ is None and singles:
        singles_ = [[s.alias] for s in adapter.sites.values() if s.kind == "xattn"]
    groups = (singles_ if singles else []) + [g.split("+") if g != "all" else ["all"] for g in group]
    if not groups:
        raise TadaError("nothing to patch: --no-singles needs at least one --group")
    summaries = run_study(
        adapter,
        sets,
        Scorer.load(scorer_weights),
        out,
        modes=modes,
        groups=groups,
        windows=windows,
        seeds=seeds,
        seconds=seconds,
        steps=steps,
        guidance=guidance,
        seed=seed,
        batch_pairs=batch_pairs,
        max_rows=max_rows,
        replicates=bootstrap,
    )
    if json_:
        import json

        from .impact_report import as_json

        typer.echo(json.dumps(as_json(summaries), indent=1))
        return
    typer.echo((out / "summary.md").read_text())
    typer.echo(f"wrote {out}/impact.csv, summary.md, impact.json, tables/ ({len(summaries)} pair sets)")


def _pair_sets(model, concept, features, captions, pairs, probe, n_pairs, pool_words=False) -> list:
    """The pair sets a `tada localize` call names (exactly one source given)."""
    from .localisation_run import PairSet, preset_sets
    from .localize import check_twins

    if probe is not None and not probe.strip():
        raise TadaError("the probe text is empty")
    if concept is not None:
        sets = preset_sets([c.strip() for c in concept.split(",") if c.strip()], n_pairs)
        if probe is not None:
            if len(sets) > 1:
                raise TadaError("--probe replaces one concept's probe; give a single --concept with it")
            sets[0].probe = probe
    elif features is not None:
        from .swaps import feature_sets

        if captions is None:
            raise TadaError("--features swaps words in captions: give --captions (a text file, CSV or corpus)")
        sets = feature_sets(model, features, captions, n_pairs, pool_words)
    else:
        from .concepts import read_pairs
        from .swaps import pair_csv_has_header, read_pair_csv

        if pair_csv_has_header(pairs):
            rows = read_pair_csv(pairs, default_probe=probe)
        elif probe is None:
            raise TadaError("--pairs rows without a probe column need --probe, the text the scorer looks for")
        else:
            rows = [(clean, corrupted, probe) for clean, corrupted in read_pairs(pairs)]
        by_probe: dict[str, list] = {}
        for clean, corrupted, row_probe in rows:
            by_probe.setdefault(row_probe, []).append((clean, corrupted))
        sets = [
            PairSet(p if len(by_probe) > 1 else pairs.stem, twins[:n_pairs], p, {"source": str(pairs)})
            for p, twins in by_probe.items()
        ]
    for pair_set in sets:
        check_twins(model, pair_set.pairs)
    return sets


def _replayed(path: Path, model: str, prompt, steer_, sites_, mode, renorm, schedule, seconds, steps, guidance, seed):
    """A take's model, prompt, sliders and generation settings, for ``tada steer --replay``; a take fixes
    them all, so options that would change them are refused rather than silently ignored."""
    from .studio import TakeSettings

    take = TakeSettings.load(path)
    given = [
        name
        for name, value in (
            ("--prompt", prompt),
            ("--steer", steer_ or None),
            ("--sites", sites_),
            ("--mode", mode),
            ("--renorm", renorm),
            ("--schedule", schedule),
            ("--seconds", seconds),
            ("--steps", steps),
            ("--guidance", guidance),
        )
        if value is not None
    ]
    if given or seed != 0:
        raise TadaError(f"--replay takes everything from the take; leave out {', '.join(given) or '--seed'}")
    if model != take.model:
        raise TadaError(f"{path} is a take of {take.model}, not {model}")
    base = path.resolve().parent
    steers = []
    for s in take.sliders:  # a slider's artifact, as given or beside the take
        artifact = Path(s.path)
        if not artifact.is_file() and not artifact.is_absolute() and (base / artifact).is_file():
            artifact = base / artifact
        steers.append(f"{artifact}:{s.alpha!r}")
    if not steers:
        raise TadaError(f"{path} has no slider away from 0: it is its unsteered reference (use `tada generate`)")
    return take.model, take.prompt, steers, take.seconds, take.steps, take.guidance, take.seed


@app.command()
def steer(
    model: str = MODEL_ARG,
    prompt: str | None = typer.Option(None, help="Text prompt."),
    steer_: list[str] = typer.Option(
        [], "--steer", help="ARTIFACT.safetensors:ALPHA, of any method; repeat to mix concepts."
    ),
    replay: Path | None = typer.Option(
        None, help="A take exported by `tada studio` (TAKE.json): render it again, bitwise the same clip."
    ),
    sites_: str | None = typer.Option(None, "--sites", help="Only these site aliases (default: all in the file)."),
    mode: str | None = typer.Option(None, help="Guidance rows to steer: cond (default), uncond or both."),
    renorm: bool | None = typer.Option(
        None, "--renorm/--no-renorm", help="Restore each token's norm after steering (default: as the file says)."
    ),
    schedule: str | None = typer.Option(None, help="'constant' or START-END trajectory fractions, e.g. 0-0.5."),
    seconds: float | None = SECONDS_OPT,
    steps: int | None = STEPS_OPT,
    guidance: float | None = GUIDANCE_OPT,
    seed: int = typer.Option(0, help="Noise seed."),
    out: Path = typer.Option(..., help="Output WAV (32-bit float)."),
    dtype: str = DTYPE_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """Generate one clip with one or more concepts turned up or down, by artifacts of any method."""
    from .methods import load_artifact, steering
    from .schedules import parse_schedule

    if replay is not None:
        model, prompt, steer_, seconds, steps, guidance, seed = _replayed(
            replay, model, prompt, steer_, sites_, mode, renorm, schedule, seconds, steps, guidance, seed
        )
    elif prompt is None or not steer_:
        raise TadaError("give --prompt and at least one --steer ARTIFACT:ALPHA (or --replay TAKE.json)")
    validate.generation(seconds, steps, guidance, seed)
    validate.output_file(out, WAV, "the audio file")
    items = [(load_artifact(path), alpha) for path, alpha in map(_parse_steer, steer_)]
    options = {"sites": sites_, "mode": mode, "renorm": renorm}
    if schedule is not None:
        options["schedule"] = parse_schedule(schedule)
    adapter = _load(model, dtype, device)
    with steering(adapter, items, **options):
        audio = adapter.generate(prompt, seconds=seconds, steps=steps, guidance=guidance, seed=seed)
    typer.echo(f"wrote {audio.save(out)} ({audio.seconds:.2f} s at {audio.sample_rate} Hz)")


@app.command()
def methods() -> None:
    """List the steering methods: the name --method takes, what it changes, its alpha convention."""
    from .methods import get_method, method_names

    for name in method_names():
        typer.echo(get_method(name).line())


def _fit_concept(
    concept: str | None,
    pairs: Path | None,
    positive: str | None,
    negative: str | None,
    n_pairs: int | None,
    neutral: str | None = None,
    generic_word: str | None = None,
) -> tuple:
    """The concept (decorations) and prompt pairs ``tada fit`` works from: a preset, a CSV of pairs,
    or positive/negative templates applied to the preset base prompts (exactly one of the three)."""
    from .concepts import BASE_PROMPTS, Concept, get_concept

    given = [name for name, value in (("--concept", concept), ("--pairs", pairs), ("--positive", positive)) if value]
    if len(given) != 1 or (positive is None) != (negative is None):
        raise TadaError("give exactly one of --concept, --pairs, or --positive with --negative")
    if concept is not None and (neutral or generic_word):
        raise TadaError(
            "a preset brings its own neutral wrap and generic word; "
            "--neutral and --generic-word go with --pairs or --positive"
        )
    wrap = {"neutral": neutral or "{p}", "generic_word": generic_word or ""}
    if neutral is not None and "{p}" not in neutral:
        raise TadaError("--neutral must contain {p} where the base prompt goes, e.g. '{p}, with instrument'")
    try:
        Concept("check", **wrap)
    except ValueError as exc:
        raise TadaError(f"--generic-word {generic_word!r} is not a word of --neutral {neutral!r}") from exc
    if positive is None:
        prompt_pairs, prompt_set = _prompt_pairs(concept, pairs, n_pairs)
        decorations = get_concept(concept) if concept else Concept(pairs.stem, **wrap)
        return decorations, prompt_pairs, prompt_set
    for option, template in (("--positive", positive), ("--negative", negative)):
        if "{p}" not in template:
            raise TadaError(f"{option} must contain {{p}} where the base prompt goes, e.g. '{{p}}, with piano'")
    if positive == negative:
        raise TadaError("--positive and --negative are the same template")
    validate.count("--n-pairs", n_pairs, "how many of the prompt pairs to use", high=len(BASE_PROMPTS))
    decorations = Concept("custom", positive, negative, **wrap)
    bases = BASE_PROMPTS[: n_pairs or len(BASE_PROMPTS)]
    prompt_set = {"source": "templates", "positive": positive, "negative": negative, "n_pairs": len(bases)}
    return decorations, [decorations.pair(b) for b in bases], prompt_set


def _fit_sites(sites: str | None, impact: Path | None, top: int | None) -> list[str] | None:
    """The localised site set: named, or the ``top`` sites of an impact table; None is global."""
    if impact is None:
        if top is not None:
            raise TadaError("--top needs --impact, the table `tada localize` wrote")
        return None if sites is None else [a.strip() for a in sites.split(",") if a.strip()]
    if sites is not None:
        raise TadaError("give --sites or --impact with --top, not both")
    from .localize import ImpactTable

    table = ImpactTable.load(validate.input_file(impact, "--impact"))
    return table.top(top if top is not None else 2)


@app.command()
def fit(
    model: str = MODEL_ARG,
    method: str = typer.Option(..., help="Steering method (see `tada methods`)."),
    concept: str | None = typer.Option(None, help="A concept preset (piano, mood, tempo, ...)."),
    pairs: Path | None = typer.Option(None, help="CSV of (positive, negative) prompt pairs."),
    positive: str | None = typer.Option(None, help="Positive template, e.g. '{p}, with piano' (with --negative)."),
    negative: str | None = typer.Option(None, help="Negative template, e.g. '{p}' (with --positive)."),
    neutral: str | None = typer.Option(
        None, help="Neutral wrap for --pairs/--positive, e.g. '{p}, with instrument' (token-embedding)."
    ),
    generic_word: str | None = typer.Option(None, help="The word of --neutral that names the concept's slot."),
    n_pairs: int | None = N_PAIRS_OPT,
    sites_: str | None = typer.Option(
        None, "--sites", help="Localise to these layers, e.g. xattn.2,xattn.3 (default: every layer)."
    ),
    impact: Path | None = typer.Option(None, help="Localise to the top layers of this `tada localize` table."),
    top: int | None = typer.Option(
        None, help="How many of the impact table's top layers (default 2); with --method sae: features per step (20)."
    ),
    sae: Path | None = typer.Option(None, help="SAE directory from `tada sae train` (--method sae)."),
    score: str | None = typer.Option(None, help="Feature score for --method sae: tfidf (default), diff or cohen."),
    features: str | None = typer.Option(None, help="--method sae: steer with these features, e.g. 12,873."),
    train_steps: int | None = typer.Option(None, help="Training iterations (concept-slider)."),
    from_step: float | None = typer.Option(
        None, help="Trajectory fraction from which freesliders steers (default 5/30, the reference's)."
    ),
    top_k: int | None = typer.Option(None, help="Channels austeer keeps per step (default: the reference's share)."),
    seconds: float | None = SECONDS_OPT,
    steps: int | None = STEPS_OPT,
    guidance: float | None = GUIDANCE_OPT,
    seed: int = PAIR_SEED_OPT,
    batch_pairs: int = BATCH_PAIRS_OPT,
    work_dir: Path | None = WORK_DIR_OPT,
    out: Path = typer.Option(..., help="Output .safetensors artifact."),
    dtype: str = DTYPE_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """Fit a steering artifact of any method for a concept, globally or at chosen layers."""
    from .methods import FitRequest, get_method

    chosen = get_method(method)
    decorations, prompt_pairs, prompt_set = _fit_concept(
        concept, pairs, positive, negative, n_pairs, neutral, generic_word
    )
    sae_options = {"sae": sae, "top": top, "score": score, "features": features}
    if method == "sae":
        if impact is not None:
            raise TadaError("--method sae steers at its SAEs' sites; choose among them with --sites, not --impact")
        site_list = None if sites_ is None else [a.strip() for a in sites_.split(",") if a.strip()]
    else:
        given_sae = [f"--{name}" for name, value in sae_options.items() if value is not None and name != "top"]
        if given_sae:
            raise TadaError(f"{', '.join(given_sae)} belong to --method sae")
        site_list = _fit_sites(sites_, impact, top)
    validate.count("--train-steps", train_steps, "training iterations", high=10**7)
    job = _job_arguments(
        len(prompt_pairs),
        "a steering artifact",
        sites=None,
        seconds=seconds,
        steps=steps,
        guidance=guidance,
        seed=seed,
        batch_pairs=batch_pairs,
        out=out,
        work_dir=work_dir,
        concept=decorations.name,
    )
    given = {"train_steps": train_steps, "from_step": from_step, "k": top_k}
    if method == "sae":
        given |= sae_options
    options = {key: value for key, value in given.items() if value is not None}
    adapter = _load(model, dtype, device, progress=False)
    request = FitRequest(
        decorations,
        prompt_pairs,
        prompt_set,
        sites=site_list,
        seconds=job["seconds"],
        steps=job["steps"],
        guidance=job["guidance"],
        seed=seed,
        batch_pairs=batch_pairs,
        work_dir=job["work_dir"],
        out=out,
        options=options,
    )
    artifact = chosen.fit(adapter, request)
    scope = "global" if site_list is None else "localised to " + ",".join(site_list)
    if method == "sae":
        scope = "at its SAEs' sites " + ",".join(artifact.sites)
    typer.echo(f"wrote {out}: {method} for {decorations.name}, {scope} ({len(artifact.sites)} sites)")


@app.command()
def demo(
    out: Path = typer.Option(Path("out/demo"), help="Output directory."),
    model: str = typer.Option("tada-mini", help="Model id to steer."),
    concept: str = typer.Option("piano", help="Concept preset to turn up."),
    alpha: float = typer.Option(DEMO_ALPHA, help="Steering strength (tada-mini's token norms are about 2)."),
    n_pairs: int = typer.Option(16, help="Prompt pairs for the CAA vector."),
    prompt: str = typer.Option("a calm tune for a rainy afternoon", help="What to generate."),
    seed: int = typer.Option(0, help="Seed shared by both clips."),
) -> None:
    """The main job end to end: compute a concept vector, generate without and with it, score both."""
    from .caa import compute_caa
    from .concepts import CONCEPTS, concept_pairs

    if concept not in CONCEPTS:
        raise TadaError(f"unknown concept {concept!r}; presets are {', '.join(CONCEPTS)}")
    adapter = _load(model, "float32", "cpu", progress=False)
    typer.echo(adapter.describe())
    vector_path = out / f"{concept}.safetensors"
    vector = compute_caa(
        adapter,
        concept_pairs(concept, n_pairs),
        concept=concept,
        prompt_set={"source": "preset", "concept": concept, "n_pairs": n_pairs},
        work_dir=out / f"{concept}.parts",
        out=vector_path,
    )
    plain = adapter.generate(prompt, seed=seed)
    with vector.apply(adapter, alpha):
        steered = adapter.generate(prompt, seed=seed)
    typer.echo(f"vector:    {vector_path}")
    typer.echo(f"unsteered: {plain.save(out / 'unsteered.wav')}")
    typer.echo(f"steered:   {steered.save(out / f'{concept}_alpha{alpha:g}.wav')}  ({concept} x {alpha:g})")
    if adapter.family == "tada-mini":  # the offline scorer knows the bundled model's sound world
        from .scorer import Scorer

        probe = CONCEPTS[concept].probe
        sims = Scorer.load().similarity([plain.samples[0, 0], steered.samples[0, 0]], adapter.sample_rate, probe)[:, 0]
        typer.echo(f"probe {probe!r}: unsteered {float(sims[0]):.3f}, steered {float(sims[1]):.3f}")


@app.command()
def score(
    audio: list[Path] = typer.Argument(
        ..., metavar="AUDIO", help="Sound files to score (any rate; resampled to 16 kHz)."
    ),
    text: list[str] = typer.Option(..., "--text", help="A text probe, e.g. 'a piano song'; repeat for more."),
    json_: bool = typer.Option(False, "--json", help="Print a JSON list of {audio, text, similarity}."),
    weights: Path | None = typer.Option(None, help="Scorer weights directory (default: the shipped weights)."),
) -> None:
    """Text-audio similarity (cosine in the offline scorer's shared space) of each file to each text."""
    import json

    from .scorer import Scorer

    for probe in text:
        if not probe.strip():
            raise TadaError("--text is empty: give a description such as 'a piano song'")
    for path in audio:
        validate.input_file(path, "audio file")
    scorer = Scorer.load(weights)
    sims = scorer.similarity_files(audio, text)
    rows = [
        {"audio": str(path), "text": probe, "similarity": round(float(sims[i, j]), 6)}
        for i, path in enumerate(audio)
        for j, probe in enumerate(text)
    ]
    if json_:
        typer.echo(json.dumps(rows, indent=1))
        return
    width = max(len("text"), *(len(probe) for probe in text))
    typer.echo(f"{'similarity':>10}  {'text':{width}}  audio")
    for row in rows:
        typer.echo(f"{row['similarity']:>10.4f}  {row['text']:{width}}  {row['audio']}")


scorer_app = typer.Typer(no_args_is_help=True, help="Train the offline text-audio scorer.")
app.add_typer(scorer_app, name="scorer")


@scorer_app.command("train")
def scorer_train(
    corpus: Path = typer.Option(..., help="Corpus directory (labels.jsonl and audio), from `tada data make`."),
    config: Path = typer.Option(Path("configs/scorer.json"), help="Training configuration (JSON)."),
    out: Path = typer.Option(..., help="Output directory: caches, checkpoint, loss.png, model/; resumes."),
    device: str = DEVICE_OPT,
    threads: int | None = THREADS_OPT,
    until_step: int | None = typer.Option(None, help="Stop (with a checkpoint) at this step; run again to go on."),
    time_limit: float | None = TIME_LIMIT_OPT,
    export: bool = typer.Option(False, help="Also write OUT/model now, unfinished or not (interim evaluation)."),
) -> None:
    """Train the scorer (seeded, resumable; caches mels and caption embeddings in OUT)."""
    from .scorer.train import train

    trainer = train(
        corpus, config, out, device=device, until_step=until_step, time_limit=_training_budget(threads, time_limit)
    )
    total = trainer.config["steps"]
    if export and trainer.step < total:
        typer.echo(f"exported the step-{trainer.step} weights to {trainer.export()}")
    if trainer.step >= total:
        typer.echo(f"trained {total} steps: model in {out / 'model'}, curves in {out / 'loss.png'}")
    else:
        typer.echo(
            f"stopped at step {trainer.step}/{total} (checkpoint in {out / 'checkpoint'}); "
            "run the same command again to continue"
        )


mini_app = typer.Typer(no_args_is_help=True, help="Train tada-mini, the bundled text-to-music model.")
app.add_typer(mini_app, name="mini")


@mini_app.command("train")
def mini_train(
    corpus: Path = typer.Option(..., help="Corpus directory (labels.jsonl and audio), from `tada data make`."),
    config: Path = typer.Option(Path("configs/mini.json"), help="Training configuration (JSON)."),
    out: Path = typer.Option(..., help="Output directory: one folder per stage, model/ at the end; resumes."),
    stage: list[str] = typer.Option(
        ["autoencoder", "trainset", "transformer", "export"], help="Stages to run, in order (repeat the option)."
    ),
    device: str = DEVICE_OPT,
    threads: int | None = THREADS_OPT,
    until_step: int | None = typer.Option(None, help="Stop the transformer stage (with a checkpoint) at this step."),
    time_limit: float | None = TIME_LIMIT_OPT,
) -> None:
    """Train tada-mini: autoencoder, training set, transformer, export (each resumable, skipped when done)."""
    from .mini.train import train

    result = train(
        corpus,
        config,
        out,
        tuple(stage),
        device=device,
        until_step=until_step,
        time_limit=_training_budget(threads, time_limit),
    )
    if result is None:
        typer.echo(f"stopped with a checkpoint in {out}; run the same command again to continue")
    elif (result / "model_index.json").is_file():
        typer.echo(f"tada-mini written to {result} (load it as tada-mini:{result})")
    else:
        typer.echo(f"done: {', '.join(stage)} in {result}")


def _quiet_libraries() -> None:
    """Keep library chatter (deprecations, config notes) off the user's terminal."""
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()


def _end_progress_line() -> None:
    """An error must start on a line of its own, not at the end of a half-drawn progress bar."""
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None and any(not bar.disable for bar in list(tqdm.tqdm._instances)):
        sys.stderr.write("\n")


def main() -> None:
    """Console entry point: user errors (and failures of the user's files) become one line on stderr."""
    # typer 0.29 (pinned) parses with its own copy of click: its exceptions live there
    from typer import Abort
    from typer._click.exceptions import NoArgsIsHelpError, UsageError

    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:  # a bare `tada` or `tada data`: show its help
        typer.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(2)
    except UsageError as exc:  # a malformed option or argument, said on one line
        where = f"{exc.ctx.command_path}: " if exc.ctx else ""
        message = " ".join(exc.format_message().split())
        typer.echo(f"error: {where}{message} (see --help)", err=True)
        sys.exit(2)
    except Abort:
        _end_progress_line()
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except TadaError as exc:
        _end_progress_line()
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # a full disk, a read-only or vanished path: the user's to fix, not a bug
        _end_progress_line()
        where = f": {exc.filename}" if exc.filename else ""
        typer.echo(f"error: {exc.strerror or exc}{where}", err=True)
        sys.exit(2)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
