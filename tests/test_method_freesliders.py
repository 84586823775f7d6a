"""FreeSliders (score space): alpha 0 and removal are exact, localised leaves other layers alone, the
slider term is exactly alpha * (eps_pos - eps_neg) under linear guidance, the extra passes cost exactly
one call of two rows per clip per steered step, artifacts round-trip and bad input fails in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_unchosen_inputs_as_neutral
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from torch import nn

from tada.concepts import Concept, get_concept
from tada.context import GuidanceLayout
from tada.engine import HookEngine, Site, first_output
from tada.errors import TadaError
from tada.interventions import Intervention
from tada.methods import FitRequest, check_stack, get_method, load_artifact
from tada.methods.freesliders import DEFAULT_FROM_STEP

PIANO = get_concept("piano")
PROMPTS = [PIANO.neutral_prompt("lofi music"), PIANO.neutral_prompt("a lullaby")]
CASES = ("tada-mini", "ace-step-1.5", "stable-audio", "audioldm2")
METHOD = get_method("freesliders")


@pytest.fixture
def setup(mini, tiny_models):
    """(model, generation settings) for a case: the bundled tada-mini or a tiny random family."""

    def get(case: str):
        if case == "tada-mini":
            return mini, {"seconds": 2.0, "steps": 6}
        return tiny_models(case), {"seconds": 1.0, "steps": 4}

    return get


def fit(model, sites=None, out=None, **options):
    return METHOD.fit(model, FitRequest(PIANO, [], {"source": "preset"}, sites=sites, out=out, options=options))


def xattn_layers(model) -> list[str]:
    return [s.alias for s in model.sites.values() if s.kind == "xattn"]


def batch_rows(args: tuple, kwargs: dict) -> int:
    """Rows of a denoiser call's main input (positional in three families, ``hidden_states`` in ACE-Step)."""
    return int((args[0] if args else kwargs["hidden_states"]).shape[0])


def one_line_error(call) -> str:
    with pytest.raises(TadaError) as info:
        call()
    message = str(info.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize("scope", ["global", "localised"])
@pytest.mark.parametrize("case", CASES)
def test_zero_is_exact_signs_differ_removal_restores_and_file_round_trips(case, scope, setup, tmp_path):
    model, settings = setup(case)
    sites = None if scope == "global" else xattn_layers(model)[:2]
    path = tmp_path / "slider.safetensors"
    fitted = fit(model, sites, out=path, from_step=0.25)
    artifact = load_artifact(path)
    assert (artifact.method, artifact.family, artifact.width) == ("freesliders", model.family, model.width)
    assert artifact.sites == fitted.sites == [s.alias for s in model.layer_sites(sites, "xattn_in")]
    assert artifact.settings == {"scope": scope, "from_step": 0.25}
    assert artifact.decorations == PIANO

    plain = model.generate(PROMPTS, **settings).samples
    with artifact.apply(model, 0.0):
        assert np.array_equal(model.generate(PROMPTS, **settings).samples, plain)
    with artifact.apply(model, 2.0):
        up = model.generate(PROMPTS, **settings).samples
    with fitted.apply(model, -2.0):
        down = model.generate(PROMPTS, **settings).samples
    assert np.isfinite(up).all() and np.isfinite(down).all()
    assert not np.array_equal(up, plain) and not np.array_equal(down, plain) and not np.array_equal(up, down)
    assert np.array_equal(model.generate(PROMPTS, **settings).samples, plain)


@pytest.mark.parametrize("case", CASES)
def test_localised_leaves_every_unchosen_layer_input_as_in_the_neutral_run(case, setup):
    model, settings = setup(case)
    layers = xattn_layers(model)
    artifact = fit(model, layers[:2], from_step=0.0)
    unchosen = model.layer_sites(layers[2:], "xattn_in")
    assert_unchosen_inputs_as_neutral(model, artifact, 3.0, unchosen, PROMPTS, settings)


@pytest.mark.parametrize("case", CASES)
def test_extra_cost_is_one_call_of_two_rows_per_clip_per_steered_step(case, setup):
    model, settings = setup(case)
    steps, n = settings["steps"], len(PROMPTS)
    artifact = fit(model, from_step=0.5)
    first_steered = steps // 2
    rows: list[int] = []
    hook = model.denoiser.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(batch_rows(args, kwargs)), with_kwargs=True
    )
    try:
        with artifact.apply(model, 1.0):
            model.generate(PROMPTS, **settings)
            first_run = list(rows)
            rows.clear()
            model.generate(PROMPTS, **settings)  # the decorated prompts' conditioning is cached by now
    finally:
        hook.remove()
    guided = 2 * n  # every family guides at its default scale: (cond, uncond) rows
    steered = [[guided] + ([2 * n] if step >= first_steered else []) for step in range(steps)]
    expected = [row for step in steered for row in step]
    # the first run also reads the decorated prompts' conditioning: one (aborted) guided call on 2n prompts
    assert first_run == [2 * guided] + expected
    assert rows == expected
    assert len(rows) == steps + (steps - first_steered)


