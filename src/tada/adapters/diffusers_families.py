"""ACE-Step 1.5, Stable Audio Open, AudioLDM2 and tada-mini through their diffusers-style pipelines.

One adapter class serves all four; a :class:`FamilySpec` holds the few facts that
differ (pipeline class, denoiser attribute, how block paths name a location, guidance
order, the call's keyword for duration). Nothing about hooks lives here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..context import GuidanceLayout
from ..engine import Site
from ..errors import TadaError
from .base import Adapter, GeneratedAudio, PromptToken


@dataclass(frozen=True)
class FamilySpec:
    name: str
    pipeline_class: str
    denoiser_attr: str
    attention_path: re.Pattern[str]
    locate: Callable[[re.Match[str]], str]
    guidance_order: tuple[str, str]
    width: Callable[[nn.Module], int]
    call_kwargs: Callable[[float, int, float, int], dict[str, Any]]
    encode: Callable[[Any, list[str]], dict[str, torch.Tensor]]
    sample_rate: Callable[[Any], int]
    default_steps: int
    default_guidance: float
    # where the prompt's tokens land in the cross-attention text input (see Adapter.prompt_tokens)
    prompt_tokens: Callable[[Any, list[str]], list[list[PromptToken]]]
    extra: dict[str, Any] = field(default_factory=dict)
    # whether the cross-attention layer at a block path reads those word-aligned states
    reads_prompt_tokens: Callable[[nn.Module, str], bool] = lambda denoiser, path: True


def _block_index(m: re.Match[str]) -> str:
    return m.group("block")


def _unet_location(m: re.Match[str]) -> str:
    part = m.group("part")
    where = "mid" if part is None else f"{part}{m.group('b')}"
    depth = m.group("k")
    return f"{where}.{m.group('j')}" + (f".{depth}" if depth != "0" else "")


def _encode_ace_step(pipe: Any, prompts: list[str]) -> dict[str, torch.Tensor]:
    text, text_mask, lyric, lyric_mask = pipe.encode_prompt(
        prompt=prompts, lyrics=[""] * len(prompts), device=pipe.transformer.device
    )
    return {
        "text_hidden_states": text,
        "text_attention_mask": text_mask,
        "lyric_hidden_states": lyric,
        "lyric_attention_mask": lyric_mask,
    }


def _encode_stable_audio(pipe: Any, prompts: list[str]) -> dict[str, torch.Tensor]:
    embeds = pipe.encode_prompt(prompts, pipe.transformer.device, do_classifier_free_guidance=False)
    return {"prompt_embeds": embeds}


def _encode_audioldm2(pipe: Any, prompts: list[str]) -> dict[str, torch.Tensor]:
    embeds, mask, generated = pipe.encode_prompt(
        prompts, pipe.unet.device, num_waveforms_per_prompt=1, do_classifier_free_guidance=False
    )
    return {"prompt_embeds": embeds, "attention_mask": mask, "generated_prompt_embeds": generated}


def _tokens_in(
    tokenizer: Any, texts: Sequence[str], starts: Sequence[int], prompts: Sequence[str], max_length: int, shift: int = 0
) -> list[list[PromptToken]]:
    """The tokens of each ``prompts[i]``, which sits in ``texts[i]`` from character ``starts[i]``;
    token ``k`` of the text lands at position ``shift + k``. Special tokens (no characters) are left out."""
    if not getattr(tokenizer, "is_fast", False):
        raise TadaError(f"{type(tokenizer).__name__} gives no character offsets; cannot tell where prompt words land")
    encoded = tokenizer(list(texts), return_offsets_mapping=True, truncation=True, max_length=max_length)
    out = []
    for offsets, start, prompt in zip(encoded["offset_mapping"], starts, prompts):
        end = start + len(prompt)
        out.append(
            [(shift + k, a - start, b - start) for k, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
        )
    return out


def _as_encoded(tokenizer: Any, prompts: list[str], max_length: int) -> list[list[PromptToken]]:
    """For families whose layers read the text encoder's states token for token (any padding comes after them)."""
    return _tokens_in(tokenizer, prompts, [0] * len(prompts), prompts, max_length)


def _ace_step_tokens(pipe: Any, prompts: list[str]) -> list[list[PromptToken]]:
    """The prompt is the caption of the pipeline's SFT template; the condition encoder packs each row's
    valid tokens first, in the order lyric tokens, one timbre token (a reference clip, the silence latent
    when none is given), text tokens. So a text token's position is its index plus the lyric tokens plus one
    (the adapter generates with empty lyrics, so every row has the same lyric tokens)."""
    sentinel = "\x00"
    head, empty_lyrics = pipe._format_prompt(sentinel)
    head = head.partition(sentinel)[0]
    texts = [pipe._format_prompt(p)[0] for p in prompts]
    if any(text[len(head) : len(head) + len(p)] != p for text, p in zip(texts, prompts)):
        raise TadaError("ACE-Step's prompt template no longer puts the caption where tada expects it")
    # 2048 and 256 are the pipeline's max_lyric_length and max_text_length, which the adapter leaves as they are
    lyric_tokens = len(pipe.tokenizer(empty_lyrics, truncation=True, max_length=2048)["input_ids"])
    return _tokens_in(pipe.tokenizer, texts, [len(head)] * len(prompts), prompts, 256, shift=lyric_tokens + 1)


