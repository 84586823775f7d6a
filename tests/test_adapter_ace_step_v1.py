"""The ace-step-v1 adapter on a transformer built in code that is called the way ACE-Step v1 calls its own:
separate conditional and unconditional passes, a guidance interval below 1, and the unconditional pass's
query scaling in blocks 15-19. Every call's step and pass must be what the sampler did, never a count.
When ACE-Step v1's package is installed, the real classes are tried with a tiny config too."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from tada.adapters.ace_step_v1 import ERG_BLOCKS, AceStepV1Adapter, V1Parts
from tada.errors import TadaError
from tada.interventions import AddVector, Capture

WIDTH, BLOCKS, TEXT_WIDTH, INNER = 2560, 24, 768, 16  # ACE-Step v1's width and blocks; tiny inside


class Attention(nn.Module):
    """Shaped like diffusers' Attention where tada looks: ``to_q`` and ``to_out[0]``; cheap in between."""

    def __init__(self, context: int = WIDTH):
        super().__init__()
        self.to_q = nn.Linear(WIDTH, INNER)
        self.to_k = nn.Linear(context, INNER)
        self.to_v = nn.Linear(context, INNER)
        self.to_out = nn.ModuleList([nn.Linear(INNER, WIDTH), nn.Dropout(0.0)])

    def forward(self, hidden_states, encoder_hidden_states=None):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        weights = torch.softmax(self.to_q(hidden_states) @ self.to_k(context).transpose(1, 2) / 4, dim=-1)
        return self.to_out[0](weights @ self.to_v(context))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.cross_attn = Attention(), Attention()

    def forward(self, x, context):
        x = x + self.attn(x)
        return x + self.cross_attn(x, encoder_hidden_states=context)


class FakeV1Transformer(nn.Module):
    """``encode`` and ``decode`` as ACE-Step v1's transformer has them; the context is the speaker token
    then the text tokens, as in ACE-Step v1."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.genre_embedder = nn.Linear(TEXT_WIDTH, WIDTH)
        self.speaker_proj = nn.Linear(512, WIDTH)
        self.proj_in = nn.Linear(8 * 16, WIDTH)
        self.proj_out = nn.Linear(WIDTH, 8 * 16)
        self.transformer_blocks = nn.ModuleList(Block() for _ in range(BLOCKS))
        self.decode_calls = 0

    def encode(self, text, text_mask, speaker, lyric_idx, lyric_mask):
        context = torch.cat([self.speaker_proj(speaker)[:, None], self.genre_embedder(text)], dim=1)
        return context, torch.cat([torch.ones_like(text_mask[:, :1]), text_mask], dim=1)

    def decode(
        self, hidden_states, attention_mask, encoder_hidden_states, encoder_hidden_mask, output_length, timestep
    ):
        self.decode_calls += 1
        b, c, h, f = hidden_states.shape
        x = self.proj_in(hidden_states.reshape(b, c * h, f).transpose(1, 2)) + timestep.reshape(-1, 1, 1) / 1000
        for block in self.transformer_blocks:
            x = block(x, encoder_hidden_states)
        return SimpleNamespace(sample=self.proj_out(x).transpose(1, 2).reshape(b, c, h, f))


def tokenizer():
    from transformers import PreTrainedTokenizerFast

    from tada.adapters.builders import _word_level_backend

    backend = _word_level_backend(("<pad>", "</s>", "<unk>"), "<unk>")
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", model_max_length=256)


TOKENIZER = tokenizer()
EMBEDDINGS = torch.randn(TOKENIZER.vocab_size, TEXT_WIDTH, generator=torch.Generator().manual_seed(7))


def encode_text(prompts):
    """UMT5's part: a state per token (a fixed table here), padded to the longest prompt."""
    batch = TOKENIZER(list(prompts), padding=True, return_tensors="pt")
    return EMBEDDINGS[batch["input_ids"]], batch["attention_mask"]


def decode_audio(latents):
    return latents.mean(dim=(1, 2)).repeat_interleave(4, dim=-1)[:, None].numpy()


@pytest.fixture(scope="module")
def model():
    parts = V1Parts(FakeV1Transformer(), encode_text, decode_audio, tokenizer=TOKENIZER)
    return AceStepV1Adapter(parts, guidance_interval=0.5)


class Calls(Capture):
    """Every call at a site: (step, pass), from the context the engine set."""

    def __init__(self):
        super().__init__(rows="both")
        self.seen = []

    def __call__(self, act, ctx):
        self.seen.append((ctx.step, "cond" if ctx.cond is not None else "uncond", ctx.num_steps))
        assert (ctx.cond is None) != (ctx.uncond is None)  # one pass per call, all of its rows
        return act


QUICK = {"seconds": 0.5, "steps": 10, "guidance": 5.0}


