"""Activation patching: which cross-attention layers decide a concept, and when.

A clean prompt with the concept ("..., with acoustic guitar") and its corrupted twin
("..., with electric guitar") are generated from the same noise. The corrupted run is
then repeated with the text input of one cross-attention layer replaced by the clean
run's, at every step and in both guidance passes (the paper's protocol, mode ``input``).
A probe text ("a song with acoustic guitar") scored by a text-audio scorer says how much
of the concept the one layer restores:

    I(l) = (mean s_patched(l) - mean s_corrupt) / (mean s_clean - mean s_corrupt)

0 is nothing, 1 is everything (means over units, so one pair whose clean and corrupted
clips score alike cannot blow the ratio up). The same sweep patches layers' outputs
(``output``), zeroes them in the clean run (``ablate``: the share of the contrast removed),
patches groups of layers and restricts any column to a window of the trajectory
(:mod:`tada.patching`); :mod:`tada.impact_report` adds intervals. The layers with the highest
impact are where the model decides the concept; localised steering acts only there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from . import __version__, validate
from .artifacts import read_artifact, write_artifact
from .errors import ArtifactError, TadaError
from .interventions import Capture
from .patching import FULL, BlockPatch, Column, columns_for
from .runs import UnitStore, run_resumable

FORMAT = "tada/impact-table"
FORMAT_VERSION = "1"
_REQUIRED = ("format", "format_version", "family", "width", "sites", "probe")


@dataclass
class ImpactTable:
    """Probe scores of the clean, corrupted and patched runs of every unit (a pair with one noise seed),
    per column of the sweep: a mode (``input``, ``output``, ``ablate``) applied to a group of sites
    within a window of steps (see :mod:`tada.patching`)."""

    sites: list[str]  # per column: the patched group, "xattn_in.3" or "xattn_in.2+xattn_in.3"
    clean: torch.Tensor  # (units,)
    corrupt: torch.Tensor  # (units,)
    patched: torch.Tensor  # (units, columns)
    family: str
    width: int
    probe: str
    concept: str = ""
    pairs: list[list[str]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    modes: list[str] = field(default_factory=list)  # per column; default "input"
    windows: list[tuple[float, float]] = field(default_factory=list)  # per column; default the whole run
    units: torch.Tensor | None = None  # (units, 2): pair index, seed index; default pair i, seed 0

    def __post_init__(self) -> None:
        n = self.clean.shape[0]
        if self.corrupt.shape != (n,) or self.patched.shape != (n, len(self.sites)):
            raise ArtifactError(
                f"impact table shapes disagree: clean {tuple(self.clean.shape)}, corrupt "
                f"{tuple(self.corrupt.shape)}, patched {tuple(self.patched.shape)} "
                f"for {len(self.sites)} sites"
            )
        self.modes = list(self.modes) or ["input"] * len(self.sites)
        self.windows = [tuple(w) for w in self.windows] or [FULL] * len(self.sites)
        if self.units is None:
            self.units = torch.stack([torch.arange(n), torch.zeros(n, dtype=torch.long)], dim=1)
        if len(self.modes) != len(self.sites) or len(self.windows) != len(self.sites) or self.units.shape != (n, 2):
            raise ArtifactError("impact table columns disagree: modes, windows and units must match the scores")

    @property
    def columns(self) -> list[Column]:
        return [Column(m, tuple(g.split("+")), w) for m, g, w in zip(self.modes, self.sites, self.windows)]

    @property
    def contrast(self) -> float:
        """Mean clean minus mean corrupted probe score: how well the probe sees the concept at all."""
        return float(self.clean.mean() - self.corrupt.mean())

    @property
    def impact(self) -> torch.Tensor:
        """Normalised effect per column, ``(columns,)``: the share of the clean-corrupted contrast that
        patching restores (``input``, ``output``) or that ablation removes (``ablate``)."""
        return impact_of(self.clean.mean(), self.corrupt.mean(), self.patched.mean(0), self.modes)

    def ranked(self, mode: str | None = None) -> list[tuple[str, float]]:
        """Single-site, whole-run columns of one mode (default: the first column's) with their impact,
        highest first."""
        mode = mode or self.modes[0]
        impact = self.impact.tolist()
        chosen = [
            (site, impact[i])
            for i, (site, m, w) in enumerate(zip(self.sites, self.modes, self.windows))
            if m == mode and w == FULL and "+" not in site
        ]
        return sorted(chosen, key=lambda item: -item[1])

    def top(self, k: int, mode: str | None = None) -> list[str]:
        """The ``k`` sites with the highest impact (single sites, whole run, one mode)."""
        ranked = self.ranked(mode)
        if not 1 <= k <= len(ranked):
            raise TadaError(f"k must be between 1 and {len(ranked)}, got {k}")
        return [site for site, _ in ranked[:k]]

    # -- files ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tada_version": __version__,
            "family": self.family,
            "width": str(self.width),
            "sites": json.dumps(self.sites),
            "modes": json.dumps(self.modes),
            "windows": json.dumps(self.windows),
            "probe": self.probe,
            "concept": self.concept,
            "pairs": json.dumps(self.pairs),
            "settings": json.dumps(self.settings),
        }
        tensors = {
            "clean": self.clean.double(),
            "corrupt": self.corrupt.double(),
            "patched": self.patched.double(),
            "units": self.units.long(),
        }
        return write_artifact(path, tensors, meta)

    save_pretrained = save

    @classmethod
    def load(cls, path: str | Path) -> ImpactTable:
        def build(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> ImpactTable:
            return cls(
                json.loads(meta["sites"]),
                tensors["clean"],
                tensors["corrupt"],
                tensors["patched"],
                meta["family"],
                int(meta["width"]),
                meta["probe"],
                meta.get("concept", ""),
                json.loads(meta.get("pairs", "[]")),
                json.loads(meta.get("settings", "{}")),
                json.loads(meta.get("modes", "[]")),
                [tuple(w) for w in json.loads(meta.get("windows", "[]"))],
                tensors.get("units"),
            )

        return read_artifact(Path(path), FORMAT, FORMAT_VERSION, _REQUIRED, "impact table", build)

    from_pretrained = load


def impact_of(clean: torch.Tensor, corrupt: torch.Tensor, patched: torch.Tensor, modes: Sequence[str]) -> torch.Tensor:
    """Impact per column from mean scores: ``clean`` and ``corrupt`` of shape ``(...)``, ``patched`` of
    ``(..., columns)`` (so a batch of bootstrap replicates works the same way as one table)."""
    contrast = (clean - corrupt)[..., None]
    ablate = torch.tensor([m == "ablate" for m in modes], device=patched.device)
    return torch.where(ablate, clean[..., None] - patched, patched - corrupt[..., None]) / contrast


def output_sites(model: Any, sites: Iterable[str]) -> list[str]:
    """The cross-attention output aliases of the layers whose text inputs ``sites`` name (for steering)."""
    by_path = {s.path: s.alias for s in model.sites.values() if s.kind == "xattn"}
    out = []
    for alias in sites:
        site = model.site(alias)
        if site.kind == "xattn":
            out.append(site.alias)
        elif site.path in by_path:
            out.append(by_path[site.path])
        else:
            raise TadaError(f"site {alias} has no cross-attention output site on this model")
    return out


def localize(
    model: Any,
    pairs: Sequence[tuple[str, str]],
    probe: str,
    scorer: Any,
    *,
    sites: Iterable[str] | str | None = None,
    modes: Sequence[str] = ("input",),
    groups: Sequence[Sequence[str]] | None = None,
    windows: Sequence[tuple[float, float]] = (FULL,),
    seeds: int = 1,
    seconds: float | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    batch_pairs: int = 8,
    max_rows: int | None = None,
    work_dir: str | Path | None = None,
    concept: str = "custom",
    progress: bool = True,
    out: str | Path | None = None,
) -> ImpactTable:
    """Patch (or ablate) each column of the sweep in the runs of every pair; ``pairs`` are (clean,
    corrupted) prompts.

    Columns are every ``mode`` x group x ``window``: each cross-attention layer on its own (or the
    layers ``sites`` names), or the ``groups`` given (``[["xattn.2", "xattn.3"], ["all"]]``). Each clean
    prompt and its corrupted twin must encode to the same number of tokens (a word swap, as in the
    paper's protocol), so the patched input fits the run.

    ``scorer`` needs ``similarity(clips, sr, texts) -> (clips, texts)``. Pair ``i`` with seed index
    ``s`` uses noise seed ``seed + s * len(pairs) + i`` for all its runs. The clean and corrupted runs
    of ``batch_pairs`` units are shared by every column, and the patched runs of as many columns as
    fit in ``max_rows`` samples (default :func:`default_max_rows`) share one denoising batch. With
    ``work_dir`` a killed run resumes; with ``out`` the table is written there before the partial
    results are deleted.
    """
    if not pairs:
        raise TadaError("localisation needs at least one prompt pair")
    if not probe.strip():
        raise TadaError("the probe text is empty")
    validate.integer("batch_pairs", batch_pairs, 1, 10_000, "prompt pairs generated together")
    validate.integer("seeds", seeds, 1, 1_000, "noise seeds per pair")
    max_rows = default_max_rows(model, batch_pairs) if max_rows is None else max_rows
    validate.integer("max_rows", max_rows, 1, 1_000_000, "samples in one patched denoising batch")
    validate.generation(seconds, steps, guidance, seed, n_seeds=len(pairs) * seeds)
    check_twins(model, pairs)
    if sites is not None:
        if groups is not None:
            raise TadaError("give the layers to patch as sites or as groups, not both")
        names = sites.split(",") if isinstance(sites, str) else list(sites)
        groups = [[name.strip()] for name in names if name.strip()]
    columns = columns_for(model, modes, groups, windows)
    settings = sweep_settings(model, seconds, steps, guidance, seed, seeds, batch_pairs, max_rows, scorer)
    config = {
        "family": model.family,
        "width": model.width,
        "columns": [c.label for c in columns],
        "probe": probe,
        "pairs": [list(p) for p in pairs],
        **settings,
    }

    return run_resumable(
        work_dir,
        config,
        lambda store: _sweep(model, pairs, probe, scorer, columns, settings, store, concept, progress),
        out,
    )


@lru_cache(maxsize=1)
def _shipped_scorer_fingerprint() -> str | None:
    from .scorer import Scorer

    try:
        return Scorer.load().fingerprint
    except TadaError:
        return None


def scorer_key(scorer: Any) -> dict[str, str]:
    """``{"scorer": fingerprint}`` for a scorer other than the shipped one, so a table or a resumed job
    never mixes the scores of two scorers; empty for the shipped scorer (and for scorers without a
    fingerprint), which keeps the settings of tables it scored as they were."""
    fingerprint = getattr(scorer, "fingerprint", None)
    if fingerprint is None or fingerprint == _shipped_scorer_fingerprint():
        return {}
    return {"scorer": fingerprint}


def sweep_settings(
    model: Any,
    seconds: float | None,
    steps: int | None,
    guidance: float | None,
    seed: int,
    seeds: int,
    batch_pairs: int,
    max_rows: int | None,
    scorer: Any = None,
) -> dict[str, Any]:
    """The settings an impact table records (and a resumed or reused table must match)."""
    return {
        **scorer_key(scorer),
        **model.sampler_settings(seconds, steps, guidance),
        "seed": seed,
        "seeds": seeds,
        # a clip's rounding may depend on its batch: part of what made the table
        "batch_pairs": batch_pairs,
        "max_rows": default_max_rows(model, batch_pairs) if max_rows is None else max_rows,
    }


def default_max_rows(model: Any, batch_pairs: int) -> int:
    """Samples per patched batch: two columns' worth on a CPU, where a clip's cost grows with its batch
    (tada-mini, one thread: 1.47 s a clip in batches of 8, 2.15 s in batches of 64), eight on an
    accelerator, where bigger batches are cheaper per clip."""
    return batch_pairs * (2 if str(model.device).startswith("cpu") else 8)


def token_counts(model: Any, prompt: str) -> tuple[int, ...]:
    """What must match between twins for a patched text input to fit: lengths and mask sums."""
    encoded = model.encode_prompts([prompt])
    return tuple(
        int(t.sum()) if "mask" in name else int(t.shape[1])
        for name, t in sorted(encoded.items())
        if isinstance(t, torch.Tensor) and t.ndim >= 2
    )


def check_twins(model: Any, pairs: Sequence[tuple[str, str]]) -> None:
    """Refuse, before any generation, twins whose text inputs differ in length."""
    for index, (clean, corrupt) in enumerate(pairs):
        if token_counts(model, clean) != token_counts(model, corrupt):
            raise TadaError(
                f"pair {index} encodes to different token counts ({clean!r} / {corrupt!r}); patching needs "
                "twins of equal length (swap one word: 'with violin' -> 'with trumpet', 'fast' -> 'slow')"
            )


def _sweep(
    model: Any,
    pairs: Sequence[tuple[str, str]],
    probe: str,
    scorer: Any,
    columns: list[Column],
    settings: dict[str, Any],
    store: UnitStore | None,
    concept: str,
    progress: bool,
) -> ImpactTable:
    """Clean, corrupted and patched runs of every unit (or the chunks already in ``store``)."""
    gen = {k: settings[k] for k in ("seconds", "steps", "guidance")}
    n_units = len(pairs) * settings["seeds"]
    units = [(u % len(pairs), u // len(pairs)) for u in range(n_units)]
    batch_pairs = settings["batch_pairs"]
    chunks = [list(range(i, min(i + batch_pairs, n_units))) for i in range(0, n_units, batch_pairs)]
    sources = {site for c in columns if c.mode != "ablate" for site in c.sites}

    def score(prompts: list[str], seeds: list[int], plan: dict | None = None) -> torch.Tensor:
        with model.engine.add(plan or {}):
            audio = model.generate(prompts, seed=seeds, **gen)
        return scorer.similarity(list(audio.samples), audio.sample_rate, probe)[:, 0].double().cpu()

    bar = tqdm(total=n_units * (len(columns) + 2), desc=f"localise {concept}", unit="clip", disable=not progress)
    parts = []
    for index, chunk in enumerate(chunks):
        key = f"chunk-{index:05d}"
        if store is not None and store.done(key):
            parts.append(store.load(key))
            bar.update(len(chunk) * (len(columns) + 2))
            continue
        prompts = {
            "clean": [pairs[units[u][0]][0] for u in chunk],
            "corrupt": [pairs[units[u][0]][1] for u in chunk],
        }
        seeds = [settings["seed"] + u for u in chunk]
        captures = {model.site(name): Capture(rows="both", reduce="full") for name in sorted(sources)}
        part = {"clean": score(prompts["clean"], seeds, captures)}
        bar.update(len(chunk))
        part["corrupt"] = score(prompts["corrupt"], seeds)
        bar.update(len(chunk))
        per_batch = max(1, settings["max_rows"] // len(chunk))
        patched = []
        for first in range(0, len(columns), per_batch):
            batch = columns[first : first + per_batch]
            plan = _block_plan(model, batch, captures, len(chunk))
            batch_prompts = [p for c in batch for p in prompts[c.base]]
            scores = score(batch_prompts, seeds * len(batch), plan)
            patched.append(scores.reshape(len(batch), len(chunk)).T)
            bar.update(len(chunk) * len(batch))
        part["patched"] = torch.cat(patched, dim=1)
        del captures
        if store is not None:
            store.save(key, part)
        parts.append(part)
    bar.close()
    table = ImpactTable(
        [c.group for c in columns],
        torch.cat([p["clean"] for p in parts]),
        torch.cat([p["corrupt"] for p in parts]),
        torch.cat([p["patched"] for p in parts]),
        model.family,
        model.width,
        probe,
        concept,
        [list(p) for p in pairs],
        settings,
        [c.mode for c in columns],
        [c.window for c in columns],
        torch.tensor(units, dtype=torch.long),
    )
    if abs(table.contrast) < 1e-9:
        raise TadaError(f"the probe {probe!r} scores clean and corrupted clips alike; impact is undefined")
    return table


def _block_plan(model: Any, columns: list[Column], captures: dict, n: int) -> dict:
    """One :class:`BlockPatch` per site: block ``b`` of the batch is ``columns[b]``'s patched run."""
    edits: dict[Any, dict[int, tuple[Capture | None, Any]]] = {}
    for block, column in enumerate(columns):
        for name in column.sites:
            site = model.site(name)
            source = None if column.mode == "ablate" else captures[site]
            edits.setdefault(site, {})[block] = (source, column.schedule())
    return {site: BlockPatch(n, blocks) for site, blocks in edits.items()}


def plot_impacts(tables: Sequence[ImpactTable], path: str | Path) -> Path:
    """Heatmap of impact, one row per table (concept), one column per layer, a panel per mode
    (:func:`tada.impact_report.plot_heatmaps` without intervals)."""
    from .impact_report import plot_heatmaps, summarise

    if not tables:
        raise TadaError("nothing to plot")
    return plot_heatmaps([summarise(t, replicates=100) for t in tables], path)
