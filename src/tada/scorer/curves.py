"""The training curves as one PNG: losses per step, and held-out probe AUCs where there are any."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _smooth(values: list[float], window: int) -> np.ndarray:
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_curves(history: list[dict[str, Any]], evals: list[dict[str, Any]], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(12, 4.5))
    window = max(1, len(history) // 50)
    for key in ("loss", "contrastive"):
        values = [h[key] for h in history]
        smoothed = _smooth(values, window)
        ax_loss.plot(np.arange(len(smoothed)) + window, smoothed, label=f"train {key}")
    if evals:
        ax_loss.plot(
            [e["step"] for e in evals],
            [e["val_contrastive"] for e in evals],
            "o-",
            label="held-out contrastive (all held-out clips)",
        )
        for name in evals[0]["auc"]:
            ax_auc.plot([e["step"] for e in evals], [e["auc"][name] for e in evals], label=name)
        ax_auc.axhline(0.9, color="grey", linestyle=":")
        ax_auc.legend(fontsize=7)
    ax_loss.set(xlabel="step", ylabel="loss", title=f"training loss (moving average of {window})")
    ax_loss.legend(fontsize=8)
    ax_auc.set(xlabel="step", ylabel="ROC AUC", title="held-out standard-probe AUC", ylim=(0.4, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
