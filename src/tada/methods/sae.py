"""SAE steering: the decoder rows of the SAE features that tell a concept's positive prompts from its negatives.

Fitting generates each prompt pair (positive, negative) from shared noise, as CAA does, and at every step
and SAE site encodes every token of the conditional-pass output into the SAE's *dense* ReLU
pre-activations (not its TopK codes). Per step, each feature is scored over the tokens of all positive
and of all negative prompts:

* ``tfidf`` (the reference's rule): ``mean_pos * log(1 + 1 / (mean_neg + 1e-6))``;
* ``diff``: ``mean_pos - mean_neg``;
* ``cohen``: ``(mean_pos - mean_neg) / pooled standard deviation``.

The ``top`` best features per step give the step's vector, the unweighted sum of their (unit-norm)
decoder rows; the artifact is a :class:`~tada.artifacts.SteeringVector` applied like CAA (``h += alpha *
v`` on the conditional rows, re-normalised per token by default) whose settings list the chosen features
per site and step. ``features=[12, 873]`` skips scoring and steers with those features at every step
(a hand-picked slider). Only running sums per feature and step are kept while fitting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .. import validate
from ..artifacts import SteeringVector
from ..context import StepContext
from ..engine import Site
from ..errors import TadaError
from ..interventions import Intervention
from ..pair_batches import per_step_tables, sum_over_pair_batches
from ..runs import UnitStore, run_resumable
from ..sae.model import TopKSAE, load_saes
from .base import FitRequest
from .caa import CAA

SCORES = ("tfidf", "diff", "cohen")
FIT_OPTIONS = ("sae", "top", "score", "features")
DEFAULT_TOP = 20
STATISTICS = ("sum", "square", "count")


def sae_sites(model: Any, saes: dict[str, TopKSAE]) -> dict[str, tuple[Site, TopKSAE]]:
    """Each SAE's site on ``model``: the site whose module path is the SAE's hookpoint, keyed by alias."""
    by_path = {s.path: s for s in model.sites.values() if not s.is_input and s.kind != "denoiser"}
    out: dict[str, tuple[Site, TopKSAE]] = {}
    for hookpoint, sae in saes.items():
        site = by_path.get(hookpoint)
        if site is None:
            raise TadaError(
                f"the SAE at hookpoint {hookpoint!r} matches no module of {model.family}; "
                f"hookpoints look like {next(iter(by_path), '(none)')}"
            )
        module = model.engine.module(site)
        width = getattr(getattr(module, "to_out", [None])[0], "out_features", None)
        if width is not None and width != sae.d_in:
            raise TadaError(f"the SAE at {hookpoint} reads {sae.d_in} dimensions; {site.alias} outputs {width}")
        out[site.alias] = (site, sae)
    return out


class FeatureStats(Intervention):
    """Per step, over every token of the positive rows and of the negative rows: the sum, the sum of
    squares and the count of each feature's dense ReLU pre-activation."""

    rows = "cond"

    def __init__(self, sae: TopKSAE, n_pairs: int):
        self.sae = sae
        self.n_pairs = n_pairs
        self.records: dict[int, dict[str, torch.Tensor]] = {}
        self.timesteps: dict[int, float] = {}

    @torch.no_grad()
    def edit(self, act: torch.Tensor, rows: slice, gain: float, ctx: StepContext) -> torch.Tensor:
        cond = act[rows]
        if cond.shape[0] != 2 * self.n_pairs:
            raise TadaError(f"site {ctx.site}: expected {2 * self.n_pairs} conditional rows, got {cond.shape[0]}")
        sae_device = self.sae.W_dec.device
        record = {}
        for side, part in (("pos", cond[: self.n_pairs]), ("neg", cond[self.n_pairs :])):
            pre = self.sae.pre_acts(part.reshape(-1, part.shape[-1]).to(sae_device)).double()
            record[f"{side}_sum"] = pre.sum(dim=0).cpu()
            record[f"{side}_square"] = pre.square().sum(dim=0).cpu()
            record[f"{side}_count"] = torch.full((pre.shape[1],), float(pre.shape[0]), dtype=torch.float64)
        self.records[ctx.step] = record
        self.timesteps[ctx.step] = ctx.timestep
        return act


