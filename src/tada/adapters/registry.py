"""Model ids on the command line and in the API: ``tada-mini`` (the bundled model),
``FAMILY:PATH`` or ``random-SIZE:FAMILY``."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import TadaError
from .base import Adapter
from .diffusers_families import FAMILY_SPECS, DiffusersAdapter
from .kinds import BUNDLED, RANDOM_SIZES

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def bundled_weights() -> Path:
    """Where the package keeps tada-mini's trained weights."""
    from ..mini import WEIGHTS_DIR

    return WEIGHTS_DIR


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise TadaError(f"unknown dtype {name!r}; choose one of {', '.join(sorted(DTYPES))}") from None


def load_model(model_id: str, dtype: torch.dtype | str = torch.float32, device: str = "cpu") -> Adapter:
    """Build the adapter a model id names."""
    if isinstance(dtype, str):
        dtype = parse_dtype(dtype)
    if model_id == BUNDLED:
        weights = bundled_weights()
        if not (weights / "model_index.json").is_file():
            raise TadaError(
                f"tada-mini's weights are not in this installation ({weights}); "
                "train them with `tada mini train` or pass tada-mini:PATH"
            )
        return DiffusersAdapter.from_pretrained(BUNDLED, weights, dtype=dtype, device=device)
    head, sep, tail = model_id.partition(":")
    if not sep or not tail:
        raise TadaError(f"cannot read model id {model_id!r}; use FAMILY:PATH or random-tiny:FAMILY (see `tada models`)")
    if head.startswith("random-"):
        size = head.removeprefix("random-")
        if size not in RANDOM_SIZES or tail not in FAMILY_SPECS:
            raise TadaError(
                f"unknown model id {model_id!r}; random models are random-{{tiny,full}}:{{{','.join(FAMILY_SPECS)}}}"
            )
        return DiffusersAdapter.random(tail, size=size, dtype=dtype, device=device)
    if head == "ace-step-v1":
        from .ace_step_v1 import AceStepV1Adapter

        return AceStepV1Adapter.from_pretrained(tail, dtype=dtype, device=device)
    if head not in FAMILY_SPECS:
        raise TadaError(f"unknown model family {head!r}; choose one of {', '.join(FAMILY_SPECS)} (see `tada models`)")
    return DiffusersAdapter.from_pretrained(head, tail, dtype=dtype, device=device)
