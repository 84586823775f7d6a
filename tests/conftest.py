from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import contextlib  # noqa: E402
import io  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tada.artifacts import SteeringVector  # noqa: E402

FAMILIES = ("ace-step-1.5", "stable-audio", "audioldm2", "tada-mini")
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


@pytest.fixture(scope="session")
def mini():
    """tada-mini with its shipped weights, loaded once for the session."""
    from tada.adapters import load_model

    return load_model("tada-mini")


MINI_FAST = {"seconds": 2.0, "steps": 6}


def fast_settings(family: str) -> dict:
    return MINI_FAST if family == "tada-mini" else FAST


def assert_unchosen_inputs_as_neutral(model, artifact, alpha: float, unchosen, prompts, settings) -> None:
    """Steering with ``artifact`` at ``alpha`` changes the audio but leaves what every ``unchosen``
    cross-attention layer reads (its ``xattn_in`` input) bitwise as in the neutral (alpha 0) run, every step."""
    from tada.interventions import Capture

    def inputs(strength: float):
        captures = {site.alias: Capture(rows="both", reduce="full") for site in unchosen}
        with artifact.apply(model, strength), model.engine.add({site: captures[site.alias] for site in unchosen}):
            audio = model.generate(prompts, **settings).samples
        return captures, audio

    neutral, plain = inputs(0.0)
    steered, audio = inputs(alpha)
    assert not np.array_equal(audio, plain)
    for alias, capture in neutral.items():
        assert sorted(capture.records) == sorted(steered[alias].records) == list(range(settings["steps"]))
        for step, record in capture.records.items():
            assert torch.equal(record, steered[alias].records[step]), (alias, step)


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


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run the `tada` console entry point in this process (no re-import of torch: fast)."""
    from tada.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["tada", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Tests that set torch's thread count must not change numerics of the tests after them."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
