"""The method interface, and the prompt-level methods (prompt switching, text-embedding arithmetic),
on tada-mini's shipped weights and on the tiny configs of the three diffusers families."""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np
import pytest
import torch
from conftest import FAMILIES, fast_settings, run_cli

from tada.concepts import Concept, concept_pairs, get_concept
from tada.conditioning import Conditioning, capture_conditioning, swap_rows, union_mask
from tada.errors import ArtifactError, TadaError
from tada.interventions import Capture
from tada.methods import FitRequest, check_stack, get_method, load_artifact, method_names, steering

PIANO = get_concept("piano")
PROMPTS = [PIANO.neutral_prompt("lofi music"), "a jazz tune"]
CONDITIONING_METHODS = ("prompt-switch", "text-embedding")


@pytest.fixture
def model_of(tiny_models, mini):
    return lambda family: mini if family == "tada-mini" else tiny_models(family)


def fit(model, method: str, sites=None, concept: Concept = PIANO):
    request = FitRequest(concept, concept_pairs("piano", 2), {"source": "preset"}, sites=sites)
    return get_method(method).fit(model, request)


def generate(model, family: str, prompts=PROMPTS):
    return model.generate(prompts, seed=3, **fast_settings(family)).samples


def xattn_inputs(model, family: str, plan_artifact=None, alpha: float = 0.0) -> dict[str, Capture]:
    """Every cross-attention layer's text input in a run (steered by ``plan_artifact`` at ``alpha``)."""
    captures = {s: Capture(rows="both", reduce="full") for s in model.sites.values() if s.kind == "xattn_in"}
    with ExitStack() as stack:
        if plan_artifact is not None:
            stack.enter_context(plan_artifact.apply(model, alpha))
        stack.enter_context(model.engine.add(captures))  # after the steering: records what the layer reads
        generate(model, family)
    return {site.alias: cap for site, cap in captures.items()}


def test_registry_lists_every_method_with_its_alpha_convention():
    result = run_cli("methods")
    assert result.returncode == 0
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == method_names()
    assert all("alpha:" in line for line in lines)
    with pytest.raises(TadaError, match="unknown method 'bogus'"):
        get_method("bogus")


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_switch_at_full_strength_is_the_decorated_prompt(model_of, family):
    """Swapping every layer's text input for the whole run is generating from the decorated prompt:
    bitwise when both encode to the same number of tokens (a neutral wrap and its positive decoration),
    else up to the rounding of attention over a longer, masked, token axis (which tada-mini's Griffin-Lim
    phase reconstruction amplifies to a few percent of the plain-to-decorated difference)."""
    model = model_of(family)
    artifact = fit(model, "prompt-switch")
    for prompts, exact in ((PROMPTS[:1], True), (PROMPTS, False)):
        for alpha, decorate in ((1.0, PIANO.positive_prompt), (-1.0, PIANO.negative_prompt)):
            with artifact.apply(model, alpha):
                switched = generate(model, family, prompts)
            decorated = generate(model, family, [decorate(p) for p in prompts])
            if exact and alpha > 0:
                assert np.array_equal(switched, decorated)
            else:
                contrast = np.abs(generate(model, family, prompts) - decorated).max()
                assert np.abs(switched - decorated).max() <= max(1e-5, 0.1 * contrast)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", CONDITIONING_METHODS)
def test_alpha_zero_and_removal_are_bitwise_plain(model_of, family, method):
    model = model_of(family)
    plain = generate(model, family)
    artifact = fit(model, method)
    with artifact.apply(model, 0.0):
        assert np.array_equal(generate(model, family), plain)
    with artifact.apply(model, 0.5):
        assert not np.array_equal(generate(model, family), plain)
    assert not model.engine.active
    assert np.array_equal(generate(model, family), plain)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", CONDITIONING_METHODS)
def test_localised_variant_leaves_unchosen_layers_inputs_bitwise(model_of, family, method):
    model = model_of(family)
    layers = [s.alias for s in model.sites.values() if s.kind == "xattn"]
    chosen = layers[1:3]
    artifact = fit(model, method, sites=chosen)
    assert artifact.sites == [a.replace("xattn.", "xattn_in.") for a in chosen]
    assert artifact.settings["scope"] == "localised"
    plain = xattn_inputs(model, family)
    steered = xattn_inputs(model, family, artifact, 1.0 if method == "prompt-switch" else 2.0)
    for alias, capture in plain.items():
        same = all(torch.equal(capture.records[s], steered[alias].records[s]) for s in capture.records)
        assert same == (alias not in artifact.sites), alias


