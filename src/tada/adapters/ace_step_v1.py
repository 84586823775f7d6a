"""ACE-Step v1 (3.5B), the paper's model, as ``ace-step-v1:PATH`` (a checkpoint directory).

ACE-Step v1 is not a diffusers pipeline: its sampler runs the conditional and the unconditional guidance
passes as **separate calls** of its transformer (``transformer.decode``), scales the queries of blocks
15-19 by 0.01 during the unconditional pass ("ERG"), may run single-pass steps outside a guidance interval,
and combines the passes by APG. Steering that counts calls cannot follow that; this adapter runs the
sampler itself and declares every call's pass to the engine (:meth:`HookEngine.guidance_pass`), so
intervals, the perturbation and any number of steps keep the context right.

The model's parts (:class:`V1Parts`) come from ACE-Step v1's own package (``acestep``), which tada does
not depend on: without it, loading says in one line how to install it. Tests build the parts in code.
Sites: ``xattn.N`` is ``transformer_blocks.N.cross_attn``'s output (what the paper steers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..context import GuidanceLayout
from ..engine import Site
from ..errors import TadaError
from .base import Adapter, GeneratedAudio, PromptToken

FAMILY = "ace-step-v1"
INSTALL = (
    "ACE-Step v1 needs its own package, which tada does not install: "
    "pip install git+https://github.com/ace-step/ACE-Step (the PyPI sdist ace-step 0.1.0 does not build)"
)
ERG_BLOCKS, ERG_SCALE = range(15, 20), 0.01
APG_MOMENTUM, APG_NORM_THRESHOLD = -0.75, 2.5
TRAIN_TIMESTEPS, SHIFT = 1000, 3.0


@dataclass
class V1Parts:
    """What the sampler needs of ACE-Step v1.

    ``transformer``: ``encode(text_states, text_mask, speaker_embeds, lyric_token_idx, lyric_mask)`` ->
    ``(context, context_mask)``; ``decode(hidden_states=, attention_mask=, encoder_hidden_states=,
    encoder_hidden_mask=, output_length=, timestep=)`` -> an object with ``.sample``; ``transformer_blocks``
    each with ``attn.to_q``, ``cross_attn`` and ``cross_attn.to_q``. ``encode_text(prompts)`` -> UMT5 states
    ``(batch, tokens, 768)`` and mask. ``decode_audio(latents)`` -> audio ``(batch, channels, frames)``.
    """

    transformer: nn.Module
    encode_text: Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]]
    decode_audio: Callable[[torch.Tensor], np.ndarray]
    sample_rate: int = 48000
    frames_per_second: float = 44100 / 512 / 8  # latent frames per second of audio
    latent_shape: tuple[int, int] = (8, 16)  # channels, height
    tokenizer: Any = None  # a fast tokenizer, for where prompt words land
    encode_text_null: Callable[[list[str]], torch.Tensor] | None = None  # ERG text states; None: zeros
    apg: Callable[..., torch.Tensor] | None = None  # acestep's apg_forward and MomentumBuffer when installed
    momentum_buffer: Callable[[], Any] | None = None
    make_scheduler: Callable[[], Any] | None = None  # acestep's own flow-matching Euler scheduler when installed
    step_kwargs: dict[str, Any] | None = None  # its step's extra arguments (omega)


class V1Denoiser(nn.Module):
    """The module the engine hooks: one call of the transformer's ``decode`` per pass and step."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.transformer = transformer

    def forward(self, hidden_states, timestep, encoder_hidden_states, encoder_hidden_mask, attention_mask):
        return self.transformer.decode(
            hidden_states=hidden_states,
            attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_hidden_mask=encoder_hidden_mask,
            output_length=hidden_states.shape[-1],
            timestep=timestep,
        ).sample


class MomentumBuffer:
    def __init__(self, momentum: float = APG_MOMENTUM):
        self.momentum, self.running = momentum, None

    def update(self, value: torch.Tensor) -> torch.Tensor:
        self.running = value if self.running is None else value + self.momentum * self.running
        return self.running


