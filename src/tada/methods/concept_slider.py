"""Concept Sliders: a LoRA on the attention projections whose scale is the slider.

Fitting (REFERENCE.md, "Concept Sliders") trains a low-rank delta on ``to_q``, ``to_k``,
``to_v`` and ``to_out`` of attention layers (all of them: global; the self- and
cross-attention of the blocks holding the chosen cross-attention layers: localised) so
that at a point ``x_t`` of a trajectory sampled with the LoRA on, its prediction for the
positive prompt becomes ``v(x_t, negative) + eta * (v(x_t, positive) - v(x_t, empty))``
of the model without it.

Nothing here knows a family. ``x_t`` is a real denoiser call recorded from the model's own
sampler (generating the pair's positive prompt with the LoRA on), stopped at a step drawn
uniformly from its steps; the targets replay that call with every cross-attention layer's
text input replaced by what it reads for the positive, negative or empty prompt.

The LoRA is a set of forward hooks on the projections rather than replaced modules, so the
model's modules, parameters and state dict never change: removing the hooks restores it
exactly, and at scale 0 every projection's output is left as it is. Its tensors use peft's
state-dict keys (``<module>.lora_A.weight``, ``<module>.lora_B.weight``) and its scaling
(``lora_alpha / rank``), so the artifact reads as an ordinary LoRA elsewhere: peft's own
``inject_adapter_in_model`` + ``set_peft_model_state_dict`` load it and generate the same audio
(tests/test_method_concept_slider.py).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .. import validate
from ..conditioning import Conditioning, capture_conditioning, predict_with
from ..context import StepContext
from ..engine import Site, SteeringHandle
from ..errors import ArtifactError, TadaError
from ..interventions import Intervention
from ..runs import UnitStore, run_resumable
from .base import ApplyOptions, FitRequest, Method, MethodArtifact

PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")
WEIGHT_DECAY = 1e-2
GRAD_CLIP = 1.0
CHECKPOINT = "checkpoint"
# The reference's 500 iterations: on tada-mini at its defaults (5 s, 30 steps) one costs about 0.85 s of one
# CPU core (sampling x_t is most of it), so a concept trains in about 7 minutes (measured 2026-12-02).
DEFAULT_TRAIN_STEPS = 500
# fit options (request.options) and their defaults
OPTIONS: dict[str, Any] = {
    "train_steps": DEFAULT_TRAIN_STEPS,
    "rank": 8,
    "lora_alpha": 1.0,
    "eta": 7.0,
    "lr": 1e-4,
    "checkpoint_every": 25,
}
_A, _B = ".lora_A.weight", ".lora_B.weight"


# ---------------------------------------------------------------------------- the LoRA
class LoRA(nn.Module):
    """Low-rank deltas ``scale * lora_alpha / rank * B @ A @ x`` added to the outputs of some
    ``nn.Linear`` modules of a denoiser, through forward hooks; ``scale`` is the slider."""

    def __init__(self, weights: Mapping[str, tuple[torch.Tensor, torch.Tensor]], lora_alpha: float):
        super().__init__()
        self.paths = list(weights)
        self.lora_A = nn.ParameterList(nn.Parameter(a.detach().float().clone()) for a, _ in weights.values())
        self.lora_B = nn.ParameterList(nn.Parameter(b.detach().float().clone()) for _, b in weights.values())
        self.rank = int(self.lora_A[0].shape[0])
        self.lora_alpha = float(lora_alpha)
        self.scale = 1.0

    @classmethod
    def for_modules(cls, denoiser: nn.Module, paths: Sequence[str], rank: int, lora_alpha: float, seed: int) -> LoRA:
        """A fresh LoRA as peft makes one: A Kaiming-uniform, B zero (so it starts as the identity edit)."""
        generator = torch.Generator().manual_seed(seed)
        weights = {}
        for path in paths:
            fan_in, fan_out = _linear_shape(denoiser, path)
            down = torch.empty(rank, fan_in)
            nn.init.kaiming_uniform_(down, a=math.sqrt(5), generator=generator)
            weights[path] = (down, torch.zeros(fan_out, rank))
        return cls(weights, lora_alpha)

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], lora_alpha: float) -> LoRA:
        """The LoRA of an artifact (peft's state-dict keys), refusing malformed ones in one line."""
        paths = lora_paths(tensors)
        odd = sorted(set(tensors) - {p + _A for p in paths} - {p + _B for p in paths})
        missing = [p + _B for p in paths if p + _B not in tensors]
        if not paths or odd or missing:
            raise ArtifactError(
                "this concept-slider artifact holds no valid LoRA "
                f"(unexpected or unpaired tensors: {', '.join((odd + missing)[:3]) or 'none at all'})"
            )
        weights = {p: (tensors[p + _A], tensors[p + _B]) for p in paths}
        rank = weights[paths[0]][0].shape[0]
        for path, (down, up) in weights.items():
            if down.ndim != 2 or up.ndim != 2 or down.shape[0] != rank or up.shape[1] != rank:
                raise ArtifactError(f"this concept-slider artifact's LoRA for {path} has inconsistent shapes")
        if not (isinstance(lora_alpha, (int, float)) and math.isfinite(lora_alpha) and lora_alpha > 0):
            raise ArtifactError(f"this concept-slider artifact's lora_alpha {lora_alpha!r} is not a positive number")
        return cls(weights, lora_alpha)

    def tensors(self) -> dict[str, torch.Tensor]:
        """peft's state-dict keys: ``<module>.lora_A.weight`` (rank, in) and ``<module>.lora_B.weight`` (out, rank)."""
        out = {}
        for path, down, up in zip(self.paths, self.lora_A, self.lora_B):
            out[path + _A] = down.detach().cpu().clone()
            out[path + _B] = up.detach().cpu().clone()
        return out

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for path, down, up in zip(self.paths, self.lora_A, self.lora_B):
                down.copy_(tensors[path + _A])
                up.copy_(tensors[path + _B])

    @contextmanager
    def scaled(self, scale: float) -> Iterator[None]:
        previous, self.scale = self.scale, float(scale)
        try:
            yield
        finally:
            self.scale = previous

    def check(self, denoiser: nn.Module, family: str) -> None:
        """Refuse a denoiser whose projections are not where, or not the shape, this LoRA expects."""
        for path, down, up in zip(self.paths, self.lora_A, self.lora_B):
            try:
                shape = _linear_shape(denoiser, path)
            except TadaError:
                raise ArtifactError(
                    f"this concept-slider artifact puts a LoRA on {path}, "
                    f"which this {family} model does not have as a linear layer"
                ) from None
            if shape != (down.shape[1], up.shape[0]):
                raise ArtifactError(
                    f"this concept-slider artifact's LoRA for {path} maps {down.shape[1]} to {up.shape[0]} features; "
                    f"the model's {path} maps {shape[0]} to {shape[1]}"
                )

    def attach(self, denoiser: nn.Module) -> Callable[[], None]:
        """Hook the deltas onto the projections; the returned function removes every hook."""
        handles = [
            denoiser.get_submodule(path).register_forward_hook(self._hook(index))
            for index, path in enumerate(self.paths)
        ]

        def detach() -> None:
            for handle in handles:
                handle.remove()

        return detach

    def _hook(self, index: int) -> Callable[..., torch.Tensor | None]:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
            if self.scale == 0.0:
                return None
            x = args[0]
            down, up = self.lora_A[index].to(x.dtype), self.lora_B[index].to(x.dtype)
            return output + F.linear(F.linear(x, down), up) * (self.scale * self.lora_alpha / self.rank)

        return hook


def lora_paths(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """The modules a LoRA state dict puts deltas on."""
    return sorted({key[: -len(_A)] for key in tensors if key.endswith(_A)})


def _linear_shape(denoiser: nn.Module, path: str) -> tuple[int, int]:
    try:
        module = denoiser.get_submodule(path)
    except AttributeError:
        raise TadaError(f"the denoiser has no module {path!r}") from None
    if not isinstance(module, nn.Linear):
        raise TadaError(f"{path} is a {type(module).__name__}, not the linear projection a LoRA goes on")
    return module.in_features, module.out_features


# ---------------------------------------------------------------------------- where it goes
def _block(path: str) -> str:
    return path.rpartition(".")[0]


def attention_layers(model: Any, sites: Sequence[str] | str | None) -> list[Site]:
    """Every attention layer (global), or those in the blocks of the chosen cross-attention layers."""
    attention = [s for s in model.sites.values() if s.kind in ("xattn", "attn")]
    if sites is None:
        return attention
    blocks = {_block(s.path) for s in model.layer_sites(sites, "xattn")}
    return [s for s in attention if _block(s.path) in blocks]


def projection_paths(model: Any, layers: Sequence[Site]) -> list[str]:
    """The ``to_q``/``to_k``/``to_v``/``to_out`` linear projections of attention layers."""
    paths = []
    for site in layers:
        for name in PROJECTIONS:
            path = f"{site.path}.{name}"
            try:
                _linear_shape(model.denoiser, path)
            except TadaError:
                raise TadaError(
                    f"{site.alias} ({site.path}) has no linear {name}; concept-slider puts its LoRA on "
                    + ", ".join(PROJECTIONS)
                ) from None
            paths.append(path)
    return paths


# ---------------------------------------------------------------------------- replaying the denoiser
@dataclass
class RecordedCall:
    """One sample's row of a real denoiser call: what the sampler fed the denoiser at ``x_t``.

    ``batched`` names the positional indices and keywords that carried one row per batch row
    (the others, such as a shared timestep or rotary table, are kept as they were)."""

    args: tuple
    kwargs: dict[str, Any]
    batched: frozenset[int | str]

    @classmethod
    def take(cls, call: tuple[tuple, dict], rows: slice, n_rows: int) -> RecordedCall:
        args, kwargs = call
        rows = slice(rows.start, rows.start + 1)

        def per_row(value: Any) -> bool:
            return isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == n_rows

        def pick(value: Any) -> Any:
            return value[rows].detach().clone() if per_row(value) else value

        batched = {i for i, v in enumerate(args) if per_row(v)} | {k for k, v in kwargs.items() if per_row(v)}
        return cls(tuple(pick(v) for v in args), {k: pick(v) for k, v in kwargs.items()}, frozenset(batched))

    def batch(self, rows: int) -> tuple[tuple, dict[str, Any]]:
        """The call for ``rows`` copies of the sample."""

        def grow(key: int | str, value: Any) -> Any:
            return value.repeat(rows, *[1] * (value.ndim - 1)) if key in self.batched and rows > 1 else value

        args = tuple(grow(i, v) for i, v in enumerate(self.args))
        return args, {k: grow(k, v) for k, v in self.kwargs.items()}


class _Reached(Exception):
    """Stops the sampler once the wanted step has been recorded."""


class _RecordStep(Intervention):
    """At the denoiser's output in step ``step``: keep the call's conditional row, then stop the sampler."""

    rows = "cond"

    def __init__(self, step: int):
        self.step = step
        self.call: RecordedCall | None = None

    def edit(self, act: torch.Tensor, rows: slice, gain: float, ctx: StepContext) -> torch.Tensor:
        if ctx.step == self.step and ctx.call is not None:
            self.call = RecordedCall.take(ctx.call, rows, ctx.n_rows)
            raise _Reached
        return act


def sample_point(model: Any, prompt: str, step: int, seed: int, generation: dict[str, Any]) -> RecordedCall:
    """The denoiser call of step ``step`` when the model generates ``prompt`` (with whatever is installed)."""
    recorder = _RecordStep(step)
    handle = model.engine.add({model.denoiser_site: recorder})
    try:
        model.generate(prompt, seed=seed, **generation)
    except _Reached:
        pass
    finally:
        handle.remove()
    if recorder.call is None:
        raise TadaError(f"the sampler never reached step {step} of {generation['steps']}")
    return recorder.call


def predict(model: Any, call: RecordedCall, conditioning: Mapping[str, Conditioning]) -> torch.Tensor:
    """The denoiser's prediction at ``call``, one row per conditioning row, every cross-attention
    layer reading ``conditioning[its xattn_in alias]`` as its text."""
    rows = next(iter(conditioning.values())).states.shape[0]
    args, kwargs = call.batch(rows)
    return predict_with(model, conditioning, args, kwargs)


def slider_loss(
    model: Any, lora: LoRA, call: RecordedCall, conditioning: Mapping[str, Conditioning], eta: float
) -> torch.Tensor:
    """``|v_lora(x_t, pos) - (v(x_t, neg) + eta (v(x_t, pos) - v(x_t, empty)))|^2``; ``conditioning``
    holds the rows (positive, negative, empty)."""
    with torch.no_grad(), lora.scaled(0.0):
        positive, negative, empty = predict(model, call, conditioning).float()
    target = negative + eta * (positive - empty)
    with torch.enable_grad(), lora.scaled(1.0):
        steered = predict(model, call, {alias: c.rows(slice(0, 1)) for alias, c in conditioning.items()})[0]
    return F.mse_loss(steered.float(), target)


# ---------------------------------------------------------------------------- training
@contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """No gradients for the model's own parameters while the LoRA trains."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def _attached(lora: LoRA, denoiser: nn.Module) -> Iterator[None]:
    detach = lora.attach(denoiser)
    try:
        yield
    finally:
        detach()


def _checkpoint(lora: LoRA, optimizer: torch.optim.Optimizer, losses: list[float]) -> dict[str, torch.Tensor]:
    tensors = {f"lora:{key}": value for key, value in lora.tensors().items()}
    for index, entries in optimizer.state_dict()["state"].items():
        for name, value in entries.items():
            tensors[f"optimizer:{index}:{name}"] = value
    tensors["losses"] = torch.tensor(losses, dtype=torch.float64)
    return tensors


def _resume(store: UnitStore | None, lora: LoRA, optimizer: torch.optim.Optimizer) -> list[float]:
    """Restore the last checkpoint (LoRA, optimizer, losses so far); the losses' count is the iteration."""
    if store is None or not store.done(CHECKPOINT):
        return []
    tensors = store.load(CHECKPOINT)
    state: dict[int, dict[str, torch.Tensor]] = {}
    try:
        lora.load_tensors({key[5:]: value for key, value in tensors.items() if key.startswith("lora:")})
        for key, value in tensors.items():
            if key.startswith("optimizer:"):
                _, index, name = key.split(":", 2)
                state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
        return [float(x) for x in tensors["losses"].tolist()]
    except (KeyError, ValueError, RuntimeError) as exc:
        raise TadaError(f"the concept-slider checkpoint in {store.directory} is unusable ({exc}); delete it") from None


def draw(seed: int, iteration: int, n_pairs: int, steps: int) -> tuple[int, int, int]:
    """(pair, step, noise seed) of one iteration: a function of the seed and the iteration alone, so a
    resumed run draws what the uninterrupted one would have."""
    rng = random.Random(f"concept-slider:{seed}:{iteration}")
    return rng.randrange(n_pairs), rng.randrange(steps), rng.randrange(validate.MAX_SEED + 1)


def train(
    model: Any,
    lora: LoRA,
    pairs: Sequence[tuple[str, str]],
    settings: dict[str, Any],
    generation: dict[str, Any],
    seed: int,
    store: UnitStore | None = None,
    progress: bool = True,
    label: str = "",
) -> list[float]:
    """Train ``lora`` (attached to the model meanwhile) for ``settings['train_steps']`` iterations; the losses."""
    optimizer = torch.optim.AdamW(lora.parameters(), lr=settings["lr"], weight_decay=WEIGHT_DECAY)
    losses = _resume(store, lora, optimizer)
    total, every = settings["train_steps"], settings["checkpoint_every"]
    start = len(losses)
    desc = f"concept-slider {label}".strip()
    with (
        _frozen(model.denoiser),
        _attached(lora, model.denoiser),
        tqdm(range(start, total), initial=start, total=total, desc=desc, unit="it", disable=not progress) as bar,
    ):
        for iteration in bar:
            pair, step, noise = draw(seed, iteration, len(pairs), generation["steps"])
            loss = _iteration_loss(model, lora, pairs[pair], step, noise, generation, settings["eta"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(lora.parameters(), GRAD_CLIP)
            optimizer.step()
            losses.append(loss.item())
            if not math.isfinite(losses[-1]):
                raise TadaError(f"concept-slider's loss became {losses[-1]} at iteration {iteration + 1}; lower lr")
            bar.set_postfix(loss=f"{losses[-1]:.4g}")
            if store is not None and len(losses) % every == 0 and len(losses) < total:
                store.save(CHECKPOINT, _checkpoint(lora, optimizer, losses))
    return losses


def _iteration_loss(
    model: Any, lora: LoRA, pair: tuple[str, str], step: int, noise: int, generation: dict[str, Any], eta: float
) -> torch.Tensor:
    """One iteration: ``x_t`` sampled from the positive prompt with the LoRA on, the targets without it."""
    positive, negative = pair
    with lora.scaled(1.0):
        call = sample_point(model, positive, step, noise, generation)
    with lora.scaled(0.0):
        text_sites = model.layer_sites(None, "xattn_in")
        conditioning = capture_conditioning(model, [positive, negative, ""], text_sites, **generation)
    return slider_loss(model, lora, call, conditioning, eta)


def fit_options(given: Mapping[str, Any]) -> dict[str, Any]:
    """The fit options with their defaults, each checked (None means not given)."""
    unknown = sorted(k for k, v in given.items() if v is not None and k not in OPTIONS)
    if unknown:
        raise TadaError(f"concept-slider takes no option {', '.join(unknown)} (it takes: {', '.join(OPTIONS)})")
    values = {**OPTIONS, **{k: v for k, v in given.items() if v is not None}}
    return {
        "train_steps": validate.integer("--train-steps", values["train_steps"], 1, 100_000, "training iterations"),
        "rank": validate.integer("rank", values["rank"], 1, 256, "the LoRA's rank"),
        "lora_alpha": validate.finite("lora_alpha", values["lora_alpha"], 0.0, 1e4, "the LoRA's alpha", True),
        "eta": validate.finite("eta", values["eta"], -1e3, 1e3, "the target's guidance factor"),
        "lr": validate.finite("lr", values["lr"], 0.0, 1.0, "the learning rate", True),
        "checkpoint_every": validate.integer(
            "checkpoint_every", values["checkpoint_every"], 1, 100_000, "iterations between checkpoints"
        ),
    }


def loss_summary(losses: Sequence[float], chunks: int = 10) -> dict[str, Any]:
    """Mean loss over the first and last tenth of training and over up to ``chunks`` equal stretches."""

    def mean(values: Sequence[float]) -> float:
        return float(f"{sum(values) / len(values):.6g}")

    n = len(losses)
    tenth = max(1, n // 10)
    edges = [round(i * n / min(chunks, n)) for i in range(min(chunks, n) + 1)]
    return {
        "loss_first": mean(losses[:tenth]),
        "loss_last": mean(losses[-tenth:]),
        "loss_curve": [mean(losses[a:b]) for a, b in zip(edges, edges[1:])],
    }


# ---------------------------------------------------------------------------- the method
class ConceptSlider(Method):
    name = "concept-slider"
    changes = "weights"
    summary = (
        "a LoRA on the attention projections (every layer, or the chosen layers' blocks), trained so that "
        "the positive prompt's prediction moves eta times along positive-minus-empty; its scale is the slider."
    )
    alpha_convention = "the LoRA's scale, in [-10, 10]; 0 is the base model, a negative scale subtracts the delta"
    alpha_range = (-10.0, 10.0)

    def fit(self, model: Any, request: FitRequest) -> MethodArtifact:
        settings = fit_options(request.options)
        if not request.pairs:
            raise TadaError("concept-slider needs at least one prompt pair to train on")
        targets = projection_paths(model, attention_layers(model, request.sites))
        generation = request.generation(model)
        sites = [s.alias for s in model.layer_sites(request.sites, "xattn")]
        recipe = {
            **{k: v for k, v in settings.items() if k != "checkpoint_every"},
            "weight_decay": WEIGHT_DECAY,
            "grad_clip": GRAD_CLIP,
            **generation,
            "seed": request.seed,
        }
        config = {
            "method": self.name,
            "family": model.family,
            "width": model.width,
            "targets": targets,
            "pairs": [list(p) for p in request.pairs],
            **recipe,
        }

        def compute(store: UnitStore | None) -> MethodArtifact:
            lora = LoRA.for_modules(model.denoiser, targets, settings["rank"], settings["lora_alpha"], request.seed)
            lora.to(model.device)
            losses = train(
                model,
                lora,
                request.pairs,
                settings,
                generation,
                request.seed,
                store=store,
                progress=request.progress,
                label=request.concept.name,
            )
            return MethodArtifact(
                self.name,
                model.family,
                model.width,
                sites,
                request.concept,
                lora.tensors(),
                {"scope": request.scope, "target_modules": targets, **recipe, **loss_summary(losses)},
                request.prompt_set,
            )

        return run_resumable(request.work_dir, config, compute, request.out)

    def apply(self, artifact: MethodArtifact, model: Any, alpha: float, options: ApplyOptions) -> SteeringHandle:
        alpha = self.checked(artifact, model, alpha, options)
        lora = LoRA.from_tensors(artifact.tensors, artifact.settings.get("lora_alpha"))
        lora.check(model.denoiser, model.family)
        if alpha == 0.0:
            return SteeringHandle(model.engine, [])
        lora.to(device=model.device, dtype=model.dtype).requires_grad_(False)
        lora.scale = alpha
        return SteeringHandle(model.engine, [], undo=[lora.attach(model.denoiser)])

    def claims(self, artifact: MethodArtifact, model: Any) -> dict[str, str]:
        return {f"the weights of {path}": "add" for path in lora_paths(artifact.tensors)}
