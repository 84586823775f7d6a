"""Activation patching: which cross-attention layers decide a concept.

A clean prompt with the concept ("..., with acoustic guitar") and its corrupted twin
("..., with electric guitar") are generated from the same noise. The corrupted run is
then repeated once per layer with the text input of exactly that cross-attention layer
replaced by the clean run's, at every step and in both guidance passes. A probe text
("a song with acoustic guitar") scored by a text-audio scorer says how much of the
concept the one layer restores:

    I(l) = (mean s_patched(l) - mean s_corrupt) / (mean s_clean - mean s_corrupt)

0 is nothing, 1 is everything (means over the pairs, so one pair whose clean and
corrupted clips score alike cannot blow the ratio up). The layers with the highest
impact are where the model decides the concept; localised steering acts only there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from . import __version__, validate
from .artifacts import read_artifact, write_artifact
from .errors import ActivationShapeError, ArtifactError, TadaError
from .interventions import Capture, Replace
from .runs import UnitStore, run_resumable

FORMAT = "tada/impact-table"
FORMAT_VERSION = "1"
_REQUIRED = ("format", "format_version", "family", "width", "sites", "probe")


@dataclass
class ImpactTable:
    """Probe scores of the clean, corrupted and patched runs of every pair, per patched site."""

    sites: list[str]
    clean: torch.Tensor  # (pairs,)
    corrupt: torch.Tensor  # (pairs,)
    patched: torch.Tensor  # (pairs, sites)
    family: str
    width: int
    probe: str
    concept: str = ""
    pairs: list[list[str]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.clean.shape[0]
        if self.corrupt.shape != (n,) or self.patched.shape != (n, len(self.sites)):
            raise ArtifactError(
                f"impact table shapes disagree: clean {tuple(self.clean.shape)}, corrupt "
                f"{tuple(self.corrupt.shape)}, patched {tuple(self.patched.shape)} "
                f"for {len(self.sites)} sites"
            )

    @property
    def contrast(self) -> float:
        """Mean clean minus mean corrupted probe score: how well the probe sees the concept at all."""
        return float(self.clean.mean() - self.corrupt.mean())

    @property
    def impact(self) -> torch.Tensor:
        """Normalised restoration per site, ``(sites,)``."""
        return (self.patched.mean(dim=0) - self.corrupt.mean()) / self.contrast

    def ranked(self) -> list[tuple[str, float]]:
        """Sites with their impact, highest first."""
        return sorted(zip(self.sites, self.impact.tolist()), key=lambda item: -item[1])

    def top(self, k: int) -> list[str]:
        """The ``k`` sites with the highest impact."""
        if not 1 <= k <= len(self.sites):
            raise TadaError(f"k must be between 1 and {len(self.sites)}, got {k}")
        return [site for site, _ in self.ranked()[:k]]

    # -- files ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tada_version": __version__,
            "family": self.family,
            "width": str(self.width),
            "sites": json.dumps(self.sites),
            "probe": self.probe,
            "concept": self.concept,
            "pairs": json.dumps(self.pairs),
            "settings": json.dumps(self.settings),
        }
        tensors = {"clean": self.clean.double(), "corrupt": self.corrupt.double(), "patched": self.patched.double()}
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
            )

        return read_artifact(Path(path), FORMAT, FORMAT_VERSION, _REQUIRED, "impact table", build)

    from_pretrained = load


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
    seconds: float | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    batch_pairs: int = 8,
    work_dir: str | Path | None = None,
    concept: str = "custom",
    progress: bool = True,
    out: str | Path | None = None,
) -> ImpactTable:
    """Patch each site's text input from clean into corrupted runs; ``pairs`` are (clean, corrupted) prompts.

    Each clean prompt and its corrupted twin must encode to the same number of tokens
    (a word swap, as in the paper's protocol), so the patched input fits the run.

    ``scorer`` needs ``similarity(clips, sr, texts) -> (clips, texts)``. Pair ``i`` uses
    noise seed ``seed + i`` for all its runs. With ``work_dir`` a killed run resumes; with
    ``out`` the table is written there before the partial results are deleted.
    """
    if not pairs:
        raise TadaError("localisation needs at least one prompt pair")
    if not probe.strip():
        raise TadaError("the probe text is empty")
    validate.integer("batch_pairs", batch_pairs, 1, 10_000, "prompt pairs generated together")
    validate.generation(seconds, steps, guidance, seed, n_seeds=len(pairs))
    check_twins(model, pairs)
    if sites is None:
        chosen = [s for s in model.sites.values() if s.kind == "xattn_in"]
        if not chosen:
            raise TadaError(f"{model.family} has no cross-attention input sites to patch")
    else:
        chosen = model.resolve_sites(sites)
    settings = {
        **model.sampler_settings(seconds, steps, guidance),
        "seed": seed,
        "batch_pairs": batch_pairs,  # a clip's rounding depends on its batch: part of what made the table
    }
    config = {
        "family": model.family,
        "width": model.width,
        "sites": [s.alias for s in chosen],
        "probe": probe,
        "pairs": [list(p) for p in pairs],
        **settings,
    }
    return run_resumable(
        work_dir,
        config,
        lambda store: _patch_all(model, pairs, probe, scorer, chosen, settings, batch_pairs, store, concept, progress),
        out,
    )


def _token_counts(model: Any, prompt: str) -> tuple[int, ...]:
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
        if _token_counts(model, clean) != _token_counts(model, corrupt):
            raise TadaError(
                f"pair {index} encodes to different token counts ({clean!r} / {corrupt!r}); patching needs "
                "twins of equal length (swap one word: 'with violin' -> 'with trumpet', 'fast' -> 'slow')"
            )


def _patch_all(
    model: Any,
    pairs: Sequence[tuple[str, str]],
    probe: str,
    scorer: Any,
    chosen: list,
    settings: dict[str, Any],
    batch_pairs: int,
    store: UnitStore | None,
    concept: str,
    progress: bool,
) -> ImpactTable:
    """Clean, corrupted and per-site patched runs of every pair (or the batches already in ``store``)."""
    seed = settings["seed"]
    gen = {k: settings[k] for k in ("seconds", "steps", "guidance")}

    def score(prompts: list[str], seeds: list[int], plan: dict | None = None) -> torch.Tensor:
        with model.engine.add(plan or {}):
            audio = model.generate(prompts, seed=seeds, **gen)
        return scorer.similarity(list(audio.samples), audio.sample_rate, probe)[:, 0].double().cpu()

    chunks = [list(range(i, min(i + batch_pairs, len(pairs)))) for i in range(0, len(pairs), batch_pairs)]
    bar = tqdm(total=len(chunks) * (len(chosen) + 2), desc=f"localise {concept}", unit="run", disable=not progress)
    parts = []
    for index, chunk in enumerate(chunks):
        key = f"chunk-{index:05d}"
        if store is not None and store.done(key):
            parts.append(store.load(key))
            bar.update(len(chosen) + 2)
            continue
        clean_prompts = [pairs[i][0] for i in chunk]
        corrupt_prompts = [pairs[i][1] for i in chunk]
        seeds = [seed + i for i in chunk]
        captures = {site: Capture(rows="both", reduce="full") for site in chosen}
        part = {"clean": score(clean_prompts, seeds, captures)}
        bar.update()
        part["corrupt"] = score(corrupt_prompts, seeds)
        bar.update()
        patched = []
        for site in chosen:
            try:
                patched.append(score(corrupt_prompts, seeds, {site: Replace(captures[site], rows="both")}))
            except ActivationShapeError:
                raise TadaError(
                    f"the clean and corrupted prompts of pairs {chunk[0]}-{chunk[-1]} encode to different "
                    "token counts; patching needs twins of equal length (swap one word: 'with violin' -> "
                    "'with trumpet', 'fast' -> 'slow')"
                ) from None
            bar.update()
        part["patched"] = torch.stack(patched, dim=1)
        if store is not None:
            store.save(key, part)
        parts.append(part)
    bar.close()
    table = ImpactTable(
        [s.alias for s in chosen],
        torch.cat([p["clean"] for p in parts]),
        torch.cat([p["corrupt"] for p in parts]),
        torch.cat([p["patched"] for p in parts]),
        model.family,
        model.width,
        probe,
        concept,
        [list(p) for p in pairs],
        settings,
    )
    if abs(table.contrast) < 1e-9:
        raise TadaError(f"the probe {probe!r} scores clean and corrupted clips alike; impact is undefined")
    return table


def plot_impacts(tables: Sequence[ImpactTable], path: str | Path) -> Path:
    """Heatmap of impact, one row per table (concept), one column per site."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not tables:
        raise TadaError("nothing to plot")
    sites = tables[0].sites
    if any(t.sites != sites for t in tables):
        raise TadaError("the impact tables patch different sites; plot them separately")
    values = torch.stack([t.impact for t in tables]).numpy()
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(sites), 0.9 + 0.45 * len(tables)))
    # colours span [-1, 1] so one noisy row cannot wash out the others; the numbers are exact
    image = ax.imshow(values, cmap="viridis", vmin=-1.0, vmax=1.0)
    ax.set_xticks(range(len(sites)), sites, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(tables)), [t.concept or t.probe for t in tables], fontsize=8)
    for (r, c), v in np.ndenumerate(values):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.5 else "black")
    fig.colorbar(image, ax=ax, label="impact (normalised restoration)")
    ax.set_title(f"{tables[0].family}: activation patching impact", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
