"""SAE steering behind the method interface: feature scores follow their formulas, the artifact is the sum
of the chosen features' decoder rows per step, alpha 0 and removal are exact, only the SAEs' sites change,
fitting resumes after a kill, and bad input fails in one line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import assert_unchosen_inputs_as_neutral, site_width

from tada.artifacts import SteeringVector
from tada.concepts import concept_pairs, get_concept
from tada.errors import TadaError
from tada.methods import FitRequest, get_method, load_artifact
from tada.methods.sae import SAESteering, feature_scores, top_features
from tada.sae import SAEConfig, TopKSAE

PIANO = get_concept("piano")
PAIRS = concept_pairs("piano", 2)
PROMPTS = [PIANO.neutral_prompt("lofi music"), PIANO.neutral_prompt("a lullaby")]
METHOD = get_method("sae")


def random_sae(model, alias: str, directory, seed: int = 0) -> TopKSAE:
    """A random SAE at ``alias``'s hookpoint, written under ``directory``."""
    torch.manual_seed(seed)
    site = model.site(alias)
    sae = TopKSAE(SAEConfig(d_in=site_width(model, alias), k=4, expansion_factor=2, tada={"hookpoint": site.path}))
    sae.save_pretrained(directory / site.path)
    return sae


def fit(model, settings, options, sites=None, pairs=PAIRS, **kwargs) -> SteeringVector:
    request = FitRequest(
        PIANO, pairs, {"source": "preset"}, sites=sites, batch_pairs=2, progress=False, options=options, **settings
    )
    for key, value in kwargs.items():
        setattr(request, key, value)
    return METHOD.fit(model, request)


@pytest.mark.parametrize("case", ["tada-mini", "stable-audio"])
def test_fit_apply_alpha_zero_and_removal(case, mini, tiny_models, tmp_path):
    model, settings = (
        (mini, {"seconds": 2.0, "steps": 4})
        if case == "tada-mini"
        else (tiny_models(case), {"seconds": 1.0, "steps": 4})
    )
    sites = model.resolve_sites(None)[:2]
    saes = {s.alias: random_sae(model, s.alias, tmp_path / "sae", seed=i) for i, s in enumerate(sites)}
    vector = fit(model, settings, {"sae": tmp_path / "sae", "top": 3}, out=tmp_path / "a.safetensors")
    assert vector.method == "sae" and sorted(vector.sites) == sorted(saes)
    assert vector.settings["renorm"] is True and vector.settings["score"] == "tfidf"
    for alias, sae in saes.items():
        chosen = torch.tensor(vector.settings["features"][alias])
        assert chosen.shape == (settings["steps"], 3)
        assert torch.allclose(vector.vectors[alias], sae.W_dec.detach()[chosen].sum(dim=1), atol=1e-6)
    loaded = load_artifact(tmp_path / "a.safetensors")
    assert isinstance(loaded, SteeringVector) and loaded.method == "sae"
    assert loaded.settings["features"] == vector.settings["features"]

    plain = model.generate(PROMPTS, seed=[0, 1], **settings).samples
    with loaded.apply(model, 0.0):
        zero = model.generate(PROMPTS, seed=[0, 1], **settings).samples
    assert np.array_equal(zero, plain)
    with loaded.apply(model, 3.0):
        steered = model.generate(PROMPTS, seed=[0, 1], **settings).samples
    assert not np.array_equal(steered, plain)
    assert np.array_equal(model.generate(PROMPTS, seed=[0, 1], **settings).samples, plain)


def test_only_the_sae_sites_change(mini, tmp_path):
    settings = {"seconds": 2.0, "steps": 4}
    random_sae(mini, "xattn.6", tmp_path / "sae")
    vector = fit(mini, settings, {"sae": tmp_path / "sae", "top": 5})
    assert vector.sites == ["xattn.6"]
    unchosen = [s for s in mini.layer_sites(None, "xattn_in") if s.alias != "xattn_in.6"]
    assert_unchosen_inputs_as_neutral(mini, vector, 4.0, unchosen, PROMPTS, {**settings, "seed": [0, 1]})


def test_scores_are_the_reference_formulas_and_pick_the_concept_features():
    pos_sum = torch.tensor([[4.0, 0.0, 2.0, 1.0]])
    neg_sum = torch.tensor([[0.0, 4.0, 2.0, 0.1]])
    count = torch.full((1, 4), 2.0)
    totals = {
        "pos_sum/x": pos_sum,
        "neg_sum/x": neg_sum,
        "pos_count/x": count,
        "neg_count/x": count,
        "pos_square/x": torch.tensor([[10.0, 0.0, 2.0, 0.5]]),
        "neg_square/x": torch.tensor([[0.0, 10.0, 2.0, 0.005]]),
    }
    tfidf = feature_scores(totals, "x", "tfidf")
    expected = [2.0 * math.log1p(1 / 1e-6), 0.0, 1.0 * math.log1p(1 / 1.000001), 0.5 * math.log1p(1 / 0.050001)]
    assert torch.allclose(tfidf[0], torch.tensor(expected), rtol=1e-5)
    assert torch.allclose(feature_scores(totals, "x", "diff")[0], torch.tensor([2.0, -2.0, 0.0, 0.45]))
    cohen = feature_scores(totals, "x", "cohen")[0]
    assert cohen[0] > 0 > cohen[1] and cohen[2] == 0
    assert top_features(tfidf, 2).tolist() == [[0, 3]]
    with pytest.raises(TadaError, match="unknown feature score"):
        feature_scores(totals, "x", "best")


