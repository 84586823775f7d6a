import os

os.environ["HF_HUB_OFFLINE"] = "1"

from typing import Any  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from tada.adapters.builders import FAMILIES, build_pipeline  # noqa: E402

# the diffusers families; tada-mini's own pipeline is tested in test_mini.py
FAMILIES = tuple(f for f in FAMILIES if f != "tada-mini")

PROMPT = "Happy jazz song with female vocal and piano, 120 BPM"
PROMPT_TOKENS = ["happy", "jazz", "song", "with", "female", "vocal", "and", "piano", ",", "1", "2", "0", "bpm"]

# 2 s at each tiny model's output rate (1600 Hz): stereo for the Oobleck VAEs, mono vocoder.
EXPECTED_SHAPES = {
    "ace-step-1.5": (1, 2, 3200),
    "stable-audio": (1, 2, 3200),
    "audioldm2": (1, 3200),
}


def _generate(pipe: Any, family: str) -> torch.Tensor:
    """A 2 s clip in 4 steps from a fixed generator."""
    generator = torch.Generator().manual_seed(0)
    if family == "ace-step-1.5":
        kwargs = {"audio_duration": 2.0, "guidance_scale": 7.0, "max_text_length": 64}
    elif family == "stable-audio":
        kwargs = {"audio_end_in_s": 2.0, "guidance_scale": 7.0}
    else:
        kwargs = {"audio_length_in_s": 2.0, "guidance_scale": 3.5}
    audio = pipe(PROMPT, num_inference_steps=4, generator=generator, **kwargs).audios
    return torch.as_tensor(audio)


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request: pytest.FixtureRequest) -> tuple[str, Any]:
    return request.param, build_pipeline(request.param)


def test_unknown_family_or_size_names_the_choices() -> None:
    with pytest.raises(ValueError, match="ace-step-1.5, stable-audio, audioldm2") as family:
        build_pipeline("musicgen")
    with pytest.raises(ValueError, match="tiny, full") as size:
        build_pipeline("audioldm2", size="small")
    assert "\n" not in str(family.value) and "\n" not in str(size.value)


def test_tiny_pipeline_is_ready_to_run(tiny: tuple[str, Any]) -> None:
    _, pipe = tiny
    modules = [c for c in pipe.components.values() if isinstance(c, nn.Module)]
    assert modules and all(not m.training for m in modules)
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for m in modules for p in m.parameters())
    with pipe.progress_bar(total=1) as bar:
        assert bar.disable


def test_tiny_generates_a_finite_two_second_clip(tiny: tuple[str, Any]) -> None:
    family, pipe = tiny
    audio = _generate(pipe, family)
    assert tuple(audio.shape) == EXPECTED_SHAPES[family]
    assert torch.isfinite(audio).all()
    assert audio.std() > 0


def test_same_seed_gives_bitwise_identical_audio(tiny: tuple[str, Any]) -> None:
    family, pipe = tiny
    again = build_pipeline(family, seed=0)
    assert torch.equal(_generate(pipe, family), _generate(again, family))
    other = build_pipeline(family, seed=1)
    ours, theirs = pipe.components, other.components
    denoiser = "unet" if family == "audioldm2" else "transformer"
    assert not all(
        torch.equal(a, b) for a, b in zip(ours[denoiser].state_dict().values(), theirs[denoiser].state_dict().values())
    )


def _text_tokenizers(family: str, pipe: Any) -> list[tuple[Any, nn.Module]]:
    """Each tokenizer with the text encoder whose embedding table its ids index."""
    if family == "audioldm2":
        return [(pipe.tokenizer, pipe.text_encoder.text_model), (pipe.tokenizer_2, pipe.text_encoder_2)]
    return [(pipe.tokenizer, pipe.text_encoder)]


def test_tokenizers_map_a_music_prompt_to_known_ids(tiny: tuple[str, Any]) -> None:
    family, pipe = tiny
    for tokenizer, encoder in _text_tokenizers(family, pipe):
        vocab = tokenizer.get_vocab()
        ids = tokenizer(PROMPT, add_special_tokens=False).input_ids
        assert ids == [vocab[token] for token in PROMPT_TOKENS]
        assert tokenizer.decode(ids) == " ".join(PROMPT_TOKENS)
        assert tokenizer("zyxwv", add_special_tokens=False).input_ids == [tokenizer.unk_token_id]
        assert max(vocab.values()) < encoder.get_input_embeddings().num_embeddings


def test_ace_step_tokenizer_handles_the_prompt_template() -> None:
    pipe = build_pipeline("ace-step-1.5")
    text, lyrics = pipe._format_prompt(PROMPT, lyrics="[verse]\nLove tonight", audio_duration=2.0)
    for formatted in (text, lyrics):
        tokens = pipe.tokenizer.convert_ids_to_tokens(pipe.tokenizer(formatted).input_ids)
        assert pipe.tokenizer.unk_token not in tokens
        assert tokens.count("<|endoftext|>") == 1 and "\n" in tokens and "#" in tokens
    batch = pipe.tokenizer(["jazz", text], padding="longest", return_tensors="pt")
    assert batch.input_ids.shape == batch.attention_mask.shape and batch.attention_mask[0].sum() == 1


def test_t5_tokenizers_pad_to_max_length() -> None:
    pipe = build_pipeline("stable-audio")
    ids = pipe.tokenizer(PROMPT, padding="max_length", max_length=pipe.tokenizer.model_max_length).input_ids
    assert len(ids) == pipe.tokenizer.model_max_length == 64
    assert ids[len(PROMPT_TOKENS)] == pipe.tokenizer.eos_token_id and ids[-1] == pipe.tokenizer.pad_token_id


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Published sizes. ACE-Step 1.5's "2B" is the DiT (1.58B) plus its condition encoder (0.61B).
FULL_SIZES = {
    "ace-step-1.5": {"transformer": 1.58e9, "condition_encoder": 0.61e9, "text_encoder": 0.60e9},
    "stable-audio": {"transformer": 1.05e9, "text_encoder": 0.11e9},
    "audioldm2": {"unet": 0.35e9, "text_encoder_2": 0.34e9, "language_model": 0.124e9},
}


@pytest.mark.parametrize("family", FAMILIES)
def test_full_config_builds_on_meta_with_published_sizes(family: str) -> None:
    with torch.device("meta"):
        pipe = build_pipeline(family, size="full", dtype=torch.bfloat16)
    modules = {name: c for name, c in pipe.components.items() if isinstance(c, nn.Module)}
    assert all(p.is_meta and p.dtype == torch.bfloat16 for m in modules.values() for p in m.parameters())
    for name, expected in FULL_SIZES[family].items():
        assert _count(modules[name]) == pytest.approx(expected, rel=0.1), name
    if family == "ace-step-1.5":
        dit = _count(modules["transformer"]) + _count(modules["condition_encoder"])
        assert dit == pytest.approx(2.0e9, rel=0.1)
