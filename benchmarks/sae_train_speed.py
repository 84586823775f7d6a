"""Training throughput of tada's SAE against eai-sparsify's, side by side in one run.

Both trainers start from the same parameters and see the same batches in the same order, at the
same width, expansion, k and batch size, with Adam at the same learning rate (tada's schedule: linear
warm-up, then linear decay), gradient clip 1, the decoder-gradient projection and the unit-norm
decoder. Per step they do:

* tada: ``tada.sae.train.Trainer.step`` as ``tada sae train`` calls it (forward, FVU, AuxK when
  latents are dead, the sparse backward, parallel-gradient removal, clip, Adam, decoder renorm,
  dead-latent counters);
* sparsify: what ``sparsify.Trainer`` does per step for one SAE on the FVU loss: decoder renorm,
  ``SparseCoder.forward(x, dead_mask=...)``, ``loss = fvu + auxk_alpha * auxk_loss``, backward,
  ``remove_gradient_parallel_to_decoder_directions``, Adam step, scheduler step, its did-fire
  counters; plus ``clip_grad_norm_(1)``, which sparsify's trainer does not do but tada's recipe does,
  so the two do the same work.

Two variants (``--variants``):

* ``none``: no latent is dead, so neither computes AuxK (sparsify's default, ``auxk_alpha = 0``);
* ``planted``: the same fixed set of ``--dead-share`` of the latents is dead at every step for both
  (AuxK weight 1/32, ``k_aux = d_in / 2``). sparsify's AuxK gradient reaches the decoder only (its
  fused encoder drops the gradient of the pre-activations), tada's reaches the encoder at the AuxK
  pairs too, so tada does a little more work per step here.

The arms alternate (A, B, then B, A, ...) over ``--repeats`` blocks of ``--steps`` timed steps, after
``--warmup-steps`` untimed ones, so drift in machine load hits both; every step is timed on its own.
Reported per arm: median seconds per step, activations per second (batch / median), peak memory
(growth of the resident set's high-water mark, ``VmHWM``, over ``--memory-steps`` steps in a
fresh subprocess per arm, from the resident size just before them; ``torch.cuda.max_memory_allocated``
on CUDA), the training FVU of the last steps and the FVU on
held-out vectors (the same evaluation code for both); and per variant the ratio of tada's to
sparsify's throughput, with the median of the per-block ratios beside it.

    python benchmarks/sae_train_speed.py --synthetic 60000 --steps 30 --threads 1
    python benchmarks/sae_train_speed.py --cache out/sae/cache --site xattn.12 --steps 100 --repeats 5

Writes ``--out`` (JSON) and prints a markdown table; the JSON summary is also the last line printed.
Times are for this machine and only the ratios carry over.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from tada.sae.model import SAEConfig, TopKSAE  # noqa: E402
from tada.sae.train import Trainer, TrainSettings  # noqa: E402

IMPLS = ("tada", "sparsify")
VARIANTS = ("none", "planted")
AUXK_WEIGHT = 1 / 32
HELD_OUT = 8192  # held-out vectors the final FVU is measured on
DEFAULT_OUT = Path("benchmarks/results/sae_train_speed.json")


# -- data ---------------------------------------------------------------------------------------------
def synthetic_vectors(n: int, width: int, seed: int) -> torch.Tensor:
    """``n`` float16 vectors that a TopK SAE can learn: sparse sums of ``4 * width`` random unit directions
    (16 active per vector, exponential magnitudes), a shared offset and a little Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(4 * width, width, generator=gen)
    features /= features.norm(dim=1, keepdim=True)
    offset = torch.randn(width, generator=gen)
    out = torch.empty(n, width, dtype=torch.float16)
    for start in range(0, n, 16384):
        rows = min(16384, n - start)
        active = torch.randint(0, features.shape[0], (rows, 16), generator=gen)
        magnitude = torch.empty(rows, 16).exponential_(generator=gen)
        x = torch.nn.functional.embedding_bag(active, features, per_sample_weights=magnitude, mode="sum")
        x += offset + 0.05 * torch.randn(rows, width, generator=gen)
        out[start : start + rows] = x.half()
    return out