def test_hand_picked_features_are_a_constant_slider(mini, tmp_path):
    sae = random_sae(mini, "xattn.3", tmp_path / "sae")
    vector = fit(mini, {"seconds": 2.0, "steps": 4}, {"sae": tmp_path / "sae", "features": "5,2"})
    assert vector.settings["features"] == {"xattn.3": [[5, 2]]}
    assert torch.allclose(vector.vectors["xattn.3"][0], sae.W_dec.detach()[5] + sae.W_dec.detach()[2])
    with pytest.raises(TadaError, match="features 0 to 511"):
        fit(mini, {"seconds": 2.0, "steps": 4}, {"sae": tmp_path / "sae", "features": "512"})
    random_sae(mini, "xattn.4", tmp_path / "sae")
    with pytest.raises(TadaError, match="pick one with --sites"):
        fit(mini, {"seconds": 2.0, "steps": 4}, {"sae": tmp_path / "sae", "features": "1"})
    picked = fit(mini, {"seconds": 2.0, "steps": 4}, {"sae": tmp_path / "sae", "features": "1"}, sites=["xattn.4"])
    assert picked.sites == ["xattn.4"]


def test_fit_resumes_after_a_kill(mini, tmp_path, monkeypatch):
    settings = {"seconds": 2.0, "steps": 4}
    random_sae(mini, "xattn.2", tmp_path / "sae")
    pairs = concept_pairs("piano", 4)
    options = {"sae": tmp_path / "sae", "top": 4}
    whole = fit(mini, settings, options, pairs=pairs)
    from tada.methods import sae as module

    real = module.FeatureStats.edit
    calls = {"n": 0}

    def dying(self, act, rows, gain, ctx):
        calls["n"] += 1
        if calls["n"] > settings["steps"]:  # the second batch dies
            raise KeyboardInterrupt
        return real(self, act, rows, gain, ctx)

    monkeypatch.setattr(module.FeatureStats, "edit", dying)
    with pytest.raises(KeyboardInterrupt):
        fit(mini, settings, options, pairs=pairs, work_dir=tmp_path / "work")
    assert (tmp_path / "work" / "chunk-00000.safetensors").is_file()
    monkeypatch.setattr(module.FeatureStats, "edit", real)
    resumed = fit(mini, settings, options, pairs=pairs, work_dir=tmp_path / "work", out=tmp_path / "r.safetensors")
    assert resumed.settings["features"] == whole.settings["features"]
    assert torch.equal(resumed.vectors["xattn.2"], whole.vectors["xattn.2"])


def test_bad_input_fails_in_one_line(mini, tmp_path):
    settings = {"seconds": 2.0, "steps": 4}
    with pytest.raises(TadaError, match="needs the SAE directory"):
        fit(mini, settings, {})
    with pytest.raises(TadaError, match="no such SAE directory"):
        fit(mini, settings, {"sae": tmp_path / "none"})
    with pytest.raises(TadaError, match="takes no fit option k"):
        fit(mini, settings, {"sae": tmp_path, "k": 3})
    with pytest.raises(TadaError, match="unknown feature score"):
        fit(mini, settings, {"sae": tmp_path, "score": "best"})
    with pytest.raises(TadaError, match="feature numbers separated by commas"):
        fit(mini, settings, {"sae": tmp_path, "features": "a,b"})
    wrong = TopKSAE(SAEConfig(d_in=7, k=2, tada={"hookpoint": "blocks.1.attn2"}))
    wrong.save_pretrained(tmp_path / "wrong" / "blocks.1.attn2")
    with pytest.raises(TadaError, match="reads 7 dimensions"):
        fit(mini, settings, {"sae": tmp_path / "wrong"})
    nowhere = TopKSAE(SAEConfig(d_in=256, k=2))
    nowhere.save_pretrained(tmp_path / "nowhere" / "encoder.layers.9")
    with pytest.raises(TadaError, match="matches no module"):
        fit(mini, settings, {"sae": tmp_path / "nowhere"})
    assert isinstance(METHOD, SAESteering)
    with pytest.raises(TadaError, match="alpha in"):
        METHOD.check_alpha(1e9)