def feature_totals(
    model: Any,
    pairs: Sequence[tuple[str, str]],
    chosen: dict[str, tuple[Site, TopKSAE]],
    settings: dict[str, Any],
    store: UnitStore | None = None,
    *,
    desc: str = "SAE features",
    progress: bool = True,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Generate the pairs and sum, per SAE site and step, the :class:`FeatureStats` of every feature:
    the totals :func:`feature_scores` reads (``settings`` as for :func:`~tada.pair_batches.sum_over_pair_batches`)."""
    return sum_over_pair_batches(
        model,
        pairs,
        settings,
        store,
        lambda n: {site: FeatureStats(sae, n) for site, sae in chosen.values()},
        lambda collectors: per_step_tables(collectors, "features"),
        desc=desc,
        progress=progress,
    )


def feature_scores(totals: dict[str, torch.Tensor], alias: str, rule: str) -> torch.Tensor:
    """``(steps, latents)`` scores of one site's features under ``rule``."""
    mean = {side: totals[f"{side}_sum/{alias}"] / totals[f"{side}_count/{alias}"] for side in ("pos", "neg")}
    if rule == "tfidf":
        return mean["pos"] * torch.log1p(1.0 / (mean["neg"] + 1e-6))
    if rule == "diff":
        return mean["pos"] - mean["neg"]
    if rule == "cohen":
        var = {}
        for side in ("pos", "neg"):
            n = totals[f"{side}_count/{alias}"]
            var[side] = (totals[f"{side}_square/{alias}"] - n * mean[side].square()) / (n - 1).clamp_min(1)
        pooled = ((var["pos"] + var["neg"]) / 2).clamp_min(0).sqrt()
        return (mean["pos"] - mean["neg"]) / pooled.clamp_min(1e-12)
    raise TadaError(f"unknown feature score {rule!r}; choose one of {', '.join(SCORES)}")


def top_features(scores: torch.Tensor, top: int) -> torch.Tensor:
    """``(steps, top)`` indices of the best-scoring features per step (ties to the lower index)."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return order[:, : min(top, scores.shape[1])]


def decoder_sum(sae: TopKSAE, features: torch.Tensor) -> torch.Tensor:
    """The sum of the features' decoder rows, per row of ``features`` (``(steps, chosen)`` -> ``(steps, d)``)."""
    return sae.W_dec.detach().float().cpu()[features].sum(dim=1)


def _fingerprint(sae: TopKSAE) -> str:
    """A short hash of the SAE's weights: resumed scoring must use the same SAE."""
    digest = hashlib.sha256()
    for tensor in (sae.encoder.weight, sae.encoder.bias, sae.b_dec):
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _options(request: FitRequest) -> dict[str, Any]:
    unknown = sorted(set(request.options) - set(FIT_OPTIONS))
    if unknown:
        raise TadaError(f"sae takes no fit option {', '.join(unknown)} (it takes: {', '.join(FIT_OPTIONS)})")
    if request.options.get("sae") is None:
        raise TadaError("the sae method needs the SAE directory (--sae DIR, written by `tada sae train`)")
    top = request.options.get("top", DEFAULT_TOP)
    validate.integer("top", top, 1, 1_000_000, "features kept per step")
    rule = request.options.get("score", "tfidf")
    if rule not in SCORES:
        raise TadaError(f"unknown feature score {rule!r}; choose one of {', '.join(SCORES)}")
    features = request.options.get("features")
    if isinstance(features, str):
        try:
            features = [int(f) for f in features.split(",") if f.strip()]
        except ValueError:
            raise TadaError(
                f"--features takes feature numbers separated by commas, e.g. 12,873; got {features!r}"
            ) from None
    if features is not None and not features:
        raise TadaError("--features names no feature")
    return {"sae": Path(request.options["sae"]), "top": int(top), "score": rule, "features": features}


def compute_sae_vector(
    model: Any,
    pairs: Sequence[tuple[str, str]],
    request: FitRequest,
    chosen: dict[str, tuple[Site, TopKSAE]],
    top: int,
    rule: str,
    sae_dir: Path,
) -> SteeringVector:
    """Score every feature over the pairs (resumable with the request's work directory), keep the best."""
    if not pairs:
        raise TadaError("SAE feature scoring needs at least one prompt pair")
    generation = request.generation(model)
    validate.integer("batch_pairs", request.batch_pairs, 1, 10_000, "prompt pairs generated together")
    validate.generation(
        generation["seconds"], generation["steps"], generation["guidance"], request.seed, n_seeds=len(pairs)
    )
    settings = {**generation, "seed": request.seed, "batch_pairs": request.batch_pairs}
    config = {
        "method": "sae",
        "family": model.family,
        "width": model.width,
        "sites": {alias: sae.hookpoint for alias, (_, sae) in chosen.items()},
        "sae_weights": {alias: _fingerprint(sae) for alias, (_, sae) in chosen.items()},
        "pairs": [list(p) for p in pairs],
        **settings,
    }

    def compute(store: UnitStore | None) -> SteeringVector:
        desc = f"SAE features {request.concept.name}"
        totals, timesteps = feature_totals(model, pairs, chosen, settings, store, desc=desc, progress=request.progress)
        vectors, features = {}, {}
        for alias, (_, sae) in chosen.items():
            picked = top_features(feature_scores(totals, alias, rule), top)
            vectors[alias] = decoder_sum(sae, picked)
            features[alias] = picked.tolist()
        return _vector(model, request, vectors, timesteps, features, sae_dir, {**settings, "top": top, "score": rule})

    return run_resumable(request.work_dir, config, compute, request.out)


def _vector(
    model: Any,
    request: FitRequest,
    vectors: dict[str, torch.Tensor],
    timesteps: torch.Tensor,
    features: dict[str, Any],
    sae_dir: Path,
    settings: dict[str, Any],
) -> SteeringVector:
    return SteeringVector(
        vectors,
        timesteps,
        model.family,
        model.width,
        concept=request.concept.name,
        operation="add",
        normalisation="none",
        prompt_set=request.prompt_set,
        settings={**settings, "features": features, "sae": str(sae_dir), "scope": "localised", "renorm": True},
        method="sae",
        decorations=request.concept,
    )


class SAESteering(CAA):
    """Applied exactly as CAA (its artifact is a steering vector); fitting scores SAE features."""

    name = "sae"
    changes = "activations"
    summary = (
        "adds the sum of the decoder rows of the SAE features that score highest for the concept (per step, "
        "per SAE site) to every token of those sites' outputs, conditional pass; re-normalised per token by default."
    )
    alpha_convention = "multiples of the summed unit-norm decoder rows; 0 is off, the sign picks the pole"

    def fit(self, model: Any, request: FitRequest) -> SteeringVector:
        options = _options(request)
        saes = load_saes(options["sae"], device=model.device)
        chosen = sae_sites(model, saes)
        if request.sites is not None:
            wanted = {s.alias for s in model.layer_sites(request.sites, "xattn")} | set(request.sites)
            chosen = {alias: pair for alias, pair in chosen.items() if alias in wanted}
            if not chosen:
                raise TadaError(f"none of the SAEs in {options['sae']} sits at {', '.join(request.sites)}")
        if options["features"] is None:
            return compute_sae_vector(
                model, request.pairs, request, chosen, options["top"], options["score"], options["sae"]
            )
        if len(chosen) != 1:
            raise TadaError(
                f"--features names features of one SAE, and {options['sae']} holds {len(chosen)}; pick one with --sites"
            )
        ((alias, (_, sae)),) = chosen.items()
        bad = [f for f in options["features"] if not 0 <= f < sae.num_latents]
        if bad:
            raise TadaError(f"the SAE at {alias} has features 0 to {sae.num_latents - 1}; got {bad}")
        picked = torch.tensor([options["features"]])
        vector = _vector(
            model,
            request,
            {alias: decoder_sum(sae, picked)},
            torch.zeros(1, dtype=torch.float64),
            {alias: picked.tolist()},
            options["sae"],
            {"hand_picked": True},
        )
        if request.out is not None:
            vector.save(request.out)
        return vector