def test_prompt_switch_swaps_only_the_final_fraction_of_steps(mini):
    model, family = mini, "tada-mini"
    artifact = fit(model, "prompt-switch", sites=["xattn.2"])
    plain = xattn_inputs(model, family)["xattn_in.2"]
    steered = xattn_inputs(model, family, artifact, 0.5)["xattn_in.2"]
    steps = sorted(plain.records)
    changed = [s for s in steps if not torch.equal(plain.records[s], steered.records[s])]
    assert changed == steps[len(steps) // 2 :]


def test_prompt_methods_decorate_the_base_of_a_neutral_wrap():
    assert PIANO.base_of("lofi music, with instrument") == "lofi music"
    assert PIANO.positive_prompt("lofi music, with instrument") == "lofi music, with piano"
    assert PIANO.negative_prompt("a jazz tune") == "a jazz tune"
    mood = get_concept("mood")
    assert mood.positive_prompt("a song, folk tune") == "happy song, folk tune"
    assert Concept.from_json(mood.to_json()) == mood


@pytest.mark.parametrize("method", CONDITIONING_METHODS)
def test_artifacts_round_trip_and_refuse_other_models(tmp_path, model_of, method):
    mini = model_of("tada-mini")
    artifact = fit(mini, method, sites=["xattn.1"])
    path = artifact.save(tmp_path / "a.safetensors")
    loaded = load_artifact(path)
    assert (loaded.method, loaded.sites, loaded.decorations, loaded.settings) == (
        method,
        artifact.sites,
        PIANO,
        artifact.settings,
    )
    with pytest.raises(ArtifactError, match="made for tada-mini .* but the model is stable-audio"):
        loaded.apply(model_of("stable-audio"), 0.5)
    with pytest.raises(TadaError, match=f"{method} takes alpha in"):
        loaded.apply(mini, 11.0)


def test_prompt_level_methods_need_templates():
    bare = Concept("from-csv")
    with pytest.raises(TadaError, match="needs templates"):
        get_method("prompt-switch").fit(None, FitRequest(bare, [("a, with piano", "a")], {}))


def test_stacks_that_rewrite_one_text_input_are_refused(model_of):
    mini = model_of("tada-mini")
    switch, arithmetic = fit(mini, "prompt-switch", sites=["xattn.1"]), fit(mini, "text-embedding", sites=["xattn.1"])
    elsewhere = fit(mini, "text-embedding", sites=["xattn.5"])
    with pytest.raises(TadaError, match="cannot stack prompt-switch .* with text-embedding .*: both rewrite"):
        check_stack(mini, [(switch, 0.5), (arithmetic, 1.0)])
    check_stack(mini, [(switch, 0.5), (elsewhere, 1.0)])
    with steering(mini, [(switch, 0.5), (elsewhere, 1.0)]):
        assert mini.engine.active
    assert not mini.engine.active


def test_text_embedding_arithmetic_is_token_aligned(mini):
    """At alpha 1 with the prompt equal to its negative decoration, the layer reads the positive prompt's states."""
    model = mini
    concept = Concept("swap", "{p}, with piano", "{p}, with drums", neutral="{p}, with drums")
    artifact = fit(model, "text-embedding", sites=["xattn.0"], concept=concept)
    site = model.site("xattn_in.0")
    prompt = "lofi, with drums"
    got = {}
    capture = Capture(rows="cond", reduce="full")
    with artifact.apply(model, 1.0), model.engine.add({site: capture}):
        model.generate(prompt, seconds=1.0, steps=2)
    got = capture.records[0][0]
    reference = capture_conditioning(model, [prompt, "lofi, with piano", prompt], [site])[site.alias]
    assert got.shape == reference.states[1].shape
    torch.testing.assert_close(got, reference.states[1], rtol=0, atol=1e-5)


def test_swap_rows_pads_the_shorter_side_with_masked_tokens():
    states = torch.ones(2, 3, 4)
    mask = torch.zeros(2, 1, 3)
    new = Conditioning(torch.full((1, 5, 4), 2.0), torch.zeros(1, 1, 5))
    out, out_mask = swap_rows(states, mask, slice(1, 2), new)
    assert out.shape == (2, 5, 4) and torch.equal(out[1], new.states[0]) and torch.equal(out[0, 3:], torch.zeros(2, 4))
    assert (out_mask[0, 0, 3:] < -1e30).all() and (out_mask[1] == 0).all()
    bools = swap_rows(states, torch.ones(2, 3, dtype=torch.bool), slice(0, 1), Conditioning(torch.zeros(1, 2, 4)))[1]
    assert bools.tolist() == [[True, True, True], [True, True, True]]
    assert union_mask([torch.tensor([True, False]), torch.tensor([False, False])]).tolist() == [True, False]


def test_cli_fit_and_steer_any_artifact(tmp_path):
    out = tmp_path / "switch.safetensors"
    result = run_cli(
        "fit", "tada-mini", "--method", "prompt-switch", "--concept", "violin", "--sites", "xattn.3", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "localised to xattn.3" in result.stdout
    wav = tmp_path / "a.wav"
    quick = ["--seconds", "1", "--steps", "4"]
    result = run_cli(
        "steer", "tada-mini", "--prompt", "folk, with instrument", "--steer", f"{out}:0.5", *quick, "--out", str(wav)
    )
    assert result.returncode == 0 and wav.is_file(), result.stderr
    for args, message in (
        (["--steer", f"{out}:2"], "prompt-switch takes alpha in [-1, 1]"),
        (["--steer", f"{out}:0.5", "--steer", f"{out}:0.2"], "cannot stack prompt-switch"),
        (["--steer", f"{out}:0.5", "--renorm"], "take no renorm option"),
    ):
        result = run_cli("steer", "tada-mini", "--prompt", "p", *args, *quick, "--out", str(wav))
        assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    template = run_cli(
        "fit",
        "tada-mini",
        "--method",
        "prompt-switch",
        "--positive",
        "{p} with harp",
        "--negative",
        "{p}",
        "--n-pairs",
        "2",
        "--out",
        str(tmp_path / "harp.safetensors"),
    )
    assert template.returncode == 0, template.stderr
    assert load_artifact(tmp_path / "harp.safetensors").decorations.positive == "{p} with harp"
    for args, message in (
        (["--method", "nope", "--concept", "piano"], "unknown method 'nope'"),
        (["--method", "caa", "--concept", "piano", "--pairs", "x.csv"], "exactly one of --concept"),
        (["--method", "caa", "--positive", "{p}, x"], "exactly one of --concept"),
        (["--method", "caa", "--positive", "x", "--negative", "{p}"], "must contain {p}"),
        (["--method", "caa", "--concept", "piano", "--top", "2"], "--top needs --impact"),
    ):
        result = run_cli("fit", "tada-mini", *args, "--out", str(tmp_path / "x.safetensors"))
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_fit_caa_through_the_interface_records_method_and_decorations(tmp_path):
    out = tmp_path / "caa.safetensors"
    result = run_cli(
        "fit",
        "random-tiny:stable-audio",
        "--method",
        "caa",
        "--concept",
        "tempo",
        "--n-pairs",
        "2",
        "--seconds",
        "1",
        "--steps",
        "4",
        "--sites",
        "xattn_in.1",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    vector = load_artifact(out)
    assert vector.method == "caa" and vector.sites == ["xattn.1"] and vector.decorations == get_concept("tempo")


def test_cli_fit_localises_to_an_impact_tables_top_layers_and_takes_a_custom_wrap(tmp_path, mini):
    from tada.localize import ImpactTable

    inputs = [f"xattn_in.{i}" for i in range(8)]
    patched = torch.tensor([[0.1, 0.0, 0.9, 0.2, 0.0, 0.0, 0.7, 0.0]], dtype=torch.float64)
    table = ImpactTable(inputs, torch.ones(1), torch.zeros(1), patched, mini.family, mini.width, "a piano song")
    impact = table.save(tmp_path / "impact.safetensors")
    out = tmp_path / "local.safetensors"
    result = run_cli(
        "fit", "tada-mini", "--method", "text-embedding", "--concept", "piano",
        "--impact", str(impact), "--top", "2", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert load_artifact(out).sites == ["xattn_in.2", "xattn_in.6"]
    harp = tmp_path / "harp.safetensors"
    wrap = ["--positive", "{p}, with harp", "--negative", "{p}, with flute", "--n-pairs", "2", "--seconds", "1"]
    result = run_cli(
        "fit", "tada-mini", "--method", "token-embedding", *wrap,
        "--neutral", "{p}, with instrument", "--generic-word", "instrument", "--out", str(harp),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert load_artifact(harp).decorations.generic_word == "instrument"
    for extra, message in (
        (["--neutral", "{p}, with instrument", "--generic-word", "drum"], "is not a word of --neutral"),
        (["--neutral", "with instrument"], "--neutral must contain {p}"),
    ):
        result = run_cli("fit", "tada-mini", "--method", "token-embedding", *wrap, *extra, "--out", str(harp))
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_an_artifact_of_an_unknown_method_or_format_is_refused_in_one_line(tmp_path):
    from tada.files import write_safetensors
    from tada.methods import MethodArtifact

    path = MethodArtifact("bogus", "tada-mini", 256, ["xattn_in.0"], PIANO).save(tmp_path / "bogus.safetensors")
    with pytest.raises(ArtifactError, match="made by method 'bogus', which this tada does not know"):
        load_artifact(path)
    other = write_safetensors(tmp_path / "other.safetensors", {"x": torch.zeros(1)}, {"format": "someone/else"})
    with pytest.raises(ArtifactError, match="is not a tada steering artifact"):
        load_artifact(other)
    result = run_cli("steer", "tada-mini", "--prompt", "p", "--steer", f"{path}:1", "--out", str(tmp_path / "a.wav"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "bogus" in result.stderr