def apg(cond: torch.Tensor, uncond: torch.Tensor, scale: float, buffer: MomentumBuffer) -> torch.Tensor:
    """Adaptive projected guidance (Sadat et al., 2024): the guidance difference with momentum, its norm
    capped, and only its part orthogonal to the conditional prediction kept."""
    diff = buffer.update(cond - uncond)
    dims = tuple(range(1, cond.ndim))
    norm = diff.norm(p=2, dim=dims, keepdim=True)
    diff = diff * torch.clamp(APG_NORM_THRESHOLD / norm.clamp_min(1e-12), max=1.0)
    unit = cond / cond.norm(p=2, dim=dims, keepdim=True).clamp_min(1e-12)
    parallel = (diff * unit).sum(dim=dims, keepdim=True) * unit
    return cond + (scale - 1) * (diff - parallel)


class AceStepV1Adapter(Adapter):
    family = FAMILY
    layout = GuidanceLayout(("cond", "uncond"))  # used only if a caller stacks both passes in one call
    default_steps = 30
    default_guidance = 5.0  # the paper's settings
    default_seconds = 10.0

    def __init__(self, parts: V1Parts, guidance_interval: float = 1.0, erg: bool = True):
        super().__init__()
        if not 0.0 < guidance_interval <= 1.0:
            raise TadaError(f"the guidance interval must be in (0, 1]; got {guidance_interval}")
        self.parts, self.guidance_interval, self.erg = parts, guidance_interval, erg
        self._denoiser = V1Denoiser(parts.transformer)
        self._timesteps = torch.zeros(0)
        self.passes: list[tuple[int, str]] = []  # (step, pass) of the last run's calls, in order

    @classmethod
    def from_pretrained(cls, path: str, dtype: torch.dtype = torch.float32, device: str = "cpu") -> AceStepV1Adapter:
        """ACE-Step v1 from a checkpoint directory, through its own package."""
        try:
            from acestep.pipeline_ace_step import ACEStepPipeline
        except ImportError:
            raise TadaError(INSTALL) from None
        from pathlib import Path

        if not Path(path).is_dir():
            raise TadaError(f"no model directory at {path}")
        pipe = ACEStepPipeline(checkpoint_dir=path, dtype="bfloat16" if dtype == torch.bfloat16 else "float32")
        pipe.load_checkpoint(path)
        from acestep.apg_guidance import MomentumBuffer as V1MomentumBuffer
        from acestep.apg_guidance import apg_forward
        from acestep.schedulers.scheduling_flow_match_euler_discrete import (
            FlowMatchEulerDiscreteScheduler as V1Scheduler,
        )

        def decode_audio(latents: torch.Tensor) -> np.ndarray:
            _, audios = pipe.music_dcae.decode(latents, sr=48000)
            return np.stack([a.float().cpu().numpy() for a in audios])

        parts = V1Parts(
            pipe.ace_step_transformer,
            pipe.get_text_embeddings,
            decode_audio,
            tokenizer=pipe.text_tokenizer,
            encode_text_null=pipe.get_text_embeddings_null,
            apg=lambda cond, uncond, scale, buffer: apg_forward(
                pred_cond=cond, pred_uncond=uncond, guidance_scale=scale, momentum_buffer=buffer
            ),
            momentum_buffer=V1MomentumBuffer,
            make_scheduler=lambda: V1Scheduler(num_train_timesteps=TRAIN_TIMESTEPS, shift=SHIFT),
            step_kwargs={"omega": 10.0},  # the pipeline's omega_scale default
        )
        return cls(parts, guidance_interval=0.5)  # the pipeline's default interval

    # -- what the engine needs ----------------------------------------------------------
    @property
    def denoiser(self) -> nn.Module:
        return self._denoiser

    @property
    def width(self) -> int:
        attention = self.parts.transformer.transformer_blocks[0].cross_attn
        return int(attention.to_out[0].out_features)

    @property
    def sample_rate(self) -> int:
        return self.parts.sample_rate

    def scheduler_timesteps(self) -> torch.Tensor:
        return self._timesteps

    def list_sites(self) -> list[Site]:
        """Per block: ``xattn.N`` (the cross-attention's output) and ``xattn_in.N`` (the context it reads:
        the speaker token, the prompt's tokens projected by ``genre_embedder``, the lyric tokens)."""
        sites = []
        for i in range(len(self.parts.transformer.transformer_blocks)):
            path = f"transformer.transformer_blocks.{i}.cross_attn"
            sites += [
                Site(f"xattn.{i}", path, "output", "xattn"),
                Site(f"xattn_in.{i}", path, "encoder_hidden_states", "xattn_in"),
            ]
        return sites

    def encode_prompts(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        context, mask, _, _ = self._contexts(list(prompts))
        return {"encoder_hidden_states": context, "encoder_hidden_mask": mask}

    def prompt_tokens(self, prompts: Sequence[str]) -> list[list[PromptToken]]:
        """The context is the speaker embedding (one token), the text tokens, then the lyric tokens."""
        from .diffusers_families import _tokens_in

        if self.parts.tokenizer is None:
            raise TadaError("this ACE-Step v1 has no tokenizer to tell where prompt words land")
        return _tokens_in(self.parts.tokenizer, list(prompts), [0] * len(prompts), list(prompts), 256, shift=1)

    # -- the sampler --------------------------------------------------------------------
    def _contexts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The conditional context and the unconditional one (null text, speaker and lyrics), with masks."""
        t = self.parts.transformer
        text, text_mask = self.parts.encode_text(prompts)
        n, device = len(prompts), text.device
        speaker = torch.zeros(n, 512, device=device, dtype=text.dtype)
        lyrics = torch.zeros(n, 1, dtype=torch.long, device=device)
        lyric_mask = torch.zeros(n, 1, dtype=torch.long, device=device)
        context, mask = t.encode(text, text_mask, speaker, lyrics, lyric_mask)
        null_text = self.parts.encode_text_null(prompts) if self.parts.encode_text_null else torch.zeros_like(text)
        null, null_mask = t.encode(null_text, text_mask, speaker, lyrics, lyric_mask)
        return context, mask, null, null_mask

    @contextmanager
    def _erg(self):
        """The unconditional pass's perturbation: queries of blocks 15-19 scaled by 0.01."""
        blocks = self.parts.transformer.transformer_blocks
        handles = []
        if self.erg:
            for i in ERG_BLOCKS:
                if i < len(blocks):
                    for module in (blocks[i].attn.to_q, blocks[i].cross_attn.to_q):
                        handles.append(module.register_forward_hook(lambda m, a, out: out * ERG_SCALE))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _generate(
        self, prompts: list[str], generators: list[torch.Generator], seconds: float, steps: int, guidance: float
    ) -> GeneratedAudio:
        p = self.parts
        context, mask, null, null_mask = self._contexts(prompts)
        if p.make_scheduler is not None:
            scheduler = p.make_scheduler()
        else:
            from diffusers import FlowMatchEulerDiscreteScheduler

            scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=TRAIN_TIMESTEPS, shift=SHIFT)
        scheduler.set_timesteps(steps, device="cpu")
        self._timesteps = scheduler.timesteps
        frames = max(1, int(seconds * p.frames_per_second))
        latents = torch.stack(
            [torch.randn((*p.latent_shape, frames), generator=g, dtype=torch.float32) for g in generators]
        ).to(self.device, self.dtype)
        attention = torch.ones(len(prompts), frames, device=self.device, dtype=self.dtype)
        start = int(steps * ((1 - self.guidance_interval) / 2))
        end = int(steps * (self.guidance_interval / 2 + 0.5))
        guided = guidance > 1.0
        buffer = (p.momentum_buffer or MomentumBuffer)()
        self.passes = []
        for i, t in enumerate(scheduler.timesteps):
            timestep = t.expand(len(prompts)).to(self.device, self.dtype)
            with self.engine.guidance_pass("cond"):
                out = self.denoiser(latents, timestep, context, mask, attention)
            self.passes.append((i, "cond"))
            if guided and start <= i < end:
                with self.engine.guidance_pass("uncond"), self._erg():
                    uncond = self.denoiser(latents, timestep, null, null_mask, attention)
                self.passes.append((i, "uncond"))
                out = (p.apg or apg)(out, uncond, guidance, buffer)
            latents = scheduler.step(out, t, latents, return_dict=False, **(p.step_kwargs or {}))[0]
        return GeneratedAudio(np.asarray(p.decode_audio(latents), dtype=np.float32), p.sample_rate)


__all__ = ["FAMILY", "INSTALL", "AceStepV1Adapter", "V1Denoiser", "V1Parts", "apg"]
