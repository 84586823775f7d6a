"""Concept Sliders (``concept-slider``): a LoRA whose scale is the slider, trained through the one engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAMILIES, FAST

from tada.concepts import CONCEPTS
from tada.engine import SteeringHandle
from tada.errors import ArtifactError, TadaError
from tada.interventions import Capture
from tada.methods import FitRequest, MethodArtifact, check_stack, get_method, load_artifact
from tada.methods import concept_slider as cs

PIANO = CONCEPTS["piano"]
PAIRS = [PIANO.pair(base) for base in ("lofi music", "pop music")]
MINI = {"seconds": 2.0, "steps": 6}
PROMPT = "lofi music"


@pytest.fixture(scope="module")
def models(tiny_models, mini):
    """The three tiny random models, and tada-mini with its shipped weights."""
    return lambda family: mini if family == "tada-mini" else tiny_models(family)


def settings_for(family: str) -> dict:
    return MINI if family == "tada-mini" else FAST


def random_artifact(model, sites=None, seed: int = 0) -> MethodArtifact:
    """A slider with a random, non-zero LoRA on the method's own targets (no training: cheap)."""
    targets = cs.projection_paths(model, cs.attention_layers(model, sites))
    lora = cs.LoRA.for_modules(model.denoiser, targets, rank=4, lora_alpha=1.0, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for up in lora.lora_B:
            up.copy_(torch.randn(up.shape, generator=generator) * 0.5)
    aliases = [s.alias for s in model.layer_sites(sites, "xattn")]
    settings = {"scope": "global" if sites is None else "localised", "lora_alpha": 1.0, "target_modules": targets}
    return MethodArtifact("concept-slider", model.family, model.width, aliases, PIANO, lora.tensors(), settings)


def request(sites=None, **options) -> FitRequest:
    return FitRequest(PIANO, PAIRS, {"name": "test"}, sites=sites, progress=False, options=options, **FAST)


def hooked_modules(model) -> list[str]:
    return [path for path, module in model.denoiser.named_modules() if module._forward_hooks]


@pytest.mark.parametrize("family", FAMILIES)
def test_alpha_zero_and_removal_are_exact(models, family):
    model = models(family)
    gen = settings_for(family)
    artifact = random_artifact(model)
    modules, keys = [n for n, _ in model.denoiser.named_modules()], list(model.denoiser.state_dict())
    hooked = hooked_modules(model)
    plain = model.generate(PROMPT, **gen).samples
    with artifact.apply(model, 0.0):
        assert np.array_equal(model.generate(PROMPT, **gen).samples, plain)
    with artifact.apply(model, 2.0):
        up = model.generate(PROMPT, **gen).samples
        # hooks, not replaced modules: the model's tree and state dict stay as they were while steering
        assert [n for n, _ in model.denoiser.named_modules()] == modules
        assert list(model.denoiser.state_dict()) == keys
    with artifact.apply(model, -2.0):
        down = model.generate(PROMPT, **gen).samples
    assert not np.array_equal(up, plain) and not np.array_equal(down, plain) and not np.array_equal(up, down)
    assert np.array_equal(model.generate(PROMPT, **gen).samples, plain)
    assert [n for n, _ in model.denoiser.named_modules()] == modules and list(model.denoiser.state_dict()) == keys
    assert hooked_modules(model) == hooked


def test_lora_at_scale_zero_is_the_base_model(models):
    model = models("stable-audio")
    lora = cs.LoRA.from_tensors(random_artifact(model).tensors, 1.0)
    plain = model.generate(PROMPT, **FAST).samples
    detach = lora.attach(model.denoiser)
    try:
        with lora.scaled(0.0):
            assert np.array_equal(model.generate(PROMPT, **FAST).samples, plain)
        assert not np.array_equal(model.generate(PROMPT, **FAST).samples, plain)
    finally:
        detach()
    assert np.array_equal(model.generate(PROMPT, **FAST).samples, plain)


@pytest.mark.parametrize("family", FAMILIES)
def test_localised_lora_stays_in_the_chosen_blocks(models, family):
    model = models(family)
    gen = settings_for(family)
    xattn = model.layer_sites(None, "xattn")
    chosen, unchosen = xattn[-1:], xattn[:-1]
    artifact = random_artifact(model, sites=[chosen[0].alias])
    block = chosen[0].path.rpartition(".")[0]
    targets = cs.lora_paths(artifact.tensors)
    assert targets and all(path.startswith(block + ".") for path in targets)
    assert {p.rpartition(".")[0] for p in targets} >= {chosen[0].path}
    assert not any(path.startswith(site.path + ".") for site in unchosen for path in targets)

    unchosen_inputs = [model.site(s.alias.replace("xattn.", "xattn_in.")) for s in unchosen]

    def capture_inputs() -> tuple[np.ndarray, dict[str, dict[int, torch.Tensor]]]:
        captures = {site: Capture(rows="both", reduce="full") for site in unchosen_inputs}
        with model.engine.add(captures):
            audio = model.generate(PROMPT, **gen).samples
        return audio, {site.alias: c.records for site, c in captures.items()}

    plain_audio, plain = capture_inputs()
    hooked = hooked_modules(model)
    with artifact.apply(model, 3.0):
        assert sorted(set(hooked_modules(model)) - set(hooked)) == sorted(targets)
        steered_audio, steered = capture_inputs()
    assert not np.array_equal(plain_audio, steered_audio)
    for alias, records in plain.items():
        assert records.keys() == steered[alias].keys() and records
        assert all(torch.equal(records[step], steered[alias][step]) for step in records), alias


def test_fit_global_and_localised_targets(models):
    model = models("ace-step-1.5")
    method = get_method("concept-slider")
    global_ = method.fit(model, request(train_steps=1))
    layers = cs.attention_layers(model, None)
    assert len(cs.lora_paths(global_.tensors)) == 4 * len(layers)
    assert {s.kind for s in layers} == {"xattn", "attn"}
    assert global_.sites == [s.alias for s in model.layer_sites(None, "xattn")]
    local = method.fit(model, request(sites=["xattn.1"], train_steps=1))
    block = model.site("xattn.1").path.rpartition(".")[0]
    assert local.sites == ["xattn.1"] and local.scope == "localised"
    paths = cs.lora_paths(local.tensors)
    assert sorted(paths) == sorted(local.settings["target_modules"])
    assert len(paths) == 8 and all(p.startswith(block + ".") for p in paths)  # its self- and cross-attention
    for setting in ("rank", "lora_alpha", "eta", "train_steps", "lr", "loss_first", "loss_last", "loss_curve"):
        assert setting in local.settings
    assert local.settings["rank"] == 8 and local.settings["eta"] == 7.0
    assert local.tensors[paths[0] + ".lora_A.weight"].shape[0] == 8


def test_round_trip(models, tmp_path):
    model = models("audioldm2")
    artifact = random_artifact(model)
    path = artifact.save(tmp_path / "slider.safetensors")
    loaded = load_artifact(path)
    assert isinstance(loaded, MethodArtifact) and loaded.method == "concept-slider"
    assert loaded.settings == artifact.settings and loaded.sites == artifact.sites
    assert loaded.decorations == PIANO
    assert loaded.tensors.keys() == artifact.tensors.keys()
    assert all(torch.equal(loaded.tensors[k], v) for k, v in artifact.tensors.items())
    with artifact.apply(model, 1.5):
        first = model.generate(PROMPT, **FAST).samples
    with loaded.apply(model, 1.5):
        assert np.array_equal(model.generate(PROMPT, **FAST).samples, first)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


def test_mismatches_and_bad_alphas_are_one_line(models):
    stable, ace = models("stable-audio"), models("ace-step-1.5")
    hooked = hooked_modules(stable)
    artifact = random_artifact(stable)
    with pytest.raises(ArtifactError) as exc:
        artifact.apply(ace, 1.0)
    assert "stable-audio" in one_line(exc)
    moved = MethodArtifact(**{**artifact.__dict__, "tensors": {"x" + k: v for k, v in artifact.tensors.items()}})
    with pytest.raises(ArtifactError) as exc:
        moved.apply(stable, 1.0)
    assert "does not have" in one_line(exc)
    key = next(k for k in artifact.tensors if k.endswith("lora_A.weight"))
    wide = dict(artifact.tensors, **{key: torch.zeros(4, 999)})
    with pytest.raises(ArtifactError) as exc:
        MethodArtifact(**{**artifact.__dict__, "tensors": wide}).apply(stable, 0.0)
    assert "999" in one_line(exc)
    broken = {k: v for k, v in artifact.tensors.items() if k != key}
    with pytest.raises(ArtifactError) as exc:
        MethodArtifact(**{**artifact.__dict__, "tensors": broken}).apply(stable, 1.0)
    one_line(exc)
    for alpha in (10.5, -11.0, float("nan")):
        with pytest.raises(TadaError) as exc:
            artifact.apply(stable, alpha)
        assert "[-10, 10]" in one_line(exc)
    with pytest.raises(TadaError) as exc:
        artifact.apply(stable, 1.0, sites="xattn.0")
    one_line(exc)
    assert hooked_modules(stable) == hooked


@pytest.mark.parametrize(
    "options", [{"train_steps": 0}, {"lr": -1.0}, {"rank": 0}, {"eta": float("inf")}, {"strength": 2}]
)
def test_bad_fit_options_are_one_line(models, options):
    with pytest.raises(TadaError) as exc:
        get_method("concept-slider").fit(models("stable-audio"), request(**options))
    one_line(exc)


def test_sliders_stack_and_claim_weights(models):
    model = models("stable-audio")
    a, b = random_artifact(model, seed=0), random_artifact(model, seed=1)
    claims = get_method("concept-slider").claims(a, model)
    assert set(claims.values()) == {"add"}
    assert all(k.startswith("the weights of ") for k in claims) and len(claims) == len(a.tensors) // 2
    check_stack(model, [(a, 1.0), (b, -1.0)])  # both add to the same weights: they compose


def test_handle_undo_runs_once_last_first(models):
    model = models("stable-audio")
    calls: list[str] = []
    handle = SteeringHandle(model.engine, [], undo=[lambda: calls.append("a"), lambda: calls.append("b")])
    with handle:
        pass
    handle.remove()
    assert calls == ["b", "a"]


def test_training_resumes_from_its_checkpoint(models, tmp_path, monkeypatch):
    model = models("stable-audio")
    method = get_method("concept-slider")
    options = {"train_steps": 4, "checkpoint_every": 2, "lr": 1e-2}
    uninterrupted = method.fit(model, request(**options))
    trainable, hooked = [p.requires_grad for p in model.denoiser.parameters()], hooked_modules(model)

    calls = {"n": 0}
    real_loss = cs.slider_loss

    def killed_at_the_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    work = tmp_path / "work"
    out = tmp_path / "slider.safetensors"
    monkeypatch.setattr(cs, "slider_loss", killed_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        method.fit(model, FitRequest(**{**request(**options).__dict__, "work_dir": work, "out": out}))
    assert (work / f"{cs.CHECKPOINT}.safetensors").is_file() and not out.exists()
    assert hooked_modules(model) == hooked and [p.requires_grad for p in model.denoiser.parameters()] == trainable

    calls["n"] = -100  # no more kills; count the iterations the resumed run does
    resumed = method.fit(model, FitRequest(**{**request(**options).__dict__, "work_dir": work, "out": out}))
    assert calls["n"] == -100 + 2  # iterations 3 and 4 only
    assert not work.exists() and out.is_file()
    assert resumed.settings == uninterrupted.settings
    assert all(torch.equal(resumed.tensors[k], v) for k, v in uninterrupted.tensors.items())


def test_loss_decreases_on_tada_mini(models):
    model = models("tada-mini")
    fit = FitRequest(PIANO, PAIRS, {}, progress=False, options={"train_steps": 4, "lr": 1e-2}, **MINI)
    artifact = get_method("concept-slider").fit(model, fit)
    trained = cs.LoRA.from_tensors(artifact.tensors, 1.0)
    untrained = cs.LoRA.for_modules(model.denoiser, trained.paths, 8, 1.0, seed=0)  # B = 0: the base model
    generation = fit.generation(model)
    text_sites = model.layer_sites(None, "xattn_in")
    points = []
    for iteration in range(4):  # the training points, x_t from the base model
        pair, step, noise = cs.draw(0, iteration, len(PAIRS), generation["steps"])
        call = cs.sample_point(model, PAIRS[pair][0], step, noise, generation)
        points.append((call, cs.capture_conditioning(model, [*PAIRS[pair], ""], text_sites, **generation)))

    def loss(lora: cs.LoRA) -> float:
        detach = lora.attach(model.denoiser)
        try:
            return sum(cs.slider_loss(model, lora, call, cond, 7.0).item() for call, cond in points) / len(points)
        finally:
            detach()

    before, after = loss(untrained), loss(trained)
    print(f"slider loss at the training points: {before:.4f} untrained, {after:.4f} after 4 iterations")
    assert after < 0.9 * before, (before, after)


def test_peft_reads_the_slider_as_its_own_lora(models):
    """The artifact is an ordinary peft LoRA: injected with peft at scale 1, it generates what tada's slider does."""
    import copy

    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    model = models("stable-audio")
    artifact = random_artifact(model, sites=["xattn.1"])
    with artifact.apply(model, 1.0):
        steered = model.generate(PROMPT, **FAST).samples
    config = LoraConfig(r=4, lora_alpha=1.0, target_modules=artifact.settings["target_modules"])
    with_peft = inject_adapter_in_model(config, copy.deepcopy(model.denoiser))
    result = set_peft_model_state_dict(with_peft, artifact.tensors)
    assert not result.unexpected_keys
    original, model.pipeline.transformer = model.pipeline.transformer, with_peft
    try:
        by_peft = model.generate(PROMPT, **FAST).samples
    finally:
        model.pipeline.transformer = original
    assert not np.array_equal(by_peft, model.generate(PROMPT, **FAST).samples)
    np.testing.assert_allclose(by_peft, steered, rtol=0, atol=1e-5)
