"""AUSteer: steer the few cross-attention channels whose positive-minus-negative sign is most consistent.

Fitting generates each prompt pair (positive, negative) from shared noise, as CAA does, and
at every step and chosen layer compares the two conditional-pass outputs token by token:
``m = pos - neg``. A channel's score is ``max(P(m > 0), P(m < 0))`` over all tokens of all
pairs, signed by the majority (``beta = +score`` or ``-score``, as the reference
implementation stores it). Per step, a global top-k over every (layer, channel) of the
chosen layers keeps the ``k`` most consistent channels (equally consistent ones are ranked by
how steady the difference is, ``mean(m)**2 / mean(m**2)``, rather than by layer order as in the
reference, which with few pairs and many perfectly consistent channels would put all ``k`` in
the first layer); the artifact is a
:class:`~tada.artifacts.SteeringVector` holding ``beta * mask`` per (layer, step), applied
like CAA (``h += alpha * beta * mask`` on the conditional rows) and re-normalised per token
to its original norm by default.

Only running sums per channel and step are kept (tokens with ``m > 0``, with ``m < 0``, the sum
of ``m`` and of ``m**2``), never the activations, so memory does not grow with the number of
pairs or tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .. import validate
from ..artifacts import SteeringVector
from ..concepts import Concept
from ..context import StepContext
from ..engine import Site
from ..errors import TadaError
from ..interventions import Intervention
from ..pair_batches import per_step_tables, sum_over_pair_batches
from ..runs import UnitStore, run_resumable
from .base import FitRequest
from .caa import CAA

# The reference keeps k = 2048 channels of ACE-Step v1's 24 cross-attention layers x 2560 channels, for
# the global and the localised variant alike; other models keep the same fraction of all their channels.
REFERENCE_K_FRACTION = 2048 / (24 * 2560)
FIT_OPTIONS = ("k",)
STATISTICS = ("above", "below", "sum", "square", "samples")
MAX_K = 10_000_000


class DifferenceStats(Intervention):
    """Per step and channel, over the tokens of every pair: how often ``m = pos - neg`` is above and below
    zero, and the sum of ``m`` and of ``m**2`` (what ranks equally consistent channels). Conditional rows;
    the batch holds ``n_pairs`` positive prompts, then their negatives in the same order."""

    rows = "cond"

    def __init__(self, n_pairs: int):
        self.n_pairs = n_pairs
        self.records: dict[int, dict[str, torch.Tensor]] = {}
        self.timesteps: dict[int, float] = {}

    def edit(self, act: torch.Tensor, rows: slice, gain: float, ctx: StepContext) -> torch.Tensor:
        cond = act[rows]
        if cond.shape[0] != 2 * self.n_pairs:
            raise TadaError(f"site {ctx.site}: expected {2 * self.n_pairs} conditional rows, got {cond.shape[0]}")
        m = (cond[: self.n_pairs] - cond[self.n_pairs :]).reshape(-1, cond.shape[-1]).double()
        self.records[ctx.step] = {
            "above": (m > 0).sum(dim=0).double().cpu(),
            "below": (m < 0).sum(dim=0).double().cpu(),
            "sum": m.sum(dim=0).cpu(),
            "square": m.square().sum(dim=0).cpu(),
            "samples": torch.tensor(float(m.shape[0]), dtype=torch.float64).expand(m.shape[1]).clone(),
        }
        self.timesteps[ctx.step] = ctx.timestep
        return act


def channel_scores(stats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (step, channel) of one site: ``beta``, ``max(P(m > 0), P(m < 0))`` signed by the majority, and
    the tie-breaker ``mean(m)**2 / mean(m**2)`` in [0, 1] (1: the same difference on every token)."""
    n = stats["samples"].clamp_min(1)
    p_above, p_below = stats["above"] / n, stats["below"] / n
    beta = torch.where(p_above >= p_below, p_above, -p_below)
    square = stats["square"]
    agreement = torch.where(square > 0, stats["sum"].square() / (n * square).clamp_min(1e-300), 0.0)
    return beta, agreement


def top_k_masks(scores: dict[str, tuple[torch.Tensor, torch.Tensor]], k: int) -> dict[str, torch.Tensor]:
    """Per step, keep the ``k`` channels with the largest ``|beta|`` over all sites together, ties going to
    the larger tie-breaker (then to site and channel order, so the choice is reproducible); ``beta * mask``."""
    aliases = list(scores)
    betas = torch.cat([scores[a][0] for a in aliases], dim=1)  # (steps, channels of every site)
    ties = torch.cat([scores[a][1] for a in aliases], dim=1)
    order = torch.sort(ties, dim=1, descending=True, stable=True).indices
    by_score = torch.sort(betas.abs().gather(1, order), dim=1, descending=True, stable=True).indices
    chosen = order.gather(1, by_score)[:, :k]
    mask = torch.zeros_like(betas, dtype=torch.bool).scatter_(1, chosen, True)
    kept = torch.where(mask, betas, torch.zeros_like(betas))
    widths = [scores[a][0].shape[1] for a in aliases]
    return {alias: part.float() for alias, part in zip(aliases, kept.split(widths, dim=1), strict=True)}