def _stable_audio_tokens(pipe: Any, prompts: list[str]) -> list[list[PromptToken]]:
    # T5 states padded to the tokenizer's length, then the start and end second tokens
    return _as_encoded(pipe.tokenizer, prompts, pipe.tokenizer.model_max_length)


def _audioldm2_tokens(pipe: Any, prompts: list[str]) -> list[list[PromptToken]]:
    # the second text encoder's (T5's) states reach the layers that read encoder_hidden_states_1 unchanged
    return _as_encoded(pipe.tokenizer_2, prompts, pipe.tokenizer_2.model_max_length)


def _audioldm2_reads_t5(denoiser: nn.Module, path: str) -> bool:
    """diffusers' AudioLDM2 blocks give attention ``j`` the T5 states when ``j``'s index within its group
    is above 1; the others read the GPT-2 generated embeddings, which do not line up with the prompt's words."""
    block, _, rest = path.partition(".attentions.")
    group = len(denoiser.get_submodule(block).cross_attention_dim)
    return int(rest.split(".")[0]) % group > 1


ACE_STEP = FamilySpec(
    name="ace-step-1.5",
    pipeline_class="AceStepPipeline",
    denoiser_attr="transformer",
    attention_path=re.compile(r"^layers\.(?P<block>\d+)\.(?P<attn>self_attn|cross_attn)$"),
    locate=_block_index,
    guidance_order=("cond", "uncond"),
    width=lambda d: int(d.config.hidden_size),
    call_kwargs=lambda s, n, g, b: {
        "audio_duration": s,
        "num_inference_steps": n,
        "guidance_scale": g,
        "lyrics": [""] * b,
    },
    encode=_encode_ace_step,
    sample_rate=lambda p: int(p.sample_rate),
    default_steps=8,
    default_guidance=7.0,
    prompt_tokens=_ace_step_tokens,
)

STABLE_AUDIO = FamilySpec(
    name="stable-audio",
    pipeline_class="StableAudioPipeline",
    denoiser_attr="transformer",
    attention_path=re.compile(r"^transformer_blocks\.(?P<block>\d+)\.(?P<attn>attn1|attn2)$"),
    locate=_block_index,
    guidance_order=("uncond", "cond"),
    width=lambda d: int(d.config.num_attention_heads * d.config.attention_head_dim),
    call_kwargs=lambda s, n, g, b: {"audio_end_in_s": s, "num_inference_steps": n, "guidance_scale": g},
    encode=_encode_stable_audio,
    sample_rate=lambda p: int(p.vae.sampling_rate),
    default_steps=100,
    default_guidance=7.0,
    prompt_tokens=_stable_audio_tokens,
)

AUDIOLDM2 = FamilySpec(
    name="audioldm2",
    pipeline_class="AudioLDM2Pipeline",
    denoiser_attr="unet",
    attention_path=re.compile(
        r"^(?:(?P<part>down|up)_blocks\.(?P<b>\d+)|mid_block)\.attentions\.(?P<j>\d+)"
        r"\.transformer_blocks\.(?P<k>\d+)\.(?P<attn>attn1|attn2)$"
    ),
    locate=_unet_location,
    guidance_order=("uncond", "cond"),
    width=lambda d: int(d.config.block_out_channels[-1]),
    call_kwargs=lambda s, n, g, b: {"audio_length_in_s": s, "num_inference_steps": n, "guidance_scale": g},
    encode=_encode_audioldm2,
    sample_rate=lambda p: int(p.vocoder.config.sampling_rate),
    default_steps=200,
    default_guidance=3.5,
    prompt_tokens=_audioldm2_tokens,
    reads_prompt_tokens=_audioldm2_reads_t5,
)


def _encode_tada_mini(pipe: Any, prompts: list[str]) -> dict[str, torch.Tensor]:
    states, mask = pipe.encode_prompt(prompts)
    return {"encoder_hidden_states": states, "encoder_attention_mask": mask}


def _tada_mini_tokens(pipe: Any, prompts: list[str]) -> list[list[PromptToken]]:
    # MiniLM's token states, layer-normed per token inside the transformer
    from ..text_encoder import MAX_TOKENS, load_minilm

    return _as_encoded(load_minilm()[0], prompts, MAX_TOKENS)


TADA_MINI = FamilySpec(
    name="tada-mini",
    pipeline_class="tada.mini.pipeline:TadaMiniPipeline",
    denoiser_attr="transformer",
    attention_path=re.compile(r"^blocks\.(?P<block>\d+)\.(?P<attn>attn1|attn2)$"),
    locate=_block_index,
    guidance_order=("uncond", "cond"),
    width=lambda d: int(d.config.width),
    call_kwargs=lambda s, n, g, b: {"audio_length_in_s": s, "num_inference_steps": n, "guidance_scale": g},
    encode=_encode_tada_mini,
    sample_rate=lambda p: int(p.sample_rate),
    default_steps=30,
    default_guidance=4.0,
    extra={"default_seconds": 5.0},
    prompt_tokens=_tada_mini_tokens,
)

