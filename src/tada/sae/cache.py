"""Activation caches for SAE training: generate from many captions and keep what chosen sites output.

``cache_activations`` generates the captions batch by batch and records, at every ``every``-th denoising
step, every token of the chosen sites' outputs on the conditional rows (or the unconditional ones, or
both). Each batch becomes one shard, ``chunk-NNNNN.safetensors``, holding per site ``acts/<alias>`` as
``(vectors, width)`` in float16 and, shared by the sites, which caption (``caption``), step (``step``)
and token (``token``) each vector row came from. Memory holds one batch at a time; a killed run
resumes at the first missing shard (the directory is a :class:`~tada.runs.UnitStore`). The captions
are written beside the shards (``captions.txt``), so reports can show them.

:class:`ActivationCache` reads a cache back: one site's vectors, split into training and held-out
vectors by caption (every ``HOLDOUT_EVERY``-th caption is held out, never seen in training).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from tqdm.auto import tqdm

from .. import validate
from ..context import ROW_MODES, StepContext
from ..engine import Site
from ..errors import TadaError
from ..files import write_text
from ..interventions import Intervention, _check_rows
from ..runs import UnitStore

CAPTIONS_FILE = "captions.txt"
HOLDOUT_EVERY = 20  # caption i is held out when i % 20 == 19: 5% of the captions
MAX_CAPTIONS = 10_000_000


class TokenRecorder(Intervention):
    """Every token of the selected rows at the chosen steps, as ``(rows, tokens, width)`` per step."""

    def __init__(self, steps: set[int], rows: str = "cond"):
        self.steps = steps
        self.rows = _check_rows(rows)
        self.records: dict[int, torch.Tensor] = {}

    def edit(self, act: torch.Tensor, rows: slice, gain: float, ctx: StepContext) -> torch.Tensor:
        if ctx.step in self.steps:
            self.records[ctx.step] = act[rows].detach().to("cpu", torch.float16, copy=True)
        return act


def cached_steps(steps: int, every: int) -> list[int]:
    """Steps 0, every, 2 * every, ... below ``steps`` (the reference caches 0, 6, 12, 18, 24 of 30)."""
    validate.integer("every", every, 1, 100_000, "steps between cached steps")
    return list(range(0, steps, every))


def read_captions(captions: str | Path | None = None, corpus: str | Path | None = None) -> list[str]:
    """Captions from a text file (one per line) or from a corpus directory's labels, in order."""
    if (captions is None) == (corpus is None):
        raise TadaError("give the captions either as a text file (--captions) or a corpus directory (--corpus)")
    if corpus is not None:
        from ..data.corpus import read_labels

        records = read_labels(corpus)
        if not records:
            raise TadaError(f"{corpus} holds no corpus clips (no labels.jsonl with audio)")
        return [str(r["caption"]) for r in records]
    path = Path(captions)  # type: ignore[arg-type]
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TadaError(f"cannot read {path} as UTF-8 text ({exc})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise TadaError(f"{path} holds no captions (one per line)")
    return lines


def cache_activations(
    model: Any,
    captions: Sequence[str],
    sites: str | Sequence[str] | None,
    out: str | Path,
    *,
    every: int = 6,
    rows: str = "cond",
    seconds: float | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    batch: int = 16,
    progress: bool = True,
) -> Path:
    """Generate every caption (caption ``i`` from seed ``seed + i``) and store the chosen sites' outputs."""
    if not captions:
        raise TadaError("no captions to cache")
    if len(captions) > MAX_CAPTIONS:
        raise TadaError(f"at most {MAX_CAPTIONS} captions per cache; got {len(captions)}")
    if rows not in ROW_MODES:
        raise TadaError(f"unknown guidance pass {rows!r}; choose one of {', '.join(ROW_MODES)}")
    validate.integer("batch", batch, 1, 10_000, "captions generated together")
    validate.generation(seconds, steps, guidance, seed, n_seeds=len(captions))
    chosen = model.resolve_sites(sites)
    seconds, steps, guidance = model.sampler_settings(seconds, steps, guidance).values()
    kept = cached_steps(steps, every)
    digest = hashlib.sha256("\n".join(captions).encode()).hexdigest()
    config = {
        "format": "tada/activation-cache",
        "family": model.family,
        "width": model.width,
        "sites": {s.alias: s.path for s in chosen},
        "rows": rows,
        "every": every,
        "cached_steps": kept,
        "seconds": seconds,
        "steps": steps,
        "guidance": guidance,
        "seed": seed,
        "batch": batch,
        "captions": len(captions),
        "captions_sha256": digest,
    }
    out = Path(out)
    store = UnitStore(out, config)
    try:
        write_text(out / CAPTIONS_FILE, "\n".join(c.replace("\n", " ") for c in captions) + "\n")
        starts = range(0, len(captions), batch)
        with model.quiet():
            for index, start in enumerate(tqdm(starts, desc="caching activations", unit="batch", disable=not progress)):
                key = f"chunk-{index:05d}"
                if store.done(key):
                    continue
                chunk = list(range(start, min(start + batch, len(captions))))
                recorders = {site: TokenRecorder(set(kept), rows) for site in chosen}
                with model.engine.add(recorders):
                    model.generate(
                        [captions[i] for i in chunk],
                        seconds=seconds,
                        steps=steps,
                        guidance=guidance,
                        seed=[seed + i for i in chunk],
                    )
                store.save(key, _shard(recorders, chunk, kept))
    finally:
        store.close()
    return out


def _shard(recorders: dict[Site, TokenRecorder], chunk: list[int], kept: list[int]) -> dict[str, torch.Tensor]:
    """One batch's vectors in (caption, step, token) order, and where each row came from."""
    out: dict[str, torch.Tensor] = {}
    shape = None
    for site, recorder in recorders.items():
        missing = [s for s in kept if s not in recorder.records]
        if missing:
            raise TadaError(f"site {site.alias} was not called at steps {missing}; nothing to cache there")
        stacked = torch.stack([recorder.records[s] for s in kept], dim=1)  # (rows, steps, tokens, width)
        if stacked.shape[0] % len(chunk):
            raise TadaError(f"site {site.alias}: {stacked.shape[0]} rows for {len(chunk)} captions")
        shape = stacked.shape
        out[f"acts/{site.alias}"] = stacked.reshape(-1, stacked.shape[-1]).contiguous()
    assert shape is not None
    rows, n_steps, tokens = shape[0], shape[1], shape[2]
    per_caption = rows // len(chunk)  # 2 when both passes are cached: two blocks of rows, one per pass
    caption = torch.tensor(chunk, dtype=torch.int64).repeat(per_caption)
    out["caption"] = caption.repeat_interleave(n_steps * tokens)
    out["step"] = torch.tensor(kept, dtype=torch.int64).repeat_interleave(tokens).repeat(rows)
    out["token"] = torch.arange(tokens, dtype=torch.int64).repeat(rows * n_steps)
    return out


class ActivationCache:
    """A cache directory written by :func:`cache_activations`, read back site by site."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        config_path = self.directory / "job.json"
        try:
            self.config: dict[str, Any] = json.loads(config_path.read_text())
        except (OSError, ValueError):
            raise TadaError(f"{self.directory} is not an activation cache (no readable job.json)") from None
        if self.config.get("format") != "tada/activation-cache":
            raise TadaError(f"{self.directory} is not an activation cache (job.json is another job's)")
        self.shards = sorted(self.directory.glob("chunk-*.safetensors"))
        if not self.shards:
            raise TadaError(f"{self.directory} holds no cached activations yet")
        expected = math.ceil(self.config["captions"] / self.config["batch"])
        self.complete = len(self.shards) == expected

    @property
    def sites(self) -> dict[str, str]:
        """Alias -> module path (the SAE hookpoint) of every cached site."""
        return dict(self.config["sites"])

    @property
    def captions(self) -> list[str]:
        path = self.directory / CAPTIONS_FILE
        return path.read_text().splitlines() if path.is_file() else []

    def site_alias(self, name: str) -> str:
        """A site named by its alias or its hookpoint (module path)."""
        for alias, path in self.sites.items():
            if name in (alias, path):
                return alias
        raise TadaError(f"{self.directory} caches no site {name!r}; it has {', '.join(self.sites)}")

    def shards_of(
        self, site: str, *, columns: tuple[str, ...] = (), progress: bool = False
    ) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """One site's vectors (float16, ``(n, width)``) and the requested row labels, one shard at a time:
        a pass over a cache larger than memory holds a single shard."""
        alias = self.site_alias(site)
        bar = tqdm(
            self.shards,
            desc=f"reading {alias}",
            unit="shard",
            leave=False,
            disable=not progress and len(self.shards) < 50,
        )
        for shard in bar:
            try:
                with safe_open(str(shard), framework="pt", device="cpu") as f:
                    acts = f.get_tensor(f"acts/{alias}")
                    labels = {c: f.get_tensor(c) for c in columns}
            except (SafetensorError, OSError, KeyError) as exc:
                raise TadaError(f"cached shard {shard} is unreadable ({exc}); delete it and rerun the cache") from None
            yield acts, labels

    def load(self, site: str, *, columns: tuple[str, ...] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """All of one site's vectors (float16, ``(n, width)``) and the requested row labels."""
        parts: list[torch.Tensor] = []
        labels: dict[str, list[torch.Tensor]] = {c: [] for c in columns}
        for acts, shard_labels in self.shards_of(site, columns=columns):
            parts.append(acts)
            for c in columns:
                labels[c].append(shard_labels[c])
        return torch.cat(parts), {c: torch.cat(v) for c, v in labels.items()}

    def split(self, site: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Training and held-out vectors of one site: a caption's vectors are all on one side."""
        acts, labels = self.load(site, columns=("caption",))
        held = labels["caption"] % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
        if not held.any() or held.all():
            raise TadaError(f"{self.directory} has too few captions to hold any out (need at least {HOLDOUT_EVERY})")
        return acts[~held], acts[held]