def test_every_call_gets_the_step_and_pass_the_sampler_ran(model):
    calls = Calls()
    with model.engine.add({model.site("xattn.3"): calls}):
        model.generate(["lofi piano", "rock"], seed=1, **QUICK)
    # guidance interval 0.5 of 10 steps: steps 2..6 run both passes, the others the conditional one alone
    expected = []
    for step in range(10):
        expected.append((step, "cond", 10))
        if 2 <= step < 7:
            expected.append((step, "uncond", 10))
    assert calls.seen == expected
    assert [(s, p) for s, p, _ in calls.seen] == model.passes
    assert model.sites["xattn.3"].path == "transformer.transformer_blocks.3.cross_attn"
    assert model.width == WIDTH and model.family == "ace-step-v1"


def test_the_unconditional_pass_perturbation_runs_only_in_that_pass(model):
    perturbed = []

    class Watch(Capture):
        def __call__(self, act, ctx):
            block = model.parts.transformer.transformer_blocks[15]
            perturbed.append(("cond" if ctx.cond is not None else "uncond", bool(block.cross_attn.to_q._forward_hooks)))
            return act

    with model.engine.add({model.site("xattn.15"): Watch(rows="both")}):
        model.generate("lofi", seed=0, **QUICK)
    assert {p for p, on in perturbed if on} == {"uncond"} and {p for p, on in perturbed if not on} == {"cond"}
    assert not any(model.parts.transformer.transformer_blocks[i].attn.to_q._forward_hooks for i in ERG_BLOCKS)


def test_steering_the_conditional_pass_leaves_unconditional_calls_alone(model):
    seen = {}

    class Spy(Capture):
        def __call__(self, act, ctx):
            seen.setdefault((ctx.step, "cond" if ctx.cond is not None else "uncond"), act.clone())
            return act

    def run(steering):
        seen.clear()
        spy = Spy(rows="both")
        with model.engine.add({model.site("xattn.6"): [*steering, spy]}):
            audio = model.generate("lofi", seed=3, **QUICK).samples
        return audio, dict(seen)

    clean, plain = run([])
    steered, up = run([AddVector(torch.ones(WIDTH), 2.0, rows="cond")])
    assert torch.allclose(up[(0, "cond")] - plain[(0, "cond")], torch.full_like(plain[(0, "cond")], 2.0))
    assert not np.array_equal(clean, steered)
    _, unc = run([AddVector(torch.ones(WIDTH), 2.0, rows="uncond")])
    assert torch.equal(unc[(0, "cond")], plain[(0, "cond")]) and torch.equal(unc[(1, "cond")], plain[(1, "cond")])
    assert torch.allclose(unc[(2, "uncond")] - plain[(2, "uncond")], torch.full_like(plain[(2, "uncond")], 2.0))


def test_an_imported_caa_vector_at_alpha_0_is_bitwise_identity(model, tmp_path):
    import pickle
    from collections import defaultdict

    from tada.imports.ace_step_v1 import import_caa

    rng = np.random.default_rng(0)
    sv = {}
    for step in range(30):
        blocks = defaultdict(list)
        for b in range(BLOCKS):
            v = rng.standard_normal(WIDTH).astype(np.float32)
            blocks[f"tf{b}"].append(v / np.linalg.norm(v))
        sv[(step, 0)] = blocks
    folder = tmp_path / "caa"
    folder.mkdir()
    (folder / "sv.pkl").write_bytes(pickle.dumps(sv))
    (folder / "config.json").write_text('{"num_inference_steps": 30, "concept": "piano"}')
    vector = import_caa(folder)["conditional"]
    settings = {"seconds": 0.5, "steps": 6, "guidance": 5.0}  # the table is read at any number of steps
    clean = model.generate("lofi", seed=5, **settings).samples
    with vector.apply(model, 0.0):
        zero = model.generate("lofi", seed=5, **settings).samples
    assert np.array_equal(clean, zero)
    with vector.apply(model, 8.0, sites=["xattn.6", "xattn.7"]):
        steered = model.generate("lofi", seed=5, **settings).samples
    assert not np.array_equal(clean, steered)
    again = model.generate("lofi", seed=5, **settings).samples
    assert np.array_equal(clean, again)  # the handle's removal restored the model


def test_without_the_package_loading_says_how_to_install_it(monkeypatch):
    from tada.adapters import load_model

    if importlib.util.find_spec("acestep") is not None:
        pytest.skip("ACE-Step v1's package is installed here")
    with pytest.raises(TadaError, match="pip install git\\+https://github.com/ace-step/ACE-Step") as caught:
        load_model("ace-step-v1:/models/ace-step-v1")
    assert "\n" not in str(caught.value)


@pytest.mark.skipif(
    importlib.util.find_spec("acestep") is None,
    reason="ACE-Step v1's package (acestep) is not installed: its real classes are not tried here",
)
def test_the_real_transformer_class_with_a_tiny_config():  # pragma: no cover - needs acestep
    from acestep.models.ace_step_transformer import ACEStepTransformer2DModel

    transformer = ACEStepTransformer2DModel(num_layers=2, inner_dim=64, attention_head_dim=16, num_attention_heads=4)
    parts = V1Parts(transformer, encode_text, decode_audio)
    calls = Calls()
    adapter = AceStepV1Adapter(parts, guidance_interval=0.5)
    with adapter.engine.add({adapter.site("xattn.1"): calls}):
        adapter.generate("lofi", seed=0, seconds=0.2, steps=4, guidance=5.0)
    assert [(s, p) for s, p, _ in calls.seen] == adapter.passes


