"""The interface every model family implements, and what it shares.

An adapter knows how to load its model, which sites it has, how its sampler stacks the
guidance passes, how to encode prompts and how to generate audio. The hook machinery
(:class:`~tada.engine.HookEngine`) is shared: an adapter only names its denoiser, its
scheduler's timesteps and its guidance layout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import validate
from ..concepts import word_spans
from ..context import GuidanceLayout
from ..engine import HookEngine, Site
from ..errors import SiteError, TadaError
from ..files import write_wav

# One token of a prompt as a cross-attention layer reads it: (position on the layer's text
# axis, first character, end character), the characters counted in the prompt itself.
PromptToken = tuple[int, int, int]


@dataclass
class GeneratedAudio:
    """A batch of clips: ``samples`` is ``(clips, channels, frames)`` float32."""

    samples: np.ndarray
    sample_rate: int

    def __len__(self) -> int:
        return self.samples.shape[0]

    @property
    def seconds(self) -> float:
        return self.samples.shape[-1] / self.sample_rate

    def save(self, path: str | Path, index: int = 0) -> Path:
        """Write one clip as 32-bit float WAV, atomically and without a timestamp, so runs can be compared bytewise."""
        return write_wav(path, self.samples[index].T, self.sample_rate, subtype="FLOAT")


class Adapter(ABC):
    """One model family: sites, guidance layout, prompt encoding and generation."""

    family: str
    layout: GuidanceLayout
    default_steps: int = 8
    default_guidance: float = 7.0
    default_seconds: float = 4.0

    def __init__(self) -> None:
        self._engine: HookEngine | None = None
        self._sites: dict[str, Site] | None = None

    # -- what each family provides -------------------------------------------------
    @property
    @abstractmethod
    def denoiser(self) -> nn.Module:
        """The module the sampler calls at every step."""

    @property
    @abstractmethod
    def width(self) -> int:
        """The denoiser's hidden width, recorded in artifacts to catch mismatches."""

    @abstractmethod
    def scheduler_timesteps(self) -> torch.Tensor:
        """The timesteps of the sampler run in progress."""

    @abstractmethod
    def list_sites(self) -> list[Site]:
        """Every site of the model, in block order."""

    @abstractmethod
    def encode_prompts(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """The text conditioning the denoiser sees, before any guidance stacking."""

    @abstractmethod
    def _generate(
        self, prompts: list[str], generators: list[torch.Generator], seconds: float, steps: int, guidance: float
    ) -> GeneratedAudio:
        """Run the sampler for ``prompts`` (one generator per clip)."""

    @abstractmethod
    def prompt_tokens(self, prompts: Sequence[str]) -> list[list[PromptToken]]:
        """Per prompt, its tokens where the word-aligned cross-attention layers read them (see
        :meth:`reads_prompt_tokens`): template text, special tokens and other conditioning left out."""

    def reads_prompt_tokens(self, site: Site) -> bool:
        """Whether ``site`` is a cross-attention text input whose token axis is :meth:`prompt_tokens`'s."""
        return site.kind == "xattn_in"

    timestep_arg: tuple[str, int] = ("timestep", 1)

    # -- shared ----------------------------------------------------------------------
    @property
    def engine(self) -> HookEngine:
        if self._engine is None:
            self._engine = HookEngine(self.denoiser, self.layout, self.scheduler_timesteps, self.timestep_arg)
        return self._engine

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.denoiser.parameters()).dtype

    @property
    def sites(self) -> dict[str, Site]:
        if self._sites is None:
            self._sites = {site.alias: site for site in self.list_sites()}
        return self._sites

    def site(self, alias: str) -> Site:
        try:
            return self.sites[alias]
        except KeyError:
            kinds = sorted({a.split(".", 1)[0] for a in self.sites})
            raise SiteError(
                f"{self.family} has no site {alias!r}; sites look like "
                + ", ".join(
                    f"{k}.{next(a for a in self.sites if a.startswith(k + '.')).split('.', 1)[1]}" for k in kinds
                )
                + " (run `tada sites` for the full list)"
            ) from None

    @property
    def denoiser_site(self) -> Site:
        """The denoiser's own output (its noise or velocity prediction): where score-space steering acts."""
        return Site("denoiser", "", "output", "denoiser")

    def layer_sites(self, aliases: Iterable[str] | str | None, kind: str) -> list[Site]:
        """The ``kind`` sites (``xattn`` output or ``xattn_in`` text input) of the cross-attention
        layers that ``aliases`` name by either of their sites; every layer's if None."""
        if aliases is None:
            return self.resolve_sites(None, kind)
        by_path = {s.path: s for s in self.sites.values() if s.kind == kind}
        out: list[Site] = []
        for site in self.resolve_sites(aliases, kind):
            if site.path not in by_path:
                raise SiteError(
                    f"site {site.alias} is not a cross-attention layer; {kind} sites look like "
                    f"{next(iter(by_path), '(none)')}"
                )
            if by_path[site.path] not in out:
                out.append(by_path[site.path])
        return out

    def resolve_sites(self, aliases: Iterable[str] | str | None, kind: str = "xattn") -> list[Site]:
        """Sites named by aliases (comma-separated string or list); all of ``kind`` if None."""
        if aliases is None:
            return [s for s in self.sites.values() if s.kind == kind]
        if isinstance(aliases, str):
            aliases = [a.strip() for a in aliases.split(",") if a.strip()]
        sites = [self.site(a) for a in aliases]
        if not sites:
            raise SiteError("no sites given")
        return sites

    def span_positions(self, prompts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]) -> list[list[int]]:
        """Per prompt, the positions on the cross-attention text axis of the tokens that overlap any of its
        character spans ``(start, end)``, in order; empty where none does (or the tokens were truncated away)."""
        if len(spans) != len(prompts):
            raise TadaError(f"got character spans for {len(spans)} prompts, expected {len(prompts)}")
        return [
            [pos for pos, a, b in tokens if any(a < end and b > start for start, end in wanted)]
            for tokens, wanted in zip(self.prompt_tokens(prompts), spans)
        ]

    def word_positions(self, prompts: Sequence[str], word: str) -> list[list[int]]:
        """Per prompt, the positions of every whole-word occurrence of ``word`` (case-insensitive)."""
        return self.span_positions(prompts, [word_spans(prompt, word) for prompt in prompts])

    def sampler_settings(self, seconds: float | None, steps: int | None, guidance: float | None) -> dict[str, float]:
        """Seconds, steps and guidance with this model's defaults in place of the ones not given."""
        return {
            "seconds": self.default_seconds if seconds is None else seconds,
            "steps": self.default_steps if steps is None else steps,
            "guidance": self.default_guidance if guidance is None else guidance,
        }

    def generate(
        self,
        prompt: str | Sequence[str],
        *,
        seconds: float | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int | Sequence[int] = 0,
    ) -> GeneratedAudio:
        """Generate one clip per prompt. An int seed gives clip i the seed ``seed + i``;
        a list gives each clip its own, so equal seeds share their initial noise."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts or any(not isinstance(p, str) for p in prompts):
            raise TadaError("generate needs one or more text prompts")
        seeds = [seed + i for i in range(len(prompts))] if isinstance(seed, int) else list(seed)
        if len(seeds) != len(prompts):
            raise TadaError(f"got {len(seeds)} seeds for {len(prompts)} prompts")
        seconds = self.default_seconds if seconds is None else float(seconds)
        steps = self.default_steps if steps is None else int(steps)
        guidance = self.default_guidance if guidance is None else float(guidance)
        validate.generation(seconds, steps, guidance)
        for s in seeds:
            validate.integer("seed", s, 0, validate.MAX_SEED, "a noise seed")
        generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        with self.engine.generation(len(prompts), prompts), torch.no_grad():
            self.engine.prepare(self, prompts, seconds=seconds, steps=steps, guidance=guidance)
            audio = self._generate(prompts, generators, seconds, steps, guidance)
        bad = [i for i in range(len(audio)) if not np.isfinite(audio.samples[i]).all()]
        if bad:
            raise TadaError(
                f"the model produced non-finite audio (NaN or infinity) for {len(bad)} of {len(prompts)} clips; "
                "lower the steering strength or the guidance scale"
            )
        return audio

    def quiet(self) -> AbstractContextManager[None]:
        """A block in which the sampler draws no progress bar (for passes the user did not ask for)."""
        return nullcontext()

    def describe(self) -> str:
        n_params = sum(p.numel() for p in self.denoiser.parameters())
        return f"{self.family}: width {self.width}, {len(self.sites)} sites, {n_params / 1e6:.1f}M denoiser parameters"
