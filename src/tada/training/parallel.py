"""An ordered map over files on every core, with a progress bar (feature extraction of a corpus)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from tqdm import tqdm

T = TypeVar("T")


def _one_thread(job: tuple[Callable[[str], T], str]) -> T:
    fn, item = job
    torch.set_num_threads(1)
    return fn(item)


def map_files(
    fn: Callable[[str], T], items: Sequence[str], desc: str, progress: bool = True, min_per_worker: int = 64
) -> list[T]:
    """``[fn(item) for item in items]`` in order, split over up to ``os.cpu_count()`` spawned
    workers (one torch thread each) when there are enough items to pay for their start-up.
    ``fn`` must be a module-level function (it is pickled by name)."""
    workers = min(os.cpu_count() or 1, max(1, len(items) // min_per_worker))
    bar = dict(desc=desc, total=len(items), disable=not progress)
    if workers == 1:
        return [fn(item) for item in tqdm(items, **bar)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return list(tqdm(pool.imap(_one_thread, [(fn, item) for item in items], chunksize=16), **bar))