def load_vectors(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Training and held-out vectors (float16, on the CPU) and a description of where they came from."""
    if args.cache is not None:
        from tada.sae.cache import ActivationCache

        if args.site is None:
            raise SystemExit("--cache needs --site")
        train, held = ActivationCache(args.cache).split(args.site)
        probe = torch.randperm(held.shape[0], generator=torch.Generator().manual_seed(1))[:HELD_OUT]
        return train, held[probe], f"cache {args.cache} site {args.site}"
    vectors = synthetic_vectors(args.synthetic + HELD_OUT, args.width, args.seed)
    return vectors[: args.synthetic], vectors[args.synthetic :], f"synthetic {args.synthetic} x {args.width}"


class Batches:
    """Batch ``i`` of a seeded order of the training vectors (reshuffled each epoch): the same for every arm."""

    def __init__(self, vectors: torch.Tensor, batch: int, seed: int):
        if vectors.shape[0] < batch:
            raise SystemExit(f"{vectors.shape[0]} training vectors are fewer than one batch ({batch})")
        self.vectors, self.batch, self.seed = vectors, batch, seed
        self.per_epoch = vectors.shape[0] // batch
        self._order: tuple[int, torch.Tensor] | None = None

    def __call__(self, index: int, device: str) -> torch.Tensor:
        epoch, position = divmod(index, self.per_epoch)
        if self._order is None or self._order[0] != epoch:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._order = (epoch, torch.randperm(self.vectors.shape[0], generator=gen))
        rows = self._order[1][position * self.batch : (position + 1) * self.batch]
        return self.vectors[rows].to(device).float()


# -- the two trainers -----------------------------------------------------------------------------------
def initial_state(width: int, expansion: int, k: int, first_batch: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Parameters both arms start from: tada's (= sparsify's) initialisation, ``b_dec`` at the batch mean."""
    torch.manual_seed(seed)
    sae = TopKSAE(SAEConfig(d_in=width, k=k, expansion_factor=expansion))
    state = {name: t.detach().clone() for name, t in sae.state_dict().items()}
    state["b_dec"] = first_batch.float().mean(0)
    return state


def planted_mask(latents: int, share: float, seed: int) -> torch.Tensor:
    mask = torch.zeros(latents, dtype=torch.bool)
    count = max(1, round(share * latents))
    mask[torch.randperm(latents, generator=torch.Generator().manual_seed(seed + 7))[:count]] = True
    return mask


class TadaArm:
    """``tada.sae.train.Trainer``; with a planted mask, its dead counters are set to that mask before each step."""

    def __init__(self, state, spec: dict[str, Any], dead: torch.Tensor | None):
        device = spec["device"]
        cfg = SAEConfig(d_in=spec["width"], k=spec["k"], expansion_factor=spec["expansion"])
        self.sae = TopKSAE(cfg, device=device)
        self.sae.load_state_dict({n: t.to(device) for n, t in state.items()})
        settings = TrainSettings(
            expansion=spec["expansion"],
            k=spec["k"],
            batch_size=spec["batch"],
            lr=spec["lr"],
            warmup=spec["warmup"],
            auxk_weight=AUXK_WEIGHT,
            grad_clip=1.0,
            device=device,
        )
        # no dead latents: a threshold no counter reaches; planted: counter 1 on the planted latents, 0 elsewhere
        dead_after = 1 if dead is not None else 10**12
        self.trainer = Trainer(self.sae, settings, spec["total_steps"], dead_after)
        self.counters = dead.long().to(device) if dead is not None else None

    def step(self, x: torch.Tensor) -> float:
        if self.counters is not None:
            self.trainer.since_fired.copy_(self.counters)
        return self.trainer.step(x).fvu

    def parameters(self) -> dict[str, torch.Tensor]:
        return dict(self.sae.named_parameters())


class SparsifyArm:
    """One step of ``sparsify.Trainer`` for one SAE on the FVU loss (plus the gradient clip tada's recipe has)."""

    def __init__(self, state, spec: dict[str, Any], dead: torch.Tensor | None, rate):
        from sparsify import SparseCoder, SparseCoderConfig

        device = spec["device"]
        cfg = SparseCoderConfig(expansion_factor=spec["expansion"], k=spec["k"])
        self.sae = SparseCoder(spec["width"], cfg, device=device, dtype=torch.float32)
        self.sae.load_state_dict({n: t.to(device) for n, t in state.items()})
        # sparsify's forward runs under bf16 autocast on CUDA devices that support it; __wrapped__ is the plain one
        forward = type(self.sae).forward
        self.forward = forward.__wrapped__ if spec.get("sparsify_fp32") else forward
        lr = spec["lr"]
        self.optimiser = torch.optim.Adam(self.sae.parameters(), lr=lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimiser, lambda step: rate(step) / lr)
        self.auxk_alpha = AUXK_WEIGHT if dead is not None else 0.0
        self.dead = dead.to(device) if dead is not None else None
        self.since_fired = torch.zeros(self.sae.num_latents, dtype=torch.long, device=device)

    def step(self, x: torch.Tensor) -> float:
        sae = self.sae
        sae.set_decoder_norm_to_unit_norm()
        out = self.forward(sae, x, dead_mask=self.dead)
        did_fire = torch.zeros(sae.num_latents, dtype=torch.bool, device=x.device)
        did_fire[out.latent_indices.flatten()] = True
        fvu = float(out.fvu.detach())
        loss = out.fvu + self.auxk_alpha * out.auxk_loss + out.multi_topk_fvu / 8
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        self.optimiser.step()
        self.optimiser.zero_grad()
        self.scheduler.step()
        self.since_fired += x.shape[0]
        self.since_fired[did_fire] = 0
        return fvu

    def parameters(self) -> dict[str, torch.Tensor]:
        return dict(self.sae.named_parameters())


def make_arm(impl: str, state, spec: dict[str, Any], dead: torch.Tensor | None):
    if impl == "tada":
        return TadaArm(state, spec, dead)
    return SparsifyArm(state, spec, dead, schedule(spec))


def schedule(spec: dict[str, Any]):
    """tada's learning rate as a function of the step (``Trainer.rate`` for these settings), so that
    sparsify's arm, through a ``LambdaLR`` as its own trainer schedules, follows the same one."""
    settings = TrainSettings(lr=spec["lr"], warmup=spec["warmup"], batch_size=spec["batch"], k=1, expansion=1)
    return Trainer(TopKSAE(SAEConfig(d_in=2, k=1)), settings, spec["total_steps"], 1).rate


@torch.no_grad()
def heldout_fvu(params: dict[str, torch.Tensor], k: int, vectors: torch.Tensor, device: str) -> float:
    """FVU of per-token TopK reconstructions, from the parameters alone (the same code for both arms)."""
    weight, bias, w_dec, b_dec = (params[n].float() for n in ("encoder.weight", "encoder.bias", "W_dec", "b_dec"))
    error = total = 0.0
    mean = vectors.float().mean(0).to(device)
    for start in range(0, vectors.shape[0], 4096):
        x = vectors[start : start + 4096].to(device).float()
        pre = torch.relu(torch.nn.functional.linear(x - b_dec, weight, bias))
        values, indices = pre.topk(k, dim=-1, sorted=False)
        recon = torch.nn.functional.embedding_bag(indices, w_dec, per_sample_weights=values, mode="sum") + b_dec
        error += float((x - recon).pow(2).sum())
        total += float((x - mean).pow(2).sum())
    return error / max(total, 1e-30)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# -- peak memory, one fresh process per arm ---------------------------------------------------------------
def _peak_rss() -> tuple[float, float, str]:
    """(peak, current) resident memory of this process in KiB, and how they were read.

    ``/proc/self/status`` (``VmHWM``, ``VmRSS``) where there is one: a child's ``ru_maxrss`` starts at its
    parent's peak (Linux carries the high-water mark across vfork + exec), so it would hide a child smaller
    than the parent. Elsewhere ``ru_maxrss`` for both."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        return float(fields["VmHWM"].split()[0]), float(fields["VmRSS"].split()[0]), "VmHWM"
    except (OSError, KeyError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)
        return peak, peak, "ru_maxrss"


def _reset_peak_rss() -> tuple[float, str]:
    """The baseline to measure growth from, in KiB: the current resident size once the high-water mark is
    reset to it (Linux: ``clear_refs`` 5), else the peak so far (growth may then read low)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    peak, current, method = _peak_rss()
    return (current, f"{method} reset") if reset and method == "VmHWM" else (peak, method)


def memory_child(spec_path: Path) -> None:
    """Run in a fresh process: ``--memory-steps`` steps of one arm; print its peak memory growth as JSON.

    A throwaway step of a tiny SAE of the same kind first loads the code paths (kernels, autograd's
    threads), so the growth is what the arm's own tensors take."""
    spec = json.loads(spec_path.read_text())
    torch.set_num_threads(spec["threads"])
    tensors = load_file(str(spec_path.parent / "tensors.safetensors"))
    state = {n.removeprefix("state/"): t for n, t in tensors.items() if n.startswith("state/")}
    dead = tensors["dead"].bool() if spec["variant"] == "planted" else None
    device = spec["device"]
    batches = [b.to(device).float() for b in tensors["batches"]]
    tiny = {**spec, "width": 8, "expansion": 2, "k": 2}
    tiny_state = initial_state(8, 2, 2, torch.randn(4, 8), 0)
    tiny_dead = None if dead is None else planted_mask(16, 0.5, 0)
    make_arm(spec["impl"], tiny_state, tiny, tiny_dead).step(torch.randn(4, 8, device=device))
    arm = make_arm(spec["impl"], state, spec, dead)
    _sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    rss_before, method = _reset_peak_rss()
    for x in batches:
        arm.step(x)
    _sync(device)
    peak_after, _, _ = _peak_rss()
    result = {
        "peak_rss_mib": peak_after / 1024,
        "peak_rss_growth_mib": (peak_after - rss_before) / 1024,
        "peak_rss_method": method,
    }
    if device.startswith("cuda"):
        result["cuda_peak_growth_mib"] = (torch.cuda.max_memory_allocated() - before) / 2**20
    print("MEMORY " + json.dumps(result), flush=True)


def start_memory(
    state, batches: list[torch.Tensor], dead: torch.Tensor, spec: dict[str, Any], variants: list[str]
) -> tuple[Path, list[tuple[str, str, subprocess.Popen]]]:
    """Start one fresh process per (variant, trainer) to measure its peak memory (they run side by side;
    resident memory is per process). The caller collects them with :func:`finish_memory` before timing."""
    tmp = Path(tempfile.mkdtemp(prefix="sae-speed-"))
    tensors = {f"state/{n}": t.contiguous() for n, t in state.items()}
    tensors["batches"] = torch.stack(batches).half().contiguous()
    tensors["dead"] = dead.to(torch.uint8)
    save_file(tensors, str(tmp / "tensors.safetensors"))
    jobs = []
    for variant in variants:
        for impl in IMPLS:
            spec_path = tmp / f"{variant}-{impl}.json"
            spec_path.write_text(json.dumps({**spec, "impl": impl, "variant": variant}))
            command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", str(spec_path)]
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            jobs.append((variant, impl, process))
    return tmp, jobs


def finish_memory(tmp: Path, jobs: list[tuple[str, str, subprocess.Popen]]) -> dict[str, dict[str, dict[str, float]]]:
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        for variant, impl, process in jobs:
            stdout, stderr = process.communicate()
            lines = [line for line in stdout.splitlines() if line.startswith("MEMORY ")]
            if process.returncode != 0 or not lines:
                raise RuntimeError(f"memory run {variant}/{impl} failed:\n{stderr[-3000:]}")
            results.setdefault(variant, {})[impl] = json.loads(lines[-1].removeprefix("MEMORY "))
    finally:
        for _, _, process in jobs:
            if process.poll() is None:
                process.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


# -- the benchmark ------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help="an activation cache (tada sae cache)")
    parser.add_argument("--site", default=None, help="the cached site to train on (alias or hookpoint)")
    parser.add_argument("--synthetic", type=int, default=60_000, help="without --cache: this many synthetic vectors")
    parser.add_argument("--width", type=int, default=256, help="width of the synthetic vectors")
    parser.add_argument("--expansion", type=int, default=4)
    parser.add_argument("--k", type=int, default=24)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per arm per repeat")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps per arm before the first repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="none, planted or both (comma-separated)")
    parser.add_argument("--dead-share", type=float, default=0.25, help="share of latents planted dead")
    parser.add_argument("--lr", type=float, default=None, help="default: 2e-4 / sqrt(latents / 16384)")
    parser.add_argument("--lr-warmup", type=int, default=1000, help="learning-rate warm-up steps (tada's rule)")
    parser.add_argument("--memory-steps", type=int, default=3, help="steps of each memory run (0: skip memory)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--sparsify-fp32", action="store_true", help="on CUDA, run sparsify's forward without its bf16 autocast"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--memory-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not args.variants or any(v not in VARIANTS for v in args.variants):
        parser.error(f"--variants: choose from {', '.join(VARIANTS)}")
    if not 0 < args.dead_share < 1:
        parser.error("--dead-share must be in (0, 1)")
    if min(args.steps, args.repeats, args.batch) < 1 or args.warmup_steps < 0 or args.memory_steps < 0:
        parser.error("--steps, --repeats and --batch must be at least 1; --warmup-steps, --memory-steps at least 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.memory_child is not None:
        memory_child(args.memory_child)
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    train, held, source = load_vectors(args)
    width = train.shape[1]
    latents = width * args.expansion
    lr = args.lr if args.lr is not None else 2e-4 / (latents / 2**14) ** 0.5
    total_steps = args.warmup_steps + args.repeats * args.steps
    spec = {
        "width": width,
        "expansion": args.expansion,
        "k": args.k,
        "batch": args.batch,
        "lr": lr,
        "warmup": args.lr_warmup,
        "total_steps": total_steps,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "sparsify_fp32": args.sparsify_fp32,
    }
    batches = Batches(train, args.batch, args.seed)
    state = initial_state(width, args.expansion, args.k, batches(0, "cpu"), args.seed)
    dead = planted_mask(latents, args.dead_share, args.seed)

    pending = None
    if args.memory_steps:
        memory_batches = [batches(i, "cpu") for i in range(args.memory_steps)]
        pending = start_memory(state, memory_batches, dead, spec, args.variants)
    try:
        arms = {
            (variant, impl): make_arm(impl, state, spec, dead if variant == "planted" else None)
            for variant in args.variants
            for impl in IMPLS
        }
    finally:
        memory = finish_memory(*pending) if pending is not None else {}  # done before any step is timed
    times: dict[tuple[str, str], list[float]] = {key: [] for key in arms}
    blocks: dict[tuple[str, str], list[float]] = {key: [] for key in arms}
    fvus: dict[tuple[str, str], list[float]] = {key: [] for key in arms}
    bar = tqdm(total=total_steps * len(arms), desc="SAE steps", unit="step", disable=args.no_progress)

    def run(key: tuple[str, str], first: int, count: int, timed: bool) -> None:
        arm = arms[key]
        block = 0.0
        for index in range(first, first + count):
            x = batches(index, args.device)
            _sync(args.device)
            start = time.perf_counter()
            fvus[key].append(arm.step(x))
            _sync(args.device)
            elapsed = time.perf_counter() - start
            block += elapsed
            if timed:
                times[key].append(elapsed)
            bar.update()
        if timed:
            blocks[key].append(block / count)

    order = list(arms)
    for key in order:
        run(key, 0, args.warmup_steps, timed=False)
    for repeat in range(args.repeats):
        for key in order if repeat % 2 == 0 else reversed(order):
            run(key, args.warmup_steps + repeat * args.steps, args.steps, timed=True)
    bar.close()

    last = max(1, min(10, args.steps))
    variants: dict[str, Any] = {}
    for variant in args.variants:
        row: dict[str, Any] = {}
        for impl in IMPLS:
            key = (variant, impl)
            median = statistics.median(times[key])
            row[impl] = {
                "median_s_per_step": median,
                "mean_s_per_step": statistics.fmean(times[key]),
                "min_s_per_step": min(times[key]),
                "activations_per_s": args.batch / median,
                "train_fvu_last": statistics.fmean(fvus[key][-last:]),
                "heldout_fvu": heldout_fvu(arms[key].parameters(), args.k, held, args.device),
                **memory.get(variant, {}).get(impl, {}),
            }
        tada, sparsify = row["tada"], row["sparsify"]
        row["ratio"] = tada["activations_per_s"] / sparsify["activations_per_s"]
        paired = [s / t for t, s in zip(blocks[(variant, "tada")], blocks[(variant, "sparsify")])]
        row["block_ratios"] = paired
        row["median_block_ratio"] = statistics.median(paired)
        a, b = tada["heldout_fvu"], sparsify["heldout_fvu"]
        row["fvu_similar"] = abs(a - b) <= max(0.02, 0.1 * max(a, b))
        variants[variant] = row

    settings = {
        "data": source,
        "train_vectors": int(train.shape[0]),
        "heldout_vectors": int(held.shape[0]),
        "width": width,
        "expansion": args.expansion,
        "latents": latents,
        "k": args.k,
        "batch": args.batch,
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "repeats": args.repeats,
        "lr": lr,
        "lr_warmup": args.lr_warmup,
        "auxk_weight": AUXK_WEIGHT,
        "dead_share": args.dead_share,
        "memory_steps": args.memory_steps,
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
        "threads": torch.get_num_threads(),
        "sparsify_fp32": args.sparsify_fp32,
        "torch": torch.__version__,
        "sparsify": importlib.metadata.version("eai-sparsify"),
        "seed": args.seed,
    }
    summary = {
        "settings": settings,
        "variants": variants,
        "ratio": min(row["ratio"] for row in variants.values()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(table(summary))
    print(json.dumps(summary))
    return summary


def table(summary: dict[str, Any]) -> str:
    s = summary["settings"]
    memory_key = "cuda_peak_growth_mib" if s["device"].startswith("cuda") else "peak_rss_growth_mib"
    lines = [
        f"{s['data']}: {s['latents']} latents, k {s['k']}, batch {s['batch']}, {s['device']} "
        f"({s['threads']} threads); median of {s['repeats']} alternating blocks x {s['steps']} steps per arm.",
        "",
        "| dead latents | trainer | s / step | activations / s | peak memory growth (MiB) "
        "| train FVU (last steps) | held-out FVU | tada / sparsify |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, row in summary["variants"].items():
        label = "none" if variant == "none" else f"{s['dead_share']:.0%} planted"
        for impl in IMPLS:
            r = row[impl]
            mem = f"{r[memory_key]:.0f}" if memory_key in r else "-"
            ratio = f"{row['ratio']:.2f}x (blocks {row['median_block_ratio']:.2f}x)" if impl == "tada" else ""
            lines.append(
                f"| {label} | {impl} | {r['median_s_per_step']:.4f} | {r['activations_per_s']:,.0f} | {mem} "
                f"| {r['train_fvu_last']:.4f} | {r['heldout_fvu']:.4f} | {ratio} |"
            )
        if not row["fvu_similar"]:
            lines.append(f"\nWARNING ({variant}): the two held-out FVUs differ; they should learn the same problem.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