FAMILY_SPECS: dict[str, FamilySpec] = {s.name: s for s in (ACE_STEP, STABLE_AUDIO, AUDIOLDM2, TADA_MINI)}


def _pipeline_class(name: str) -> Any:
    """A diffusers pipeline class by name, or ``module:Class`` for one defined elsewhere."""
    import importlib

    if ":" in name:
        module, _, cls = name.partition(":")
        return getattr(importlib.import_module(module), cls)
    import diffusers

    return getattr(diffusers, name)


class DiffusersAdapter(Adapter):
    """Any of the diffusers audio pipelines described by a :class:`FamilySpec`."""

    def __init__(self, spec: FamilySpec, pipeline: Any, source: str = ""):
        super().__init__()
        self.spec = spec
        self.family = spec.name
        self.pipeline = pipeline
        self.source = source
        self.layout = GuidanceLayout(spec.guidance_order)
        self.default_steps = spec.default_steps
        self.default_guidance = spec.default_guidance
        self.default_seconds = float(spec.extra.get("default_seconds", self.default_seconds))

    @classmethod
    def from_pretrained(
        cls, family: str, path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu"
    ) -> DiffusersAdapter:
        """Load a diffusers-format pipeline from a local directory (or a cached hub id)."""
        spec = FAMILY_SPECS[family]
        local = Path(path).expanduser()
        looks_local = str(path).startswith(("/", ".", "~")) or "/" not in str(path) or str(path).count("/") > 1
        if looks_local and not local.is_dir():
            raise TadaError(f"no model directory at {path}")
        pipeline_cls = _pipeline_class(spec.pipeline_class)
        try:
            pipe = pipeline_cls.from_pretrained(str(local) if local.exists() else str(path), torch_dtype=dtype)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TadaError(f"cannot load {family} weights from {path}: {first}") from None
        pipe.set_progress_bar_config(disable=True)
        return cls(spec, pipe.to(device), source=str(path))

    @classmethod
    def random(
        cls, family: str, size: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32, device: str = "cpu"
    ) -> DiffusersAdapter:
        """The family's architecture with random weights (``tiny`` for tests, ``full`` for timing)."""
        from .builders import build_pipeline

        pipe = build_pipeline(family, size=size, seed=seed, dtype=dtype)
        return cls(FAMILY_SPECS[family], pipe.to(device), source=f"random-{size}:{family}")

    @property
    def denoiser(self) -> nn.Module:
        return getattr(self.pipeline, self.spec.denoiser_attr)

    @property
    def width(self) -> int:
        return self.spec.width(self.denoiser)

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate(self.pipeline)

    @contextmanager
    def quiet(self) -> Iterator[None]:
        saved = dict(getattr(self.pipeline, "_progress_bar_config", {}))
        self.pipeline.set_progress_bar_config(**{**saved, "disable": True})
        try:
            yield
        finally:
            self.pipeline._progress_bar_config = saved

    def scheduler_timesteps(self) -> torch.Tensor:
        return self.pipeline.scheduler.timesteps

    def list_sites(self) -> list[Site]:
        sites: list[Site] = []
        for path, module in self.denoiser.named_modules():
            match = self.spec.attention_path.match(path)
            if match is None:
                continue
            loc = self.spec.locate(match)
            if getattr(module, "is_cross_attention", False):
                sites.append(Site(f"xattn.{loc}", path, "output", "xattn"))
                sites.append(Site(f"xattn_in.{loc}", path, "encoder_hidden_states", "xattn_in", ("attention_mask",)))
            else:
                prefix = "attn" if match.group("attn") in ("attn1", "self_attn") else "attn2"
                sites.append(Site(f"{prefix}.{loc}", path, "output", "attn"))
        return sites

    def prompt_tokens(self, prompts: Sequence[str]) -> list[list[PromptToken]]:
        return self.spec.prompt_tokens(self.pipeline, list(prompts))

    def reads_prompt_tokens(self, site: Site) -> bool:
        return super().reads_prompt_tokens(site) and self.spec.reads_prompt_tokens(self.denoiser, site.path)

    def encode_prompts(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return self.spec.encode(self.pipeline, list(prompts))

    def _generate(
        self, prompts: list[str], generators: list[torch.Generator], seconds: float, steps: int, guidance: float
    ) -> GeneratedAudio:
        out = self.pipeline(
            prompt=prompts,
            generator=generators,
            output_type="pt",
            return_dict=True,
            **self.spec.call_kwargs(seconds, steps, guidance, len(prompts)),
        )
        audio = out.audios
        audio = audio if isinstance(audio, torch.Tensor) else torch.as_tensor(np.asarray(audio))
        if audio.ndim == 2:
            audio = audio[:, None, :]
        return GeneratedAudio(audio.detach().float().cpu().numpy(), self.sample_rate)