def test_without_guidance_the_slider_still_costs_one_call_per_steered_step(mini):
    artifact = fit(mini, from_step=0.5)
    rows: list[int] = []
    hook = mini.denoiser.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    try:
        with artifact.apply(mini, 1.0):
            audio = mini.generate(PROMPTS, seconds=2.0, steps=6, guidance=1.0)
    finally:
        hook.remove()
    assert np.isfinite(audio.samples).all()
    # capture: 2n decorated prompts unguided; then n rows per step, plus 2n rows from the split step (3 of 6) on
    assert rows == [4] + [2] * 3 + [2, 4] * 3


def test_linear_guidance_gets_exactly_alpha_times_positive_minus_negative(mini, monkeypatch):
    """tada-mini guides linearly: the velocity the scheduler receives at a steered step is the neutral
    prompt's guided velocity plus alpha * (v_pos - v_neg), each recomputed here from the prompts."""
    pipe, alpha, guidance = mini.pipeline, 1.5, 4.0
    artifact = fit(mini, from_step=0.5)
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    step = pipe.scheduler.step

    def recording_step(velocity, t, sample, *args, **kwargs):
        seen.append((velocity.clone(), t.clone(), sample.clone()))
        return step(velocity, t, sample, *args, **kwargs)

    monkeypatch.setattr(pipe.scheduler, "step", recording_step)
    with artifact.apply(mini, alpha):
        mini.generate(PROMPTS, seconds=2.0, steps=6, guidance=guidance)

    def velocity(prompts: list[str], x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        states, mask = pipe.encode_prompt(prompts)
        with torch.no_grad():
            return pipe.transformer(x, t.expand(x.shape[0]), encoder_hidden_states=states, encoder_attention_mask=mask)

    for index in (1, 4):  # one plain step, one steered step
        got, t, x = seen[index]
        uncond, cond = velocity([""] * 2, x, t), velocity(PROMPTS, x, t)
        neutral = uncond + guidance * (cond - uncond)
        positive = velocity([PIANO.positive_prompt(p) for p in PROMPTS], x, t)
        negative = velocity([PIANO.negative_prompt(p) for p in PROMPTS], x, t)
        expected = neutral + (alpha * (positive - negative) if index >= 3 else 0.0)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert (expected - neutral).abs().max() > 100 * 1e-4  # the slider term is far above the tolerance


def test_mismatched_artifact_bad_alpha_and_bad_options_fail_in_one_line(mini, tiny_models):
    artifact = fit(mini)
    assert artifact.settings["from_step"] == DEFAULT_FROM_STEP
    other = tiny_models("stable-audio")
    assert "tada-mini" in one_line_error(lambda: artifact.apply(other, 1.0))
    assert "[-10, 10]" in one_line_error(lambda: artifact.apply(mini, 10.5))
    one_line_error(lambda: artifact.apply(mini, float("nan")))
    assert "take no sites option" in one_line_error(lambda: artifact.apply(mini, 1.0, sites="xattn.0"))
    assert "[0, 1)" in one_line_error(lambda: fit(mini, from_step=1.0))
    one_line_error(lambda: fit(mini, from_step="soon"))
    assert "no fit option k" in one_line_error(lambda: fit(mini, k=4))
    bare = Concept("custom", "with piano", "without piano")
    request = FitRequest(bare, [("with piano", "without piano")], {})
    assert "templates" in one_line_error(lambda: METHOD.fit(mini, request))
    assert "xattn" in one_line_error(lambda: fit(mini, sites=["attn.0"]))


def test_sliders_claim_only_an_addition_to_the_denoiser_output(mini):
    artifact = fit(mini)
    assert METHOD.claims(artifact, mini) == {"the denoiser output": "add"}
    switch = get_method("prompt-switch").fit(mini, FitRequest(PIANO, [], {}))
    check_stack(mini, [(artifact, 1.0), (fit(mini, from_step=0.0), -1.0), (switch, 0.5)])


class _Returns(nn.Module):
    """A denoiser stand-in returning a tensor, a tuple or a diffusers output object."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.linear = nn.Linear(3, 3)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor) -> object:
        out = self.linear(sample)
        if self.kind == "tensor":
            return out
        if self.kind == "tuple":
            return (out, "extra")
        return Transformer2DModelOutput(sample=out)


class _AddOne(Intervention):
    rows = "both"

    def edit(self, act, rows, gain, ctx):
        return act + 1.0


@pytest.mark.parametrize("kind", ["tensor", "tuple", "object"])
def test_denoiser_output_hook_keeps_the_kind_of_output(kind):
    denoiser = _Returns(kind)
    engine = HookEngine(denoiser, GuidanceLayout(("uncond", "cond")), lambda: torch.tensor([500.0]))
    x, t = torch.randn(2, 4, 3), torch.full((2,), 500.0)
    with torch.no_grad():
        plain = denoiser(x, t)
        with engine.add({Site("denoiser", "", "output", "denoiser"): _AddOne()}), engine.generation(2):
            steered = denoiser(x, t)
    assert type(steered) is type(plain)
    torch.testing.assert_close(first_output(steered), first_output(plain) + 1.0)
    if kind == "object":
        torch.testing.assert_close(steered.sample, first_output(plain) + 1.0)
    if kind == "tuple":
        assert steered[1] == "extra"
