from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import warnings  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from tada.artifacts import SteeringVector  # noqa: E402

FAMILIES = ("ace-step-1.5", "stable-audio", "audioldm2")
FAST = {"seconds": 1.0, "steps": 4}

warnings.filterwarnings("ignore", message="Should have")  # torchsde's Brownian tree, harmless here


@pytest.fixture(scope="session")
def tiny_models():
    """One tiny random model per family, built once for the session."""
    from tada.adapters import load_model

    cache: dict[str, object] = {}

    def get(family: str):
        if family not in cache:
            cache[family] = load_model(f"random-tiny:{family}")
        return cache[family]

    return get


def site_width(model, alias: str) -> int:
    module = model.engine.module(model.site(alias))
    return int(module.to_out[0].out_features)


def random_vector(model, aliases: list[str], seed: int = 0) -> SteeringVector:
    """A unit-norm random steering vector for ``model`` at two timesteps."""
    gen = torch.Generator().manual_seed(seed)
    vectors = {}
    for alias in aliases:
        v = torch.randn(2, site_width(model, alias), generator=gen)
        vectors[alias] = v / v.norm(dim=-1, keepdim=True)
    return SteeringVector(vectors, torch.tensor([0.0, 1000.0]), model.family, model.width, concept="random")


def xattn_aliases(model) -> list[str]:
    return [s.alias for s in model.sites.values() if s.kind == "xattn"]
