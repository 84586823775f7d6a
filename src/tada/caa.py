"""Contrastive activation addition: steering vectors from prompt pairs.

For every pair, the positive and the negative prompt are generated from the same
initial noise. At each site and each denoising step the conditional-pass activation is
averaged over tokens; the vector is ``mean_pos - mean_neg`` over all pairs, scaled to
unit norm, one per (site, step), and stored against the scheduler's timesteps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from . import validate
from .adapters.base import Adapter
from .artifacts import SteeringVector
from .concepts import Concept
from .engine import Site
from .errors import TadaError
from .interventions import Capture
from .pair_batches import sum_over_pair_batches
from .runs import UnitStore, run_resumable


def _chunk_sums(captures: dict[Site, Capture]) -> dict[str, torch.Tensor]:
    """Per site: the (steps, dim) sums of positive rows (the first half) and of negative rows."""
    out: dict[str, torch.Tensor] = {}
    for site, cap in captures.items():
        steps = sorted(cap.records)
        stacked = torch.stack([cap.records[s].double().cpu() for s in steps])  # (steps, rows, dim)
        n_pos = stacked.shape[1] // 2
        out[f"pos/{site.alias}"] = stacked[:, :n_pos].sum(dim=1)
        out[f"neg/{site.alias}"] = stacked[:, n_pos:].sum(dim=1)
    first = next(iter(captures.values()))
    order = sorted(range(len(first.steps)), key=lambda i: first.steps[i])
    out["timesteps"] = torch.tensor([first.timesteps[i] for i in order], dtype=torch.float64)
    return out


def compute_caa(
    model: Adapter,
    pairs: Sequence[tuple[str, str]],
    *,
    sites: Iterable[str] | str | None = None,
    seconds: float | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    batch_pairs: int = 4,
    work_dir: str | Path | None = None,
    concept: str = "custom",
    prompt_set: dict[str, Any] | None = None,
    progress: bool = True,
    out: str | Path | None = None,
    decorations: Concept | None = None,
) -> SteeringVector:
    """Compute a CAA steering vector; with ``work_dir`` a killed run resumes where it stopped.

    With ``out`` the vector is also written there, and the partial results in ``work_dir``
    are deleted only once that file exists: a failed final write loses nothing, and the
    same command run again completes from the parts.
    """
    if not pairs:
        raise TadaError("CAA needs at least one prompt pair")
    validate.integer("batch_pairs", batch_pairs, 1, 10_000, "prompt pairs generated together")
    validate.generation(seconds, steps, guidance, seed, n_seeds=len(pairs))
    chosen = model.resolve_sites(sites)
    seconds, steps, guidance = model.sampler_settings(seconds, steps, guidance).values()
    # batch_pairs is recorded with the rest: a clip's rounding depends on its batch (docs/tada-mini.md, Limitations)
    settings = {"seconds": seconds, "steps": steps, "guidance": guidance, "seed": seed, "batch_pairs": batch_pairs}
    config = {
        "family": model.family,
        "width": model.width,
        "sites": [s.alias for s in chosen],
        "pairs": [list(p) for p in pairs],
        **settings,
    }
    return run_resumable(
        work_dir,
        config,
        lambda store: _caa_vector(model, pairs, chosen, settings, store, concept, prompt_set, progress, decorations),
        out,
    )


def _caa_vector(
    model: Adapter,
    pairs: Sequence[tuple[str, str]],
    chosen: list[Site],
    settings: dict[str, Any],
    store: UnitStore | None,
    concept: str,
    prompt_set: dict[str, Any] | None,
    progress: bool,
    decorations: Concept | None = None,
) -> SteeringVector:
    """Generate the pairs batch by batch (or read the batches already in ``store``) and average."""
    totals, timesteps = sum_over_pair_batches(
        model,
        pairs,
        settings,
        store,
        lambda n: {site: Capture(rows="cond", reduce="mean") for site in chosen},
        _chunk_sums,
        desc=f"CAA {concept}",
        progress=progress,
    )
    vectors: dict[str, torch.Tensor] = {}
    for site in chosen:
        pos = totals[f"pos/{site.alias}"] / len(pairs)
        diff = pos - totals[f"neg/{site.alias}"] / len(pairs)
        norms = diff.norm(dim=-1, keepdim=True)
        if (norms <= 1e-6 * pos.norm(dim=-1, keepdim=True)).any():  # equal up to rounding
            raise TadaError(f"positive and negative prompts give identical activations at {site.alias}")
        vectors[site.alias] = (diff / norms).float()
    return SteeringVector(
        vectors,
        timesteps,
        model.family,
        model.width,
        concept=concept,
        operation="add",
        normalisation="unit",
        prompt_set=prompt_set or {"source": "custom", "n_pairs": len(pairs)},
        settings=settings,
        decorations=decorations,
    )