def test_a_published_concept_slider_imports_and_steers_the_v1_adapter(model, tmp_path):
    from conftest import run_cli
    from safetensors.torch import save_file

    from tada.methods import load_artifact

    gen = torch.Generator().manual_seed(0)
    published = {}
    for b in (6, 7):
        for layer in ("attn", "cross_attn"):
            for proj, (fan_in, fan_out) in {
                "to_q": (WIDTH, INNER),
                "to_k": (WIDTH, INNER),
                "to_v": (WIDTH, INNER),
                "to_out.0": (INNER, WIDTH),
            }.items():
                key = f"transformer_blocks.{b}.{layer}.{proj}"
                published[f"{key}.lora_A.weight"] = torch.randn(8, fan_in, generator=gen) * 0.05
                published[f"{key}.lora_B.weight"] = torch.randn(fan_out, 8, generator=gen) * 0.05
    folder = tmp_path / "ace-step-slider-piano"
    folder.mkdir()
    save_file(published, str(folder / "pytorch_lora_weights.safetensors"))
    (folder / "train_config.json").write_text('{"rank": 8, "alpha": 1, "eta": 7, "concept": "piano"}')
    result = run_cli("import", str(folder), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    slider = load_artifact(tmp_path / "out" / "piano.safetensors")
    assert slider.family == "ace-step-v1" and slider.sites == ["xattn.6", "xattn.7"]
    for key, tensor in published.items():
        assert torch.equal(slider.tensors[f"transformer.{key}"], tensor)
    settings = {"seconds": 0.5, "steps": 4, "guidance": 5.0}
    clean = model.generate("lofi", seed=2, **settings).samples
    from tada.methods import steering

    with steering(model, [(slider, 0.0)]):
        assert np.array_equal(model.generate("lofi", seed=2, **settings).samples, clean)
    with steering(model, [(slider, 1.0)]):
        assert not np.array_equal(model.generate("lofi", seed=2, **settings).samples, clean)
    assert np.array_equal(model.generate("lofi", seed=2, **settings).samples, clean)
    (folder / "pytorch_lora_weights.safetensors").unlink()
    save_file(
        {"text_encoder.layer.0.lora_A.weight": torch.zeros(8, 4)}, str(folder / "pytorch_lora_weights.safetensors")
    )
    with pytest.raises(TadaError, match="unexpected tensor 'text_encoder"):
        from tada.imports.ace_step_v1 import import_concept_slider

        import_concept_slider(folder)


def test_a_published_token_embedding_direction_maps_through_the_text_projection(model, tmp_path):
    from tada.imports.ace_step_v1 import import_token_embedding

    direction = torch.randn(TEXT_WIDTH, generator=torch.Generator().manual_seed(3))
    path = tmp_path / "piano_direction.pt"
    torch.save({"direction": direction, "concept": "piano", "layer": "last"}, path)
    artifact = import_token_embedding(path, model)
    mapped = model.parts.transformer.genre_embedder.weight.detach() @ direction
    assert artifact.sites == [f"xattn_in.{i}" for i in range(BLOCKS)]
    assert all(torch.allclose(artifact.tensors[f"direction/xattn_in.{i}"], mapped) for i in range(BLOCKS))
    assert artifact.decorations.generic_word == "instrument"

    seen = {}

    class Context(Capture):
        def __call__(self, act, ctx):
            seen.setdefault(ctx.step, act.clone())
            return act

    from tada.methods import steering

    prompt, settings = "lofi beat, with instrument", {"seconds": 0.5, "steps": 3, "guidance": 5.0}
    with model.engine.add({model.site("xattn_in.4"): Context(rows="both")}):
        clean = model.generate(prompt, seed=1, **settings).samples
    plain = seen[0]
    seen.clear()
    with steering(model, [(artifact, 0.0)]):
        assert np.array_equal(model.generate(prompt, seed=1, **settings).samples, clean)
    with steering(model, [(artifact, 2.0)]), model.engine.add({model.site("xattn_in.4"): Context(rows="both")}):
        steered = model.generate(prompt, seed=1, **settings).samples
    assert not np.array_equal(steered, clean)
    word = TOKENIZER(prompt)["input_ids"].index(TOKENIZER.convert_tokens_to_ids("instrument"))
    delta = seen[0] - plain
    assert torch.allclose(delta[:, 1 + word], 2.0 * mapped.expand(1, -1), atol=1e-4)  # after the speaker token
    others = torch.cat([delta[:, : 1 + word], delta[:, 2 + word :]], dim=1)
    assert torch.equal(others, torch.zeros_like(others))


def test_a_token_embedding_file_that_would_run_code_is_refused(model, tmp_path):
    import os

    from tada.imports.ace_step_v1 import import_token_embedding

    class Runs:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)

    path = tmp_path / "evil_direction.pt"
    torch.save({"direction": Runs()}, path)
    with pytest.raises(TadaError, match="refused or unreadable by torch's restricted loader") as caught:
        import_token_embedding(path, model)
    assert "\n" not in str(caught.value) and not (tmp_path / "ran").exists()