def default_k(model: Any) -> int:
    """The reference's share of channels, counted over every cross-attention layer of ``model``."""
    total = 0
    for site in model.layer_sites(None, "xattn"):
        module = model.engine.module(site)
        try:
            total += int(module.to_out[0].out_features)
        except (AttributeError, IndexError, TypeError):
            raise TadaError(f"cannot tell the width of {site.alias}; give the fit option k") from None
    return max(1, round(total * REFERENCE_K_FRACTION))


def _fit_k(request: FitRequest, model: Any) -> int:
    unknown = sorted(set(request.options) - set(FIT_OPTIONS))
    if unknown:
        raise TadaError(f"austeer takes no fit option {', '.join(unknown)} (it takes: {', '.join(FIT_OPTIONS)})")
    if "k" not in request.options:
        return default_k(model)
    value = request.options["k"]
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not number.is_integer() or not 1 <= number <= MAX_K:
        raise TadaError(f"k must be a whole number of channels steered per step, in [1, {MAX_K}]; got {value!r}")
    return int(number)


def compute_austeer(
    model: Any,
    pairs: Sequence[tuple[str, str]],
    concept: Concept,
    *,
    sites: list[Site],
    k: int,
    scope: str,
    seconds: float,
    steps: int,
    guidance: float,
    seed: int = 0,
    batch_pairs: int = 4,
    work_dir: str | Path | None = None,
    prompt_set: dict[str, Any] | None = None,
    progress: bool = True,
    out: str | Path | None = None,
) -> SteeringVector:
    """Score channels over the pairs (resumable with ``work_dir``), then keep the top ``k`` channels per step."""
    if not pairs:
        raise TadaError("AUSteer needs at least one prompt pair")
    validate.integer("batch_pairs", batch_pairs, 1, 10_000, "prompt pairs generated together")
    validate.generation(seconds, steps, guidance, seed, n_seeds=len(pairs))
    settings = {"seconds": seconds, "steps": steps, "guidance": guidance, "seed": seed, "batch_pairs": batch_pairs}
    config = {
        "method": "austeer",
        "family": model.family,
        "width": model.width,
        "sites": [s.alias for s in sites],
        "pairs": [list(p) for p in pairs],
        **settings,
    }

    def compute(store: UnitStore | None) -> SteeringVector:
        totals, timesteps = sum_over_pair_batches(
            model,
            pairs,
            settings,
            store,
            lambda n: {site: DifferenceStats(n) for site in sites},
            lambda collectors: per_step_tables(collectors, "channels"),
            desc=f"AUSteer {concept.name}",
            progress=progress,
        )
        scores = {s.alias: channel_scores({stat: totals[f"{stat}/{s.alias}"] for stat in STATISTICS}) for s in sites}
        kept = min(k, sum(beta.shape[1] for beta, _ in scores.values()))
        return SteeringVector(
            top_k_masks(scores, kept),
            timesteps,
            model.family,
            model.width,
            concept=concept.name,
            operation="add",
            normalisation="none",
            prompt_set=prompt_set or {"source": "custom", "n_pairs": len(pairs)},
            settings={**settings, "k": kept, "scope": scope, "renorm": True},
            method="austeer",
            decorations=concept,
        )

    return run_resumable(work_dir, config, compute, out)


class AUSteer(CAA):
    """Applied exactly as CAA (its artifact is a steering vector); only fitting differs."""

    name = "austeer"
    changes = "activations"
    summary = (
        "adds alpha * beta to the k cross-attention channels (over all chosen layers, per step) whose "
        "positive-minus-negative sign is most consistent, conditional pass; re-normalised per token by default."
    )
    alpha_convention = "multiples of the signed-score mask (entries in [-1, 1], k nonzero per step); 0 is off"

    def fit(self, model: Any, request: FitRequest) -> SteeringVector:
        k = _fit_k(request, model)
        sites = model.layer_sites(request.sites, "xattn")
        generation = request.generation(model)
        return compute_austeer(
            model,
            request.pairs,
            request.concept,
            sites=sites,
            k=k,
            scope=request.scope,
            seed=request.seed,
            batch_pairs=request.batch_pairs,
            work_dir=request.work_dir,
            prompt_set=request.prompt_set,
            progress=request.progress,
            out=request.out,
            **generation,
        )
