"""Train a TopK SAE on one cached site: the reference's recipe, resumable, with a held-out report.

The recipe (REFERENCE.md, SAE): Adam with a linear schedule (warm-up, then decay to 0), gradient clip 1,
decoder rows kept at unit norm with the gradient component along each row removed before every step,
``b_dec`` started at the geometric median of the first batch, the AuxK loss (weight 1/32, ``k_aux =
d_in / 2``) on latents that have not fired for ``dead_after`` training vectors, and optionally BatchTopK
(the ``k * batch`` largest activations of the whole batch) whose threshold (the mean smallest kept
activation over the last tenth of training) is stored for inference.

Every ``checkpoint_every`` steps the parameters, the optimiser's state, the dead-latent counters and
the loss history go to ``<out>/<hookpoint>/checkpoint.safetensors`` (+ ``checkpoint.json``); the same
command started again resumes there (the batch order is a function of the seed and epoch, so the resumed
run sees the batches the killed one would have). The finished SAE is written in sparsify's layout with
``training.json`` (settings, held-out FVU, L0, dead share, time) and ``loss.png`` beside it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from .. import __version__, validate
from ..errors import TadaError
from ..files import write_json, write_safetensors, write_text
from .cache import ActivationCache
from .model import SAEConfig, TopKSAE
from .sparse import Selection, decode_selection, kept_values

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"
REPORT = "training.json"
THRESHOLD_SHARE = 0.1  # the BatchTopK threshold averages the last tenth of the steps


@dataclass
class TrainSettings:
    expansion: int = 4
    k: int = 24
    batch_topk: bool = False
    batch_size: int = 4096
    epochs: int = 10
    lr: float | None = None  # None: 2e-4 / sqrt(latents / 16384), the scaling rule sparsify uses
    warmup: int = 1000  # at most a tenth of all steps
    auxk_weight: float = 1 / 32
    dead_after: int = 10_000_000  # training vectors without firing; at most one epoch's worth
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 200
    eval_every: int = 100
    device: str = "cpu"

    def check(self) -> None:
        validate.integer("expansion", self.expansion, 1, 1024, "latents per input dimension")
        validate.integer("k", self.k, 1, 1 << 20, "latents kept per token")
        validate.integer("batch_size", self.batch_size, 1, 1 << 20, "vectors per step")
        validate.integer("epochs", self.epochs, 1, 10_000, "passes over the training vectors")
        validate.integer("warmup", self.warmup, 0, 10**9, "warm-up steps")
        validate.integer("dead_after", self.dead_after, 1, 10**12, "vectors without firing before a latent is dead")
        validate.integer("checkpoint_every", self.checkpoint_every, 1, 10**9, "steps between checkpoints")
        validate.integer("eval_every", self.eval_every, 1, 10**9, "steps between held-out evaluations")
        if self.lr is not None and not (0 < self.lr < 1):
            raise TadaError(f"lr must be in (0, 1); got {self.lr}")
        if not (0 <= self.auxk_weight <= 100) or not (self.grad_clip > 0):
            raise TadaError("auxk_weight must be in [0, 100] and grad_clip above 0")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise TadaError(f"--device {self.device}: no CUDA device is available here; use --device cpu")


def geometric_median(points: torch.Tensor, iterations: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances to ``points``."""
    points = points.double()
    median = points.mean(0)
    for _ in range(iterations):
        weights = 1.0 / (points - median).norm(dim=1).clamp_min(1e-12)
        step = (weights[:, None] * points).sum(0) / weights.sum()
        if (step - median).norm() <= tol * median.norm().clamp_min(1e-12):
            median = step
            break
        median = step
    return median


@dataclass
class StepResult:
    fvu: float
    auxk: float
    fired: torch.Tensor
    threshold: float | None


