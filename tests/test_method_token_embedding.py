"""The token-embedding method: where words land on every family's text axis, fitting, steering, artifacts."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch

from tada.concepts import Concept, concept_pairs, get_concept
from tada.conditioning import capture_conditioning
from tada.errors import TadaError
from tada.interventions import Capture
from tada.methods import FitRequest, check_stack, get_method, load_artifact
from tada.methods.token_embedding import generic_word_spans, read_pair

TINY = ("ace-step-1.5", "stable-audio", "audioldm2")
MINI = {"seconds": 2.0, "steps": 6}
FAST = {"seconds": 1.0, "steps": 4}
PROMPT = "lofi music, with instrument"


@pytest.fixture(params=("tada-mini", *TINY))
def family_model(request, mini, tiny_models):
    """Each family with the sampler settings its tests use."""
    if request.param == "tada-mini":
        return mini, MINI
    return tiny_models(request.param), FAST


def fit(model, concept: str = "piano", sites=None, n_pairs: int = 2, settings=FAST):
    pairs = concept_pairs(concept, n_pairs)
    request = FitRequest(get_concept(concept), pairs, {"name": "test"}, sites=sites, **settings)
    return get_method("token-embedding").fit(model, request)


def xattn_in(model) -> list[str]:
    return [s.alias for s in model.layer_sites(None, "xattn_in")]


# -------------------------------------------------------------------------- where words land


def test_generic_word_positions_on_tada_mini(mini):
    from tada.text_encoder import load_minilm

    prompts = [PROMPT, "a song, music for a rainy day"]
    tokens = [load_minilm()[0].tokenize(p) for p in prompts]  # without [CLS], which takes position 0
    assert mini.word_positions(prompts, "instrument") == [[tokens[0].index("instrument") + 1], []]
    assert mini.word_positions(prompts, "song") == [[], [tokens[1].index("song") + 1]]
    # the wrap's own generic word, not the base prompt's
    mood = get_concept("mood")
    prompt = mood.neutral_prompt("a song about a song")
    assert generic_word_spans(mood, prompt) == [(2, 6)]
    assert mini.span_positions([prompt], [generic_word_spans(mood, prompt)]) == [[2]]


def _text_encoder(model) -> torch.nn.Module:
    if model.family == "tada-mini":
        from tada.text_encoder import load_minilm

        return load_minilm()[1]
    pipe = model.pipeline
    return pipe.text_encoder_2 if model.family == "audioldm2" else pipe.text_encoder


@contextmanager
def word_by_word_encoder(model):
    """Make the text encoder context-free (each token's state a function of its id alone), so a
    changed word changes exactly its own positions in every layer that reads the prompt's tokens."""

    def hook(module, args, kwargs, out):
        ids = kwargs.get("input_ids", args[0] if args else None)
        frequencies = 0.37 * torch.arange(1, out[0].shape[-1] + 1)
        out["last_hidden_state"] = torch.sin(ids[..., None].float() * frequencies).to(out[0].dtype)
        return out

    handle = _text_encoder(model).register_forward_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def test_found_positions_are_where_the_layers_read_the_word(family_model):
    model, settings = family_model
    prompts = [PROMPT, "lofi music, with piano"]
    expected = model.word_positions(prompts, "instrument")[0]
    assert expected and model.word_positions(prompts, "piano")[1] == expected
    sites = model.layer_sites(None, "xattn_in")
    with word_by_word_encoder(model):
        captured = capture_conditioning(model, prompts, sites, **settings)
    for site in sites:
        states = captured[site.alias].states
        changed = ((states[0] - states[1]).abs().amax(-1) > 1e-4 * states.abs().amax()).nonzero().flatten().tolist()
        if model.reads_prompt_tokens(site):
            assert changed == expected, site.alias
        else:  # AudioLDM2's GPT-2 layers: every generated token moves
            assert model.family == "audioldm2" and len(changed) > len(expected), site.alias
    assert any(model.reads_prompt_tokens(s) for s in sites)


# -------------------------------------------------------------------------- fitting


def test_concept_words_of_the_presets():
    piano, mood = get_concept("piano"), get_concept("mood")
    assert read_pair(piano, *piano.pair("lofi"), 1).words == "piano -> instrument"
    assert read_pair(piano, *piano.pair("lofi"), 1).negative == "lofi, with instrument"
    assert read_pair(mood, *mood.pair("lofi"), 1).words == "happy -> sad"
    vocal = get_concept("vocal_gender")
    assert read_pair(vocal, *vocal.pair("pop"), 1).words == "female -> male"
    bare = Concept("custom", neutral="{p}, with instrument", generic_word="instrument")
    assert read_pair(bare, "jazz with piano", "jazz with organ", 1).words == "piano -> organ"
    with pytest.raises(TadaError, match="pair 3: 'jazz with piano' adds words .* needs pairs built from"):
        read_pair(bare, "jazz with piano", "jazz", 3)
    with pytest.raises(TadaError, match="pair 1: the positive and negative prompts have the same words"):
        read_pair(bare, "jazz", "Jazz", 1)


def test_fit_reads_each_layer_at_the_concept_word(mini):
    artifact = fit(mini, n_pairs=3, settings=MINI)
    assert artifact.sites == xattn_in(mini)
    assert artifact.settings == {"scope": "global", "pairs": 3, "words": ["piano -> instrument"]}
    bases = ["lofi music", "a catchy tune", "background music for a video"]
    pos = [f"{b}, with piano" for b in bases]
    neg = [f"{b}, with instrument" for b in bases]
    site = mini.site("xattn_in.1")
    states = capture_conditioning(mini, pos + neg, [site], **MINI)[site.alias].states
    at = mini.word_positions(pos, "piano") + mini.word_positions(neg, "instrument")
    words = torch.stack([states[i, p].mean(0) for i, p in enumerate(at)])
    expected = (words[:3] - words[3:]).mean(0)
    torch.testing.assert_close(artifact.tensors["direction/xattn_in.1"], expected)


def test_audioldm2_acts_on_its_t5_layers_only(tiny_models):
    model = tiny_models("audioldm2")
    artifact = fit(model)
    assert artifact.sites and all(model.reads_prompt_tokens(model.site(a)) for a in artifact.sites)
    assert len(artifact.sites) < len(xattn_in(model))
    with pytest.raises(TadaError, match=r"cannot steer xattn_in\.mid\.1: .*does not line up") as err:
        fit(model, sites=["xattn.mid.1"])
    assert "\n" not in str(err.value)


def test_fit_needs_a_generic_word(mini):
    bare = Concept("custom", "{p}, with piano", "{p}")
    request = FitRequest(bare, [bare.pair("lofi")], {}, **MINI)
    with pytest.raises(TadaError, match="generic word of the concept's neutral wrap"):
        get_method("token-embedding").fit(mini, request)


# -------------------------------------------------------------------------- steering


def captures(model, aliases) -> dict[str, Capture]:
    return {a: Capture(rows="both", reduce="full") for a in aliases}


def run(model, prompts, settings, spy: dict[str, Capture]):
    with model.engine.add({model.site(a): c for a, c in spy.items()}):
        return model.generate(prompts, **settings, seed=3).samples


def test_steering_contract(family_model, tmp_path):
    """Alpha 0 is bitwise plain; localised steering changes only its layer's conditional rows, exactly
    at the generic word; the handle restores the model; the artifact round-trips."""
    model, settings = family_model
    aligned = [a for a in xattn_in(model) if model.reads_prompt_tokens(model.site(a))]
    chosen, others = aligned[1], [a for a in xattn_in(model) if a != aligned[1]]
    artifact = fit(model, sites=[chosen], settings=settings)
    assert artifact.sites == [chosen] and artifact.scope == "localised"
    loaded = load_artifact(artifact.save(tmp_path / "piano.safetensors"))
    assert loaded.decorations == artifact.decorations and loaded.settings == artifact.settings
    assert torch.equal(loaded.tensors[f"direction/{chosen}"], artifact.tensors[f"direction/{chosen}"])

    prompts = [PROMPT, "a catchy tune, with instrument"]
    plain_spy = captures(model, xattn_in(model))
    plain = run(model, prompts, settings, plain_spy)
    with loaded.apply(model, 0.0):
        assert np.array_equal(model.generate(prompts, **settings, seed=3).samples, plain)
    steered_spy = captures(model, xattn_in(model))
    with loaded.apply(model, 2.0):
        steered = run(model, prompts, settings, steered_spy)
    assert np.array_equal(model.generate(prompts, **settings, seed=3).samples, plain)
    assert not np.array_equal(steered, plain)

    for alias in others:
        for step, before in plain_spy[alias].records.items():
            assert torch.equal(steered_spy[alias].records[step], before), (alias, step)
    cond, _ = model.layout.rows(2 * len(prompts), len(prompts))
    positions = model.word_positions(prompts, "instrument")
    delta = 2.0 * loaded.tensors[f"direction/{chosen}"]
    for step, before in plain_spy[chosen].records.items():
        change = steered_spy[chosen].records[step] - before
        expected = torch.zeros_like(change)
        for i, found in enumerate(positions):
            expected[cond.start + i, found] = delta.to(change.dtype)
        torch.testing.assert_close(change, expected, rtol=1e-5, atol=1e-5 * delta.abs().max().item())


def test_plus_and_minus_alpha_move_tada_mini_apart(mini):
    for sites in (None, ["xattn.2"]):
        artifact = fit(mini, sites=sites, n_pairs=4, settings=MINI)
        plain = mini.generate(PROMPT, **MINI).samples
        with artifact.apply(mini, 3.0):
            up = mini.generate(PROMPT, **MINI).samples
        with artifact.apply(mini, -3.0):
            down = mini.generate(PROMPT, **MINI).samples
        assert np.abs(up - plain).max() > 1e-3 and np.abs(down - plain).max() > 1e-3
        assert np.abs(up - down).max() > np.abs(up - plain).max() / 2


def test_refusals_are_one_line(mini, tiny_models):
    artifact = fit(mini, settings=MINI)
    other = fit(tiny_models("stable-audio"))
    cases = [
        (lambda: other.apply(mini, 1.0), "made for stable-audio"),
        (lambda: artifact.apply(mini, 10.5), r"token-embedding takes alpha in \[-10, 10\]"),
        (lambda: artifact.apply(mini, float("nan")), "takes alpha in"),
        (lambda: artifact.apply(mini, 1.0, mode="cond"), "take no mode option"),
    ]
    for call, message in cases:
        with pytest.raises(TadaError, match=message) as err:
            call()
        assert "\n" not in str(err.value)
    with artifact.apply(mini, 1.0), pytest.raises(TadaError, match="'lofi music' lacks; generate from") as err:
        mini.generate("lofi music", **MINI)
    assert "'lofi music, with instrument'" in str(err.value) and "\n" not in str(err.value)
    assert not mini.engine.active


def test_claims_add_to_text_inputs(mini):
    artifact = fit(mini, sites=["xattn.1"], settings=MINI)
    method = get_method("token-embedding")
    assert method.claims(artifact, mini) == {"the text input of xattn_in.1": "add"}
    check_stack(mini, [(artifact, 1.0), (artifact, -0.5)])
    swap = get_method("text-embedding").fit(mini, FitRequest(get_concept("piano"), [], {}, sites=["xattn.1"]))
    with pytest.raises(TadaError, match="both rewrite the text input of xattn_in.1"):
        check_stack(mini, [(artifact, 1.0), (swap, 1.0)])
