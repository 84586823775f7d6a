"""The crossed bootstrap shared by the localisation report and the benchmark summary.

Data come as units, each one (group, seed index): a prompt pair or prompt measured under one noise seed.
Groups and seeds are two crossed random factors, so a replicate resamples both: it draws the groups with
replacement and, independently, the seed indices, and weighs every unit by count(group) * count(seed).
Statistics are then recomputed from the weighted units (ratios from weighted means, not means of
ratios). Intervals are percentile intervals over the replicates.

A fixed ``seed`` gives the same draws on every machine (a CPU ``torch.Generator``); all the groups are drawn
first, then all the seeds, so replicate r of two tables with the same numbers of groups and seeds draws the
same groups and seeds in both (what lets a caller average replicates over tables, replicate by replicate).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

LEVEL = 0.95


def crossed_weights(groups: Any, seeds: Any, replicates: int, seed: int = 0) -> torch.Tensor:
    """``(replicates, units)`` double weights: the count of each unit's group times the count of its seed.

    ``groups`` and ``seeds`` hold one index per unit (0-based; the number of groups and of seeds is the
    largest index plus one). Every replicate's weights sum to ``n_groups * n_seeds`` when every
    (group, seed) pair is a unit, so no replicate is empty then.
    """
    group = torch.as_tensor(np.asarray(groups) if not isinstance(groups, torch.Tensor) else groups).long()
    seed_index = torch.as_tensor(np.asarray(seeds) if not isinstance(seeds, torch.Tensor) else seeds).long()
    n_groups, n_seeds = int(group.max()) + 1, int(seed_index.max()) + 1
    gen = torch.Generator().manual_seed(seed)
    group_counts = _counts(torch.randint(n_groups, (replicates, n_groups), generator=gen), n_groups)
    seed_counts = _counts(torch.randint(n_seeds, (replicates, n_seeds), generator=gen), n_seeds)
    return (group_counts[:, group] * seed_counts[:, seed_index]).double()


def _counts(draws: torch.Tensor, n: int) -> torch.Tensor:
    """How often each of ``n`` indices was drawn, per row."""
    counts = torch.zeros(draws.shape[0], n, dtype=torch.long)
    return counts.scatter_add_(1, draws, torch.ones_like(draws))


def percentile_interval(samples: Any, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along the first dimension; non-finite replicates are skipped (all of them
    non-finite: NaN). ``samples`` is a tensor or an array."""
    values = samples.numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples, dtype=float)
    low, high = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: its interval is NaN
        return np.nanpercentile(np.where(np.isfinite(values), values, np.nan), [low, high], axis=0)


interval = percentile_interval
