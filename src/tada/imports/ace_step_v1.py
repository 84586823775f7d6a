"""The paper's published ACE-Step v1 artifacts as tada artifacts (family ``ace-step-v1``).

So far: **CAA** folders (``config.json`` + ``sv.pkl``). ``sv.pkl`` maps ``(step, pass)`` (pass 0: the
conditional guidance pass, 1: the unconditional one), or a plain ``step`` when only the conditional pass was
saved, to ``defaultdict(list)`` of ``"tf0".."tf23"`` to ``[float32 array (2560,)]``: one direction per step,
pass and transformer block. The pickle is read by :func:`~tada.imports.safe_pickle.load_pickle`, which runs
nothing from the file. Blocks ``tfN`` become sites ``xattn.N`` (``transformer_blocks.N.cross_attn``), steps
become the timesteps of the schedule ``config.json`` describes (ACE-Step v1's flow-matching Euler sampler,
1,000 training timesteps, shift 3, in the scale its transformer is called with), so the vectors apply at
the right step whatever the number of steps tada samples with.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifacts import SteeringVector
from ..errors import TadaError
from .safe_pickle import load_pickle

FAMILY, WIDTH, BLOCKS = "ace-step-v1", 2560, 24
TRAIN_TIMESTEPS, SHIFT = 1000, 3.0
PASSES = {0: "conditional", 1: "unconditional"}


def v1_timesteps(steps: int, shift: float = SHIFT, train_timesteps: int = TRAIN_TIMESTEPS) -> torch.Tensor:
    """The timesteps ACE-Step v1's flow-matching Euler sampler calls its transformer with, for ``steps``
    steps: evenly spaced in the shifted-sigma scale between the shifted ends of the training range, and
    shifted once more (``sigma' = shift * sigma / (1 + (shift - 1) * sigma)``), times the training steps."""

    def shifted(sigma: np.ndarray | float) -> np.ndarray:
        return shift * np.asarray(sigma, dtype=np.float64) / (1 + (shift - 1) * np.asarray(sigma, dtype=np.float64))

    sigma_max, sigma_min = shifted(1.0), shifted(1.0 / train_timesteps)
    sigmas = np.linspace(sigma_max * train_timesteps, sigma_min * train_timesteps, steps) / train_timesteps
    return torch.from_numpy(shifted(sigmas) * train_timesteps)


def read_caa(folder: str | Path) -> tuple[dict[str, Any], dict[int, dict[int, dict[int, np.ndarray]]]]:
    """``config.json`` and the vectors of a published CAA folder as ``{pass: {step: {block: (2560,)}}}``."""
    folder = Path(folder)
    config_path, pickle_path = folder / "config.json", folder / "sv.pkl"
    if not pickle_path.is_file():
        raise TadaError(f"{folder} has no sv.pkl: not a published CAA folder")
    config: dict[str, Any] = {}
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise TadaError(f"{config_path} is not valid JSON: {err}") from None
        if not isinstance(config, dict):
            raise TadaError(f"{config_path} is not a JSON object")
    raw = load_pickle(pickle_path)
    if not isinstance(raw, dict) or not raw:
        raise TadaError(f"{pickle_path}: expected a dict of (step, pass) keys, got {type(raw).__name__}")
    table: dict[int, dict[int, dict[int, np.ndarray]]] = {}
    for key, blocks in raw.items():
        step, which = _key(key, pickle_path)
        if not isinstance(blocks, dict):
            raise TadaError(f"{pickle_path}: the value of key {key!r} is a {type(blocks).__name__}, not a dict")
        for name, vectors in blocks.items():
            match = re.fullmatch(r"tf(\d+)", str(name))
            if not match or not 0 <= int(match.group(1)) < BLOCKS:
                raise TadaError(f"{pickle_path}: unknown block {name!r} (expected tf0 .. tf{BLOCKS - 1})")
            if not isinstance(vectors, list) or len(vectors) != 1:
                raise TadaError(f"{pickle_path}: {key!r}/{name}: expected a list of one vector")
            vector = np.asarray(vectors[0])
            if vector.shape != (WIDTH,) or not np.issubdtype(vector.dtype, np.floating):
                raise TadaError(
                    f"{pickle_path}: {key!r}/{name}: expected a float vector of {WIDTH}, got {vector.shape}"
                )
            table.setdefault(which, {}).setdefault(step, {})[int(match.group(1))] = vector
    return config, table


def _key(key: Any, source: Path) -> tuple[int, int]:
    if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, int) for k in key):
        step, which = key
    elif isinstance(key, int) and not isinstance(key, bool):
        step, which = key, 0  # only the conditional pass was saved
    else:
        raise TadaError(f"{source}: unexpected key {key!r}; expected (step, pass) or step")
    if which not in PASSES or step < 0:
        raise TadaError(f"{source}: key {key!r} has no step >= 0 and pass 0 or 1")
    return step, which


def import_caa(folder: str | Path) -> dict[str, SteeringVector]:
    """Steering vectors of a published CAA folder, one per guidance pass saved: ``"conditional"`` (the one
    the paper steers with) and, when saved, ``"unconditional"``. Applied as the paper does: added, then
    each token re-normalised to its norm before steering."""
    config, table = read_caa(folder)
    steps = int(config.get("num_inference_steps", 0) or 0)
    concept = str(config.get("concept", "") or "")
    out = {}
    for which, by_step in sorted(table.items()):
        blocks = sorted({b for per_step in by_step.values() for b in per_step})
        if len(by_step) == 1:  # one key: the same vector at every step
            only = next(iter(by_step.values()))
            n = steps or 1
            by_step = {s: only for s in range(n)}
        n_steps = steps or max(by_step) + 1
        missing = sorted(set(range(n_steps)) - set(by_step))
        if missing or max(by_step) >= n_steps:
            raise TadaError(
                f"{folder}: the {PASSES[which]} pass has vectors for steps {sorted(by_step)[:3]}... of "
                f"{n_steps} (config.json's num_inference_steps); steps {missing[:5]} are missing"
            )
        for step, per_block in by_step.items():
            if sorted(per_block) != blocks:
                raise TadaError(f"{folder}: step {step} of the {PASSES[which]} pass lacks some blocks")
        timesteps = v1_timesteps(n_steps, float(config.get("shift", SHIFT)))
        vectors = {
            f"xattn.{b}": torch.from_numpy(np.stack([by_step[s][b] for s in range(n_steps)]).astype(np.float32))
            for b in blocks
        }
        norms = torch.cat([v.double().norm(dim=-1) for v in vectors.values()])
        unit = bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-3))
        out[PASSES[which]] = SteeringVector(
            vectors,
            timesteps,
            FAMILY,
            WIDTH,
            concept=concept,
            operation="add",
            normalisation="unit" if unit else "none",
            prompt_set={"source": "published", "folder": Path(folder).name},
            settings={
                "renorm": True,
                "imported_from": "paper CAA sv.pkl",
                "pass": PASSES[which],
                "num_inference_steps": n_steps,
                "config": config,
            },
        )
    return out


__all__ = ["BLOCKS", "FAMILY", "WIDTH", "import_caa", "read_caa", "v1_timesteps"]
