"""AUSteer (activation space): the artifact is a sparse signed-score steering vector with exactly k channels
per step, its scores are the sign statistics of pos - neg, alpha 0 and removal are exact, localised leaves
other layers alone, fitting resumes after a kill, and bad input fails in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_unchosen_inputs_as_neutral

from tada.artifacts import SteeringVector
from tada.concepts import concept_pairs, get_concept
from tada.errors import TadaError
from tada.interventions import AddVector, Capture, Renormalize
from tada.methods import ApplyOptions, FitRequest, check_stack, get_method, load_artifact
from tada.methods.austeer import REFERENCE_K_FRACTION, channel_scores, default_k, top_k_masks

PIANO = get_concept("piano")
PAIRS = concept_pairs("piano", 2)
PROMPTS = [PIANO.neutral_prompt("lofi music"), PIANO.neutral_prompt("a lullaby")]
CASES = ("tada-mini", "ace-step-1.5", "stable-audio", "audioldm2")
METHOD = get_method("austeer")


@pytest.fixture
def setup(mini, tiny_models):
    def get(case: str):
        if case == "tada-mini":
            return mini, {"seconds": 2.0, "steps": 4}
        return tiny_models(case), {"seconds": 1.0, "steps": 4}

    return get


def fit(model, settings, sites=None, pairs=PAIRS, **kwargs) -> SteeringVector:
    options = kwargs.pop("options", {})
    request = FitRequest(
        PIANO, pairs, {"source": "preset"}, sites=sites, batch_pairs=2, progress=False, options=options, **settings
    )
    for name, value in kwargs.items():
        setattr(request, name, value)
    return METHOD.fit(model, request)


def xattn_layers(model) -> list[str]:
    return [s.alias for s in model.sites.values() if s.kind == "xattn"]


def one_line_error(call) -> str:
    with pytest.raises(TadaError) as info:
        call()
    message = str(info.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize("scope", ["global", "localised"])
@pytest.mark.parametrize("case", CASES)
def test_sparse_vector_zero_is_exact_removal_restores_and_file_round_trips(case, scope, setup, tmp_path):
    model, settings = setup(case)
    sites = None if scope == "global" else xattn_layers(model)[:2]
    path = tmp_path / "austeer.safetensors"
    fitted = fit(model, settings, sites, out=path)
    vector = load_artifact(path)
    assert isinstance(vector, SteeringVector)
    assert (vector.method, vector.family, vector.width) == ("austeer", model.family, model.width)
    assert vector.sites == fitted.sites == (xattn_layers(model) if sites is None else sites)
    assert (vector.operation, vector.normalisation, vector.decorations) == ("add", "none", PIANO)
    assert vector.settings["renorm"] is True and vector.settings["scope"] == scope
    k = default_k(model)
    assert vector.settings["k"] == k
    torch.testing.assert_close(vector.timesteps, model.scheduler_timesteps().double().cpu())
    table = torch.cat([vector.vectors[a] for a in vector.sites], dim=1)  # (steps, channels of every site)
    assert table.shape[0] == settings["steps"]
    assert ((table != 0).sum(dim=1) == k).all()  # exactly k channels per step over all sites together
    kept = table[table != 0].abs()
    assert (kept >= 0.5).all() and (kept <= 1).all()  # a majority's share, signed
    for alias in vector.sites:
        torch.testing.assert_close(vector.vectors[alias], fitted.vectors[alias])

    plain = model.generate(PROMPTS, **settings).samples
    with vector.apply(model, 0.0):
        assert np.array_equal(model.generate(PROMPTS, **settings).samples, plain)
    with vector.apply(model, 30.0):
        up = model.generate(PROMPTS, **settings).samples
    with METHOD.apply(vector, model, -30.0, ApplyOptions()):
        down = model.generate(PROMPTS, **settings).samples
    assert np.isfinite(up).all() and np.isfinite(down).all()
    assert not np.array_equal(up, plain) and not np.array_equal(down, plain) and not np.array_equal(up, down)
    assert np.array_equal(model.generate(PROMPTS, **settings).samples, plain)


def test_scores_are_the_sign_statistics_of_positive_minus_negative(tiny_models):
    model, settings = tiny_models("stable-audio"), {"seconds": 1.0, "steps": 3}
    sites, pairs = ["xattn.1", "xattn.4"], PAIRS
    vector = fit(model, settings, sites, pairs=pairs, options={"k": 20})
    captures = {alias: Capture(rows="cond", reduce="full") for alias in sites}
    with model.engine.add({model.site(alias): cap for alias, cap in captures.items()}):
        model.generate([p for p, _ in pairs] + [n for _, n in pairs], seed=[0, 1, 0, 1], **settings)
    betas = {}
    for alias, capture in captures.items():
        rows = torch.stack([capture.records[step] for step in range(3)])  # (steps, 4 rows, tokens, dim)
        m = (rows[:, :2] - rows[:, 2:]).flatten(1, 2)  # (steps, pairs x tokens, dim)
        above, below = (m > 0).double().mean(dim=1), (m < 0).double().mean(dim=1)
        betas[alias] = torch.where(above >= below, above, -below)
    pooled = torch.cat([betas[a] for a in sites], dim=1)
    table = torch.cat([vector.vectors[a] for a in sites], dim=1).double()
    chosen = table != 0
    assert (chosen.sum(dim=1) == 20).all()
    torch.testing.assert_close(table[chosen], pooled[chosen])
    for step in range(3):  # the kept channels are the most consistent ones of both layers together
        assert pooled[step][chosen[step]].abs().min() >= pooled[step][~chosen[step]].abs().max()


def test_top_k_breaks_score_ties_by_the_steadier_difference():
    betas = {"a": torch.tensor([[1.0, 0.9, -1.0]]), "b": torch.tensor([[1.0, -0.6, 0.7]])}
    steadiness = {"a": torch.tensor([[0.1, 0.5, 0.2]]), "b": torch.tensor([[0.9, 0.0, 0.0]])}
    kept = top_k_masks({k: (betas[k], steadiness[k]) for k in betas}, 2)
    assert torch.equal(kept["a"], torch.tensor([[0.0, 0.0, -1.0]]))
    assert torch.equal(kept["b"], torch.tensor([[1.0, 0.0, 0.0]]))
    stats = {
        "above": torch.tensor([[3.0, 1.0, 0.0]]),
        "below": torch.tensor([[1.0, 3.0, 0.0]]),
        "sum": torch.tensor([[2.0, -2.0, 0.0]]),
        "square": torch.tensor([[4.0, 2.0, 0.0]]),
        "samples": torch.tensor([[4.0, 4.0, 4.0]]),
    }
    beta, agreement = channel_scores(stats)
    assert torch.equal(beta, torch.tensor([[0.75, -0.75, 0.0]], dtype=beta.dtype))
    assert torch.equal(agreement, torch.tensor([[0.25, 0.5, 0.0]], dtype=agreement.dtype))


@pytest.mark.parametrize("case", CASES)
def test_localised_leaves_every_unchosen_layer_input_as_in_the_neutral_run(case, setup):
    model, settings = setup(case)
    layers = xattn_layers(model)
    vector = fit(model, settings, layers[:2])
    unchosen = model.layer_sites(layers[2:], "xattn_in")
    assert_unchosen_inputs_as_neutral(model, vector, 30.0, unchosen, PROMPTS, settings)


def test_defaults_mismatch_bad_alpha_and_bad_options(mini, tiny_models):
    settings = {"seconds": 2.0, "steps": 3}
    assert default_k(mini) == round(8 * 256 * REFERENCE_K_FRACTION) == 68  # 2048 of 24 x 2560, scaled
    vector = fit(mini, settings, ["xattn.3"])
    assert vector.settings["k"] == 68
    assert [type(op) for op in next(iter(vector.interventions(mini, 1.0).values()))] == [AddVector, Renormalize]
    assert [type(op) for op in next(iter(vector.interventions(mini, 1.0, renorm=False).values()))] == [AddVector]
    assert METHOD.claims(vector, mini) == {"output:xattn.3": "add"}
    check_stack(mini, [(vector, 1.0), (vector, -2.0)])
    assert "tada-mini" in one_line_error(lambda: vector.apply(tiny_models("stable-audio"), 1.0))
    assert "alpha" in one_line_error(lambda: METHOD.apply(vector, mini, 2.0e4, ApplyOptions()))
    for bad in (0, 2.5, "many"):
        assert "k must be" in one_line_error(lambda bad=bad: fit(mini, settings, pairs=PAIRS[:1], options={"k": bad}))
    assert "no fit option from_step" in one_line_error(lambda: fit(mini, settings, options={"from_step": 0.1}))
    assert "at least one" in one_line_error(lambda: fit(mini, settings, pairs=[]))


def test_fitting_resumes_after_a_kill(tiny_models, tmp_path, monkeypatch):
    model, settings = tiny_models("stable-audio"), {"seconds": 1.0, "steps": 3}
    pairs = concept_pairs("piano", 4)  # two batches of two
    reference = fit(model, settings, ["xattn.0", "xattn.5"], pairs=pairs)
    calls = {"n": 0}
    original = model.generate

    def dies_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", dies_on_second)
    work = tmp_path / "parts"
    with pytest.raises(KeyboardInterrupt):
        fit(model, settings, ["xattn.0", "xattn.5"], pairs=pairs, work_dir=work)
    assert len(list(work.glob("chunk-*.safetensors"))) == 1
    calls["n"] = -100
    out = tmp_path / "austeer.safetensors"
    resumed = fit(model, settings, ["xattn.0", "xattn.5"], pairs=pairs, work_dir=work, out=out)
    assert calls["n"] == -100 + 1  # only the unfinished batch ran again
    assert not work.exists() and out.is_file()
    for alias in reference.sites:
        assert torch.equal(resumed.vectors[alias], reference.vectors[alias])
