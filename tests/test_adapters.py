"""Every adapter on its tiny random config: steering identities, context, rows, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAMILIES, FAST, random_vector, xattn_aliases

from tada.errors import ArtifactError, SiteError
from tada.interventions import AddVector, Capture

PROMPTS = ["a piano song", "a rock song with drums"]


@pytest.fixture(params=FAMILIES)
def model(request, tiny_models):
    m = tiny_models(request.param)
    yield m
    m.engine.clear()


def middle_xattn(model) -> str:
    aliases = xattn_aliases(model)
    return aliases[len(aliases) // 2]


def test_sites_cover_every_attention(model):
    kinds = {s.kind for s in model.sites.values()}
    assert {"xattn", "xattn_in", "attn"} <= kinds
    n_x = len(xattn_aliases(model))
    assert n_x >= 4
    for site in model.sites.values():
        model.engine.module(site)  # every path resolves
    assert len({s.alias for s in model.sites.values()}) == len(model.sites)


def test_alpha_zero_is_bitwise_identical(model):
    plain = model.generate(PROMPTS, seed=3, **FAST)
    vector = random_vector(model, xattn_aliases(model))
    with vector.apply(model, 0.0, renorm=True):
        steered = model.generate(PROMPTS, seed=3, **FAST)
    assert np.array_equal(plain.samples, steered.samples)


def test_removing_every_hook_restores_output(model):
    plain = model.generate(PROMPTS, seed=5, **FAST)
    vector = random_vector(model, xattn_aliases(model))
    handle = vector.apply(model, 50.0, mode="both")
    steered = model.generate(PROMPTS, seed=5, **FAST)
    handle.remove()
    assert not np.array_equal(plain.samples, steered.samples)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.denoiser.modules())
    assert np.array_equal(model.generate(PROMPTS, seed=5, **FAST).samples, plain.samples)


def test_capture_sees_scheduler_timesteps_and_conditional_rows(model):
    alias = middle_xattn(model).replace("xattn.", "xattn_in.")
    cond, uncond = Capture(rows="cond", reduce="full"), Capture(rows="uncond", reduce="full")
    with model.engine.add({model.site(alias): [cond, uncond]}):
        model.generate(PROMPTS, seed=0, **FAST)
    expected = [float(t) for t in model.scheduler_timesteps().double()]
    assert cond.timesteps == expected and uncond.timesteps == expected
    assert cond.steps == list(range(len(expected)))
    for step in cond.steps:
        c, u = cond.records[step], uncond.records[step]
        assert c.shape[0] == u.shape[0] == len(PROMPTS)
        # the unconditional pass conditions every clip on the same null/empty prompt,
        # the conditional pass on each clip's own prompt
        assert torch.equal(u[0], u[1])
        assert not torch.allclose(c[0], c[1])
        assert not torch.allclose(c[0], u[0])


def test_conditional_rows_match_a_single_prompt_run(model):
    alias = middle_xattn(model).replace("xattn.", "xattn_in.")
    pair, alone = Capture(rows="cond", reduce="full"), Capture(rows="cond", reduce="full")
    with model.engine.add({model.site(alias): pair}):
        model.generate(PROMPTS, seed=0, **FAST)
    with model.engine.add({model.site(alias): alone}):
        model.generate(PROMPTS[1], seed=1, **FAST)
    torch.testing.assert_close(pair.records[0][1:2], alone.records[0], rtol=1e-4, atol=1e-5)


def test_cond_mode_changes_only_conditional_rows(model):
    site = model.site(middle_xattn(model))
    vector = random_vector(model, [site.alias])
    before, after = Capture(rows="both", reduce="full"), Capture(rows="both", reduce="full")
    add = AddVector(vector.table(site.alias), 7.0, rows="cond")
    with model.engine.add({site: [before, add, after]}):
        model.generate(PROMPTS, seed=0, **FAST)
    layout = model.layout.order
    n = len(PROMPTS)
    cond_rows = slice(0, n) if layout[0] == "cond" else slice(n, 2 * n)
    uncond_rows = slice(n, 2 * n) if layout[0] == "cond" else slice(0, n)
    for step in before.records:
        b, a = before.records[step], after.records[step]
        assert torch.equal(a[uncond_rows], b[uncond_rows])
        delta = (a[cond_rows] - b[cond_rows]).reshape(-1, b.shape[-1])
        torch.testing.assert_close(delta.norm(dim=-1), torch.full((delta.shape[0],), 7.0), rtol=1e-3, atol=1e-3)


def test_steering_moves_output_and_sign_matters(model):
    vector = random_vector(model, xattn_aliases(model))
    plain = model.generate(PROMPTS[0], seed=2, **FAST).samples
    outs = {}
    for alpha in (-20.0, 20.0):
        with vector.apply(model, alpha):
            outs[alpha] = model.generate(PROMPTS[0], seed=2, **FAST).samples
    assert not np.array_equal(outs[20.0], plain) and not np.array_equal(outs[-20.0], outs[20.0])


def test_unknown_site_and_mismatched_vector(model, tiny_models):
    with pytest.raises(SiteError, match="no site 'xattn.999'"):
        model.site("xattn.999")
    other = next(f for f in FAMILIES if f != model.family)
    foreign = random_vector(tiny_models(other), xattn_aliases(tiny_models(other))[:1])
    with pytest.raises(ArtifactError) as err:
        foreign.apply(model, 1.0)
    message = str(err.value)
    assert "\n" not in message and other in message and model.family in message
    assert not model.engine.active


def test_encode_prompts_gives_conditioning(model):
    encoded = model.encode_prompts(PROMPTS)
    assert encoded and all(t.shape[0] == len(PROMPTS) for t in encoded.values())
