"""The step loop every tada-mini trainer runs: seeded steps, checkpoints, resume, time limits, curves.

A subclass provides the model, optimizer and ``train_step``; the loop owns the step
counter, the history, the checkpoint (model + optimizer + JSON state, swapped in whole)
and the loss-curve PNG. Every random draw of a step comes from a generator seeded by
(seed, step), so a run killed and resumed gives bitwise the same weights as one that
never stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..errors import TadaError
from . import checkpoint
from .schedule import decay_steps, learning_rate


def extends(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether run ``new`` continues run ``old``: the same run but for more ``steps``, with the
    learning-rate decay pinned where ``old`` had it, so ``old``'s past steps are ``new``'s too."""
    if not old or "config" not in old or "config" not in new:
        return False
    a, b = dict(old["config"]), dict(new["config"])
    if b["steps"] < a["steps"] or decay_steps(a) != decay_steps(b):
        return False
    for config in (a, b):
        config.pop("steps"), config.pop("decay_steps", None)
    return {**old, "config": a} == {**new, "config": b}


def plot_history(history: list[dict[str, Any]], evals: list[dict[str, Any]], path: str | Path, title: str) -> None:
    """Training losses (moving average) and evaluation losses against step, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    window = max(1, len(history) // 100)
    keys = [k for k in history[0] if k != "step"] if history else []
    for key in keys:
        values = np.array([h[key] for h in history], dtype=float)
        if len(values) >= window:
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(np.arange(len(smooth)) + window, smooth, label=f"train {key}")
    for key in [k for k in evals[0] if k != "step"] if evals else []:
        ax.plot([e["step"] for e in evals], [e[key] for e in evals], "o-", label=key)
    ax.set(xlabel="step", ylabel="loss", title=f"{title} (moving average of {window} steps)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class TrainingLoop:
    """Subclasses set ``self.model`` (what is checkpointed), ``self.optimizer``, ``self.config``
    (with steps, lr, warmup_steps, min_lr_ratio, checkpoint_every, seed) and implement
    :meth:`train_step`; optionally :meth:`evaluate` (every ``eval_every`` steps) and
    :meth:`finish` (once the last step is done)."""

    title = "training"
    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: dict[str, Any]

    def __init__(self, out: str | Path, run_id: dict[str, Any], progress: bool = True):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.run_id = json.loads(json.dumps(run_id))
        self.progress = progress
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []

    # -- to implement ------------------------------------------------------------------
    def train_step(self, generator: torch.Generator) -> dict[str, float]:
        raise NotImplementedError

    def evaluate(self) -> dict[str, float] | None:
        return None

    def finish(self) -> None:
        pass

    # -- shared ------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoint"

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.config["seed"]) * 1_000_003 + self.step)

    def resume(self) -> bool:
        """Continue from the checkpoint in ``out`` if there is one of this same run."""
        found = checkpoint.latest(self.checkpoint_dir)
        if found is None:
            return False
        state = json.loads((found / checkpoint.STATE).read_text())
        if state.get("run") != self.run_id and not extends(state.get("run"), self.run_id):
            raise TadaError(
                f"{self.out} holds a checkpoint of a different run (config or data changed); "
                "remove it or choose another --out"
            )
        state = checkpoint.load(found, self.model, self.optimizer)
        self.step, self.history, self.evals = state["step"], state["history"], state["evals"]
        if self.step > self.config["steps"]:
            raise TadaError(
                f"{self.out} is already at step {self.step}, past this config's {self.config['steps']} steps"
            )
        return True

    def save(self) -> None:
        state = {"run": self.run_id, "step": self.step, "history": self.history, "evals": self.evals}
        checkpoint.save(self.checkpoint_dir, self.model, self.optimizer, state)
        if self.history:
            self.plot(self.out / "loss.png")

    def plot(self, path: Path) -> None:
        """The curves PNG written with every checkpoint."""
        plot_history(self.history, self.evals, path, self.title)

    @property
    def done(self) -> bool:
        return self.step >= self.config["steps"]

    def run(self, until_step: int | None = None, time_limit: float | None = None) -> None:
        """Train to ``steps`` (or ``until_step``, or until ``time_limit`` seconds pass); checkpoint on the way out."""
        config = self.config
        stop = min(config["steps"], until_step if until_step is not None else config["steps"])
        start = time.monotonic()
        bar = tqdm(total=config["steps"], initial=self.step, desc=self.title, disable=not self.progress)
        while self.step < stop:
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(config, self.step)
            record = {"step": self.step, **self.train_step(self.generator())}
            self.history.append(record)
            self.step += 1
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k != "step"})
            every = config.get("eval_every")
            if every and (self.step % every == 0 or self.step == config["steps"]):
                result = self.evaluate()
                if result is not None:
                    self.evals.append({"step": self.step, **result})
            if self.step % config["checkpoint_every"] == 0:
                self.save()
            if time_limit is not None and time.monotonic() - start > time_limit:
                break
        bar.close()
        if self.step % config["checkpoint_every"]:
            self.save()
        if self.done:
            self.finish()
