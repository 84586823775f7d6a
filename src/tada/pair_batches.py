"""Statistics summed over prompt pairs, generated batch by batch and resumable: what CAA, AUSteer and SAE
feature scoring share.

Each batch holds ``batch_pairs`` positive prompts followed by their negatives in the same order; pair ``i``
is generated from seed ``seed + i`` for both of its prompts (shared noise). Collectors installed for the
batch record what they need; ``summarise`` turns them into named ``(steps, ...)`` tensors plus
``"timesteps"``, and the totals over all batches are returned. With a :class:`~tada.runs.UnitStore` every
batch's summary is written as it finishes, so a killed fit resumes at the first missing batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from .engine import Site
from .errors import TadaError
from .interventions import Intervention
from .runs import UnitStore

GENERATION_KEYS = ("seconds", "steps", "guidance", "seed", "batch_pairs")


def sum_over_pair_batches(
    model: Any,
    pairs: Sequence[tuple[str, str]],
    settings: dict[str, Any],
    store: UnitStore | None,
    collectors: Callable[[int], dict[Site, Intervention]],
    summarise: Callable[[dict[Site, Intervention]], dict[str, torch.Tensor]],
    *,
    desc: str,
    progress: bool,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Totals of ``summarise`` over every batch of pairs, and the timesteps they were taken at.

    ``collectors(n)`` makes fresh interventions for a batch of ``n`` pairs; ``settings`` gives
    ``seconds``, ``steps``, ``guidance``, ``seed`` and ``batch_pairs``.
    """
    seconds, steps, guidance, seed, batch_pairs = (settings[k] for k in GENERATION_KEYS)
    totals: dict[str, torch.Tensor] = {}
    timesteps: torch.Tensor | None = None
    chunks = [list(range(i, min(i + batch_pairs, len(pairs)))) for i in range(0, len(pairs), batch_pairs)]
    for index, chunk in enumerate(tqdm(chunks, desc=desc, unit="batch", disable=not progress)):
        key = f"chunk-{index:05d}"
        if store is not None and store.done(key):
            sums = store.load(key)
        else:
            installed = collectors(len(chunk))
            prompts = [pairs[i][0] for i in chunk] + [pairs[i][1] for i in chunk]
            with model.engine.add(installed):
                model.generate(
                    prompts, seconds=seconds, steps=steps, guidance=guidance, seed=[seed + i for i in chunk] * 2
                )
            sums = summarise(installed)
            if store is not None:
                store.save(key, sums)
        if timesteps is None:
            timesteps = sums["timesteps"]
        elif not torch.equal(timesteps, sums["timesteps"]):
            raise TadaError("batches saw different timesteps; the sampler settings changed mid-run")
        for name, value in sums.items():
            if name != "timesteps":
                totals[name] = totals[name] + value if name in totals else value.clone()
    if timesteps is None:
        raise TadaError("no prompt pairs to generate")
    return totals, timesteps


def per_step_tables(collectors: dict[Site, Any], what: str) -> dict[str, torch.Tensor]:
    """One batch's summary from collectors that keep ``records[step][name]`` and ``timesteps[step]``:
    per site and name a ``(steps, ...)`` table (``"<name>/<alias>"``), plus the timesteps; a site that
    missed a step is refused (``what`` says what could not be scored)."""
    first = next(iter(collectors.values()))
    steps = sorted(first.timesteps)
    out = {"timesteps": torch.tensor([first.timesteps[s] for s in steps], dtype=torch.float64)}
    for site, collector in collectors.items():
        if sorted(collector.timesteps) != steps:
            raise TadaError(f"site {site.alias} was not called at every step; cannot score its {what}")
        for name in collector.records[steps[0]]:
            out[f"{name}/{site.alias}"] = torch.stack([collector.records[s][name] for s in steps])
    return out