class Trainer:
    """One SAE, its optimiser and counters; :meth:`step` is one optimisation step on a batch."""

    def __init__(self, sae: TopKSAE, settings: TrainSettings, total_steps: int, dead_after: int):
        self.sae, self.settings = sae, settings
        latents = sae.num_latents
        self.lr = settings.lr if settings.lr is not None else 2e-4 / math.sqrt(latents / 2**14)
        self.warmup = min(settings.warmup, max(1, total_steps // 10))
        self.total_steps = total_steps
        self.dead_after = dead_after
        self.optimiser = torch.optim.Adam(sae.parameters(), lr=self.lr)
        self.since_fired = torch.zeros(latents, dtype=torch.int64, device=sae.W_dec.device)
        self.steps_done = 0

    def rate(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        return self.lr * max(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup))

    def step(self, x: torch.Tensor) -> StepResult:
        sae, settings = self.sae, self.settings
        x = x.to(sae.W_dec.dtype)
        if sae.cfg.input_unit_norm:
            x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        centred = x - sae.b_dec
        with torch.no_grad():
            pre = torch.nn.functional.linear(centred, sae.encoder.weight, sae.encoder.bias).relu_()
        chooser = Selection.batch_topk if settings.batch_topk else Selection.per_row_topk
        kept = chooser(pre, sae.k)
        values = kept_values(centred, sae.encoder.weight, sae.encoder.bias, pre, kept)
        recon = decode_selection(values, kept, sae.W_dec) + sae.b_dec
        error = x - recon
        variance = (x - x.mean(0)).pow(2).sum().clamp_min(1e-30)
        fvu = error.pow(2).sum() / variance
        loss = fvu
        dead = self.since_fired >= self.dead_after
        n_dead = int(dead.sum())
        auxk = torch.zeros((), dtype=x.dtype, device=x.device)
        if n_dead and settings.auxk_weight > 0:
            k_aux = min(sae.d_in // 2, n_dead)
            dead_latents = dead.nonzero().squeeze(1)
            aux = Selection.per_row_topk(pre.index_select(1, dead_latents), k_aux)
            aux.latents = dead_latents[aux.latents]  # back to latent numbers
            aux_values = kept_values(centred, sae.encoder.weight, sae.encoder.bias, pre, aux)
            residual = decode_selection(aux_values, aux, sae.W_dec)
            scale = min(n_dead / (sae.d_in // 2), 1.0)
            auxk = scale * (residual - error.detach()).pow(2).sum() / variance
            loss = loss + settings.auxk_weight * auxk
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if sae.cfg.normalize_decoder:
            sae.remove_parallel_gradient()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), settings.grad_clip)
        for group in self.optimiser.param_groups:
            group["lr"] = self.rate(self.steps_done)
        self.optimiser.step()
        if sae.cfg.normalize_decoder:
            sae.normalise_decoder()
        with torch.no_grad():
            positive = values > 0
            fired = torch.zeros(sae.num_latents, dtype=torch.bool, device=x.device)
            fired[kept.latents[positive]] = True
            self.since_fired += x.shape[0]
            self.since_fired[fired] = 0
            threshold = float(values[positive].min()) if settings.batch_topk and bool(positive.any()) else None
        self.steps_done += 1
        return StepResult(float(fvu.detach()), float(auxk.detach()), fired, threshold)

    # -- checkpoints ------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"param/{name}": p.detach().cpu() for name, p in self.sae.named_parameters()}
        names = dict(self.sae.named_parameters())
        by_id = {id(p): name for name, p in names.items()}
        for p, state in self.optimiser.state.items():
            name = by_id[id(p)]
            out[f"adam/{name}/exp_avg"] = state["exp_avg"].cpu()
            out[f"adam/{name}/exp_avg_sq"] = state["exp_avg_sq"].cpu()
            out[f"adam/{name}/step"] = torch.as_tensor(state["step"], dtype=torch.float64).reshape(1).cpu()
        out["since_fired"] = self.since_fired.cpu()
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        device = self.sae.W_dec.device
        params = dict(self.sae.named_parameters())
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(tensors[f"param/{name}"].to(device))
        for name, p in params.items():
            if f"adam/{name}/exp_avg" in tensors:
                self.optimiser.state[p] = {
                    "step": tensors[f"adam/{name}/step"].reshape(()).float(),
                    "exp_avg": tensors[f"adam/{name}/exp_avg"].to(device),
                    "exp_avg_sq": tensors[f"adam/{name}/exp_avg_sq"].to(device),
                }
        self.since_fired = tensors["since_fired"].to(device)


@torch.no_grad()
def evaluate(sae: TopKSAE, vectors: torch.Tensor, batch: int = 8192, mode: str = "topk") -> dict[str, float]:
    """Held-out FVU, mean L0 (latents above zero per vector) and the share of latents that never fire."""
    error = 0.0
    total = 0.0
    nonzero = 0
    fired = torch.zeros(sae.num_latents, dtype=torch.bool, device=sae.W_dec.device)
    mean = vectors.float().mean(0).to(sae.W_dec.device)
    for start in range(0, vectors.shape[0], batch):
        x = vectors[start : start + batch].to(sae.W_dec.device, sae.W_dec.dtype)
        values, indices = sae.encode(x, mode)
        _, norm = sae._unit(x)
        recon = sae.decode(values, indices, norm)
        error += float((x - recon).pow(2).sum())
        total += float((x - mean).pow(2).sum())
        positive = values > 0
        nonzero += int(positive.sum())
        fired[indices[positive]] = True
    return {
        "fvu": error / max(total, 1e-30),
        "l0": nonzero / max(1, vectors.shape[0]),
        "dead_share": float((~fired).float().mean()),
        "vectors": int(vectors.shape[0]),
    }


CACHE_PARTS = ("all", "train", "held-out")


def evaluate_on_cache(sae_dir: str | Path, cache_dir: str | Path, *, part: str = "all") -> list[dict[str, Any]]:
    """:func:`evaluate` for every SAE in ``sae_dir`` on the vectors its hookpoint has in a cache: all of
    them, or the training or held-out captions' (every 20th caption); one row per SAE."""
    if part not in CACHE_PARTS:
        raise TadaError(f"the part of a cache to evaluate on is one of {', '.join(CACHE_PARTS)}; got {part!r}")
    from .model import load_saes

    cache = ActivationCache(cache_dir)
    saes = load_saes(sae_dir)
    by_hookpoint = {path: alias for alias, path in cache.sites.items()}
    missing = sorted(set(saes) - set(by_hookpoint))
    if missing:
        raise TadaError(
            f"{cache.directory} caches no activations at {', '.join(missing)} "
            f"(it has {', '.join(by_hookpoint)}); cache those sites or pick other SAEs"
        )
    rows = []
    for hookpoint, sae in saes.items():
        alias = by_hookpoint[hookpoint]
        if sae.cfg.d_in != int(cache.config["width"]):
            raise TadaError(
                f"the SAE at {hookpoint} reads width {sae.cfg.d_in}; "
                f"{cache.directory} holds width {cache.config['width']}"
            )
        vectors = cache.load(alias)[0] if part == "all" else cache.split(alias)[part == "held-out"]
        rows.append({"site": alias, "hookpoint": hookpoint, **evaluate(sae, vectors)})
    return rows


def train_sae(
    cache: str | Path | ActivationCache,
    site: str,
    out: str | Path,
    settings: TrainSettings | None = None,
    *,
    progress: bool = True,
) -> tuple[TopKSAE, dict[str, Any]]:
    """Train (or resume training) an SAE on one cached site; returns it and its report."""
    settings = settings or TrainSettings()
    settings.check()
    cache = cache if isinstance(cache, ActivationCache) else ActivationCache(cache)
    alias = cache.site_alias(site)
    hookpoint = cache.sites[alias]
    train, held = cache.split(alias)
    if train.shape[0] < settings.batch_size:
        raise TadaError(
            f"{cache.directory} holds {train.shape[0]} training vectors at {alias}, fewer than one batch "
            f"({settings.batch_size}); cache more captions or lower --batch-size"
        )
    folder = Path(out) / hookpoint
    folder.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = train.shape[0] // settings.batch_size
    total_steps = steps_per_epoch * settings.epochs
    dead_after = min(settings.dead_after, steps_per_epoch * settings.batch_size)
    meta = {
        "hookpoint": hookpoint,
        "site": alias,
        "family": cache.config["family"],
        "width": cache.config["width"],
        "cache": str(cache.directory),
        "cached_steps": cache.config["cached_steps"],
        "rows": cache.config["rows"],
        "tada_version": __version__,
        "training": {**asdict(settings), "dead_after": dead_after, "train_vectors": int(train.shape[0])},
    }
    cfg = SAEConfig(
        d_in=train.shape[1],
        k=settings.k,
        expansion_factor=settings.expansion,
        batch_topk=settings.batch_topk,
        tada=meta,
    )
    torch.manual_seed(settings.seed)
    sae = TopKSAE(cfg, device=settings.device)
    trainer = Trainer(sae, settings, total_steps, dead_after)
    history: dict[str, list] = {"step": [], "fvu": [], "auxk": [], "dead": [], "eval_step": [], "eval_fvu": []}
    thresholds: list[float] = []
    resume_state = _read_checkpoint(folder, meta)
    if resume_state is not None:
        tensors, state = resume_state
        trainer.load_state_tensors(tensors)
        trainer.steps_done = state["step"]
        history, thresholds = state["history"], state["thresholds"]
    else:
        first = train[
            torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(settings.seed))[
                : settings.batch_size
            ]
        ]
        with torch.no_grad():
            sae.b_dec.copy_(geometric_median(first.float()).to(sae.b_dec))
    probe = held[torch.randperm(held.shape[0], generator=torch.Generator().manual_seed(1))[:16384]]
    start_time = time.perf_counter()
    bar = tqdm(total=total_steps, initial=trainer.steps_done, desc=f"SAE {alias}", unit="step", disable=not progress)
    try:
        while trainer.steps_done < total_steps:
            epoch, position = divmod(trainer.steps_done, steps_per_epoch)
            order = torch.randperm(
                train.shape[0], generator=torch.Generator().manual_seed(settings.seed * 100_003 + epoch)
            )
            for index in range(position, steps_per_epoch):
                batch = train[order[index * settings.batch_size : (index + 1) * settings.batch_size]]
                result = trainer.step(batch.to(settings.device).float())
                step = trainer.steps_done
                history["step"].append(step)
                history["fvu"].append(result.fvu)
                history["auxk"].append(result.auxk)
                history["dead"].append(float((trainer.since_fired >= dead_after).float().mean()))
                if result.threshold is not None and step > total_steps * (1 - THRESHOLD_SHARE):
                    thresholds.append(result.threshold)
                if step % settings.eval_every == 0 or step == total_steps:
                    history["eval_step"].append(step)
                    history["eval_fvu"].append(evaluate(sae, probe)["fvu"])
                bar.update()
                bar.set_postfix(fvu=f"{result.fvu:.3f}", dead=f"{history['dead'][-1]:.2f}")
                if step % settings.checkpoint_every == 0 and step < total_steps:
                    _write_checkpoint(folder, trainer, meta, history, thresholds)
    finally:
        bar.close()
    if settings.batch_topk and thresholds:
        sae.cfg.threshold = float(sum(thresholds) / len(thresholds))
    report = {
        "site": alias,
        "hookpoint": hookpoint,
        "latents": sae.num_latents,
        "k": sae.k,
        "steps": total_steps,
        "train_vectors": int(train.shape[0]),
        "held_out": evaluate(sae, held),
        # Dead in the usual sense: the trained SAE fires no latent on any vector it was trained on.
        "training_set": evaluate(sae, train),
        "train_seconds_this_run": time.perf_counter() - start_time,
        "settings": meta["training"],
    }
    if sae.cfg.threshold is not None:
        report["held_out_threshold_mode"] = evaluate(sae, held, mode="threshold")
        report["threshold"] = sae.cfg.threshold
    sae.cfg.tada["report"] = {k: report[k] for k in ("held_out", "training_set", "steps")}
    sae.save_pretrained(folder)
    write_json(folder / REPORT, {**report, "history": history})
    plot_loss(history, folder / "loss.png", title=f"SAE {alias} ({sae.num_latents} latents, k {sae.k})")
    for name in (CHECKPOINT, CHECKPOINT_STATE):
        (folder / name).unlink(missing_ok=True)
    return sae, report


def _write_checkpoint(folder: Path, trainer: Trainer, meta: dict, history: dict, thresholds: list[float]) -> None:
    write_safetensors(folder / CHECKPOINT, trainer.state_tensors())
    state = {"meta": meta, "step": trainer.steps_done, "history": history, "thresholds": thresholds}
    write_text(folder / CHECKPOINT_STATE, json.dumps(state))


def _read_checkpoint(folder: Path, meta: dict) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The checkpoint of the same training job, if one is there (another job's is refused)."""
    state_path, tensor_path = folder / CHECKPOINT_STATE, folder / CHECKPOINT
    if not state_path.is_file() or not tensor_path.is_file():
        return None
    try:
        state = json.loads(state_path.read_text())
        tensors = load_file(str(tensor_path))
    except (OSError, ValueError, RuntimeError) as exc:
        raise TadaError(f"the checkpoint in {folder} is unreadable ({exc}); delete it to start afresh") from None
    comparable = {k: v for k, v in meta.items() if k != "tada_version"}
    if {k: v for k, v in state["meta"].items() if k != "tada_version"} != comparable:
        raise TadaError(
            f"{folder} holds a checkpoint of different training settings; delete it or choose another --out"
        )
    return tensors, state


def plot_loss(history: dict[str, list], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, fvu = history["step"], history["fvu"]
    window = max(1, len(fvu) // 50)
    smooth = [
        sum(fvu[max(0, i - window + 1) : i + 1]) / len(fvu[max(0, i - window + 1) : i + 1]) for i in range(len(fvu))
    ]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, smooth, label=f"training FVU (mean of {window} steps)")
    ax.plot(history["eval_step"], history["eval_fvu"], "o-", ms=3, label="held-out FVU")
    ax.set_xlabel("step")
    ax.set_ylabel("FVU")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
