"""The tada-mini text-to-music pipeline: MiniLM token states -> flow-matching DiT -> mel autoencoder -> Griffin-Lim.

Saved the diffusers way, one sub-folder per component (``transformer/``,
``autoencoder/``, ``scheduler/``) plus ``model_index.json``; the text encoder is the
MiniLM of the installed wheel and is not saved. Classifier-free guidance stacks the
batch as ``(uncond, cond)``, the unconditional prompt being the empty text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from tqdm.auto import tqdm

from ..errors import TadaError
from ..text_encoder import token_states
from .autoencoder import MelAutoencoder
from .mel import HOP, SAMPLE_RATE, frames_for, mel_to_audio
from .transformer import TadaMiniTransformer

MODEL_INDEX = "model_index.json"
COMPONENTS = ("transformer", "autoencoder", "scheduler")


@dataclass
class TadaMiniOutput:
    audios: torch.Tensor  # (clips, 1, samples) float32 at 16 kHz


def _pad_tokens(states: torch.Tensor, length: int) -> torch.Tensor:
    return torch.nn.functional.pad(states, (0, 0, 0, length - states.shape[1]))


def _pad_cat(parts: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (states, mask) pairs of different token lengths along the batch, padding with masked zeros."""
    length = max(states.shape[1] for states, _ in parts)
    states = torch.cat([_pad_tokens(s, length) for s, _ in parts])
    mask = torch.cat([torch.nn.functional.pad(m, (0, length - m.shape[1]), value=False) for _, m in parts])
    return states, mask


def default_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """Euler steps of the flow from sigma 1 (noise) to 0, timesteps sigma * 1000."""
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)


class TadaMiniPipeline:
    sample_rate = SAMPLE_RATE

    def __init__(
        self, transformer: TadaMiniTransformer, autoencoder: MelAutoencoder, scheduler: FlowMatchEulerDiscreteScheduler
    ):
        self.transformer = transformer.eval()
        self.autoencoder = autoencoder.eval()
        self.scheduler = scheduler
        self._progress_bar_config: dict[str, object] = {"disable": True, "desc": "tada-mini", "leave": False}

    # -- diffusers conventions ------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, torch_dtype: torch.dtype = torch.float32) -> TadaMiniPipeline:
        root = Path(path)
        if not (root / MODEL_INDEX).is_file():
            raise TadaError(f"{root} is not a tada-mini model directory (no {MODEL_INDEX})")
        try:
            transformer = TadaMiniTransformer.from_pretrained(root / "transformer", torch_dtype=torch_dtype)
            autoencoder = MelAutoencoder.from_pretrained(root / "autoencoder", torch_dtype=torch_dtype)
            scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(root / "scheduler")
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TadaError(f"cannot load tada-mini from {root}: {first}") from None
        return cls(transformer, autoencoder, scheduler)

    def save_pretrained(self, path: str | Path) -> Path:
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(root / "transformer")
        self.autoencoder.save_pretrained(root / "autoencoder")
        self.scheduler.save_pretrained(root / "scheduler")
        index = {
            "_class_name": type(self).__name__,
            "_tada_family": "tada-mini",
            **{name: [type(getattr(self, name)).__module__, type(getattr(self, name)).__name__] for name in COMPONENTS},
        }
        (root / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n")
        return root

    @property
    def components(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in COMPONENTS}

    def to(self, device: str | torch.device) -> TadaMiniPipeline:
        self.transformer.to(device)
        self.autoencoder.to(device)
        return self

    def set_progress_bar_config(self, disable: bool = True, **tqdm_options: object) -> None:
        """As diffusers pipelines: ``disable`` plus any tqdm keyword (``desc``, ``leave``, ...)."""
        self._progress_bar_config = {"desc": "tada-mini", "leave": False, **tqdm_options, "disable": disable}

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    # -- generation -----------------------------------------------------------------
    def encode_prompt(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """MiniLM token states ``(B, L, 384)`` and their mask, on the model's device and dtype."""
        states, mask = token_states(list(prompts))
        return states.to(self.device, self.dtype), mask.to(self.device)

    def latent_frames(self, seconds: float) -> int:
        """Latent frames for a clip of ``seconds``: the nearest whole number (the waveform is then
        trimmed or zero-padded by at most two latent frames' worth, 32 ms, to the exact length)."""
        frames = round(frames_for(int(round(seconds * SAMPLE_RATE))) / self.autoencoder.downsample)
        limit = self.transformer.max_frames
        if not 1 <= frames <= limit:
            step = self.autoencoder.downsample * HOP / SAMPLE_RATE
            raise TadaError(
                f"tada-mini generates between {step:.2f} and {limit * step:.1f} seconds (asked for {seconds:g})"
            )
        return frames

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, C, T)`` -> waveforms ``(B, samples)``."""
        ae = self.autoencoder
        mel = ae.decode(latents / ae.config.scaling_factor)
        return mel_to_audio(ae.stats.denormalise(mel.float()))

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | Sequence[str],
        negative_prompt: str | Sequence[str] | None = None,
        num_inference_steps: int = 30,
        guidance_scale: float = 4.0,
        audio_length_in_s: float = 5.0,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> TadaMiniOutput:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        batch = len(prompts)
        negatives = (
            [""] * batch
            if negative_prompt is None
            else ([negative_prompt] * batch if isinstance(negative_prompt, str) else list(negative_prompt))
        )
        frames = self.latent_frames(audio_length_in_s)
        channels = int(self.transformer.config.in_channels)
        generators = generator if isinstance(generator, (list, tuple)) else [generator] * batch
        latents = torch.cat(
            [torch.randn((1, channels, frames), generator=g, dtype=torch.float32) for g in generators]
        ).to(self.device, self.dtype)
        guided = guidance_scale != 1.0
        cond = self.encode_prompt(prompts)
        states, mask = _pad_cat([self.encode_prompt(negatives), cond]) if guided else cond
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        for t in tqdm(self.scheduler.timesteps, **self._progress_bar_config):
            model_in = torch.cat([latents, latents]) if guided else latents
            velocity = self.transformer(
                model_in, t.expand(model_in.shape[0]), encoder_hidden_states=states, encoder_attention_mask=mask
            )
            if guided:
                uncond, conditional = velocity.chunk(2)
                velocity = uncond + guidance_scale * (conditional - uncond)
            latents = self.scheduler.step(velocity, t, latents).prev_sample
        audio = self.decode(latents)
        samples = int(round(audio_length_in_s * SAMPLE_RATE))
        audio = torch.nn.functional.pad(audio, (0, max(0, samples - audio.shape[-1])))[:, :samples]
        return TadaMiniOutput(audio[:, None, :].float().cpu())
