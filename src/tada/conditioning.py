"""What a cross-attention layer reads from the text, and how to give it another text.

Prompt-level and score-space steering change the *conditioning* of cross-attention
layers: the text states a layer attends to (its ``encoder_hidden_states`` input) and the
attention mask that comes with them. Acting on every layer's input is the same as
changing the prompt (text enters these denoisers only through cross-attention); acting
on a few layers is the localised variant. So one mechanism serves both:

* :func:`capture_conditioning` runs the model just far enough to record what each chosen
  layer reads for some prompts (one denoiser call, with every installed intervention
  bypassed, so the record is the model's own conditioning);
* :func:`swap_rows` puts such a record into some rows of a running batch, padding the
  token axis when the two lengths differ; padded positions are masked out (with the
  layer's own mask, or a boolean one made for layers called without a mask);
* :class:`SwapConditioning` is the intervention that does it at a layer's text input,
  per generated prompt, from a :class:`ConditioningBank` computed before sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .context import StepContext
from .engine import Site, first_output
from .errors import TadaError
from .interventions import Intervention, _check_rows
from .schedules import ALWAYS, Schedule

MASK = "attention_mask"


@dataclass
class Conditioning:
    """One layer's text input for ``n`` prompts: states ``(n, tokens, dim)`` and the mask as the
    layer receives it (rows first, tokens last; bool, additive float, or None)."""

    states: torch.Tensor
    mask: torch.Tensor | None = None

    @property
    def tokens(self) -> int:
        return int(self.states.shape[1])

    def rows(self, index: slice | list[int]) -> Conditioning:
        return Conditioning(self.states[index], None if self.mask is None else self.mask[index])


class _Captured(Exception):
    """Raised inside the denoiser once every requested layer has been recorded."""


def capture_conditioning(
    model: Any,
    prompts: Sequence[str],
    sites: Sequence[Site],
    *,
    seconds: float | None = None,
    steps: int | None = None,
    guidance: float | None = None,
) -> dict[str, Conditioning]:
    """Per ``xattn_in`` site, what that layer reads for ``prompts`` (the conditional rows).

    The sampler is started and stopped inside its first denoiser call, as soon as the last
    requested layer has been entered: the cost is one text encoding and part of one pass.
    """
    prompts = list(prompts)
    if not prompts:
        raise TadaError("no prompts to encode")
    n = len(prompts)
    found: dict[str, Conditioning] = {}

    def recorder(site: Site) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            states = kwargs.get(site.tensor)
            if not isinstance(states, torch.Tensor):
                raise TadaError(f"site {site.alias}: {site.path} was not called with keyword input {site.tensor!r}")
            cond, _ = model.layout.rows(states.shape[0], n)
            mask = kwargs.get(MASK) if MASK in site.companions else None
            if isinstance(mask, torch.Tensor):
                mask = (
                    mask[cond]
                    if mask.shape[0] == states.shape[0]
                    else mask.expand(states.shape[0], *mask.shape[1:])[cond]
                )
                mask = mask.detach().clone()
            found[site.alias] = Conditioning(states[cond].detach().clone(), mask)
            if len(found) == len(sites):
                raise _Captured

        return hook

    handles = [model.engine.module(site).register_forward_pre_hook(recorder(site), with_kwargs=True) for site in sites]
    seconds, steps, guidance = model.sampler_settings(seconds, steps, guidance).values()
    generators = [torch.Generator(device="cpu").manual_seed(0) for _ in prompts]
    try:
        with model.engine.bypassed(), model.engine.generation(n, prompts), model.quiet(), torch.no_grad():
            model._generate(prompts, generators, seconds, steps, guidance)
    except _Captured:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [site.alias for site in sites if site.alias not in found]
    if missing:
        raise TadaError(f"the model never called {', '.join(missing)}; cannot read their text input")
    return found


def _masked_value(mask: torch.Tensor) -> bool | float:
    return False if mask.dtype == torch.bool else torch.finfo(mask.dtype).min / 2


def _attend_all(like: torch.Tensor, rows: int, tokens: int) -> torch.Tensor:
    shape = (rows, *like.shape[1:-1], tokens)
    if like.dtype == torch.bool:
        return torch.ones(shape, dtype=torch.bool, device=like.device)
    return torch.zeros(shape, dtype=like.dtype, device=like.device)


def _all_real(rows: int, tokens: int, device: torch.device) -> torch.Tensor:
    return torch.ones(rows, 1, 1, tokens, dtype=torch.bool, device=device)


def pad_tokens(
    states: torch.Tensor, mask: torch.Tensor | None, length: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Extend the token axis to ``length`` with zero states that the mask hides (if there is a mask)."""
    extra = length - states.shape[1]
    if extra <= 0:
        return states, mask
    states = torch.nn.functional.pad(states, (0, 0, 0, extra))
    if mask is not None:
        mask = torch.nn.functional.pad(mask, (0, extra), value=_masked_value(mask))
    return states, mask


def union_mask(masks: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    """Positions that are real in any of the masks (equal shapes; None means all real)."""
    if any(m is None for m in masks):
        return None
    out = masks[0]
    for m in masks[1:]:
        out = out | m if out.dtype == torch.bool else torch.maximum(out, m)
    return out


def swap_rows(
    states: torch.Tensor, mask: torch.Tensor | None, rows: slice, new: Conditioning
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``states``/``mask`` with ``rows`` replaced by ``new``; both padded to the longer token count."""
    length = max(states.shape[1], new.tokens)
    if mask is None and new.mask is None and states.shape[1] != new.tokens:
        # a layer that takes no mask attends to every token it is given: hide the padding this
        # swap adds with a boolean (rows, 1, 1, tokens) mask, which diffusers' processors accept
        mask = _all_real(states.shape[0], states.shape[1], states.device)
        new = Conditioning(new.states, _all_real(new.states.shape[0], new.tokens, states.device))
    states, mask = pad_tokens(states, mask, length)
    new_states, new_mask = pad_tokens(new.states, new.mask, length)
    out = states.clone()
    out[rows] = new_states.to(device=states.device, dtype=states.dtype)
    if mask is None and new_mask is None:
        return out, None
    if mask is None:
        mask = _attend_all(new_mask, states.shape[0], length)
    elif mask.shape[0] != states.shape[0]:
        mask = mask.expand(states.shape[0], *mask.shape[1:])
    if new_mask is None:
        new_mask = _attend_all(mask, new.states.shape[0], length)
    out_mask = mask.clone()
    out_mask[rows] = new_mask.to(device=mask.device, dtype=mask.dtype)
    return out, out_mask


def _feed_all_rows(site: Site, new: Conditioning) -> Callable[..., tuple[tuple, dict]]:
    """A raw forward pre-hook giving every row of a cross-attention layer the text input ``new``."""

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        states = kwargs.get(site.tensor)
        if not isinstance(states, torch.Tensor):
            raise TadaError(f"site {site.alias}: {site.path} was not called with keyword input {site.tensor!r}")
        if states.shape[0] != new.states.shape[0]:
            raise TadaError(
                f"site {site.alias}: conditioning prepared for {new.states.shape[0]} rows, "
                f"the call has {states.shape[0]}"
            )
        mask = kwargs.get(MASK) if MASK in site.companions else None
        states, mask = swap_rows(states, mask, slice(0, states.shape[0]), new)
        kwargs = {**kwargs, site.tensor: states}
        if mask is not None:
            kwargs[MASK] = mask
        return args, kwargs

    return hook


def predict_with(model: Any, conditioning: Mapping[str, Conditioning], args: tuple, kwargs: dict) -> torch.Tensor:
    """The denoiser's prediction for one call of ``(args, kwargs)`` in which each named cross-attention
    layer (``xattn_in`` alias) reads ``conditioning[alias]`` as its text, every row, and nothing else
    installed runs: the extra passes of score-space steering and the targets of Concept Sliders."""
    hooks = [
        model.engine.module(model.site(alias)).register_forward_pre_hook(
            _feed_all_rows(model.site(alias), new), with_kwargs=True
        )
        for alias, new in conditioning.items()
    ]
    try:
        with model.engine.bypassed():
            return first_output(model.denoiser(*args, **kwargs))
    finally:
        for hook in hooks:
            hook.remove()


class ConditioningBank:
    """Per-layer conditioning for the prompts of the generation in progress, built once per batch.

    ``build(model, prompts, settings)`` returns ``{xattn_in alias: Conditioning with one row
    per prompt}``; the result is kept for the last few prompt batches, so repeated runs of
    the same prompts (a sweep over strengths) encode once.
    """

    def __init__(self, build: Callable[[Any, list[str], dict[str, Any]], dict[str, Conditioning]], keep: int = 8):
        self._build = build
        self._keep = keep
        self._cache: dict[tuple, dict[str, Conditioning]] = {}
        self.current: dict[str, Conditioning] = {}

    def prepare(self, model: Any, prompts: list[str], **settings: Any) -> None:
        key = (tuple(prompts), tuple(sorted(settings.items())))
        if key not in self._cache:
            if len(self._cache) >= self._keep:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = self._build(model, prompts, settings)
        self.current = self._cache[key]

    def __getitem__(self, alias: str) -> Conditioning:
        try:
            return self.current[alias]
        except KeyError:
            raise TadaError(f"no conditioning prepared for {alias}; generate through the model adapter") from None


class SwapConditioning(Intervention):
    """Give the selected rows of a cross-attention layer the bank's text input (and its mask).

    Installed at an ``xattn_in`` site. The schedule gates it per step (prompt switching
    swaps only for the last steps); a zero gain leaves the layer's input untouched.
    """

    def __init__(self, bank: ConditioningBank, rows: str = "cond", schedule: Schedule = ALWAYS):
        self.bank = bank
        self.rows = _check_rows(rows)
        self.schedule = schedule

    def prepare(self, model: Any, prompts: list[str], **settings: Any) -> None:
        self.bank.prepare(model, prompts, **settings)

    def edit(self, act: torch.Tensor, rows: slice, gain: float, ctx: StepContext) -> torch.Tensor:
        new = self.bank[ctx.site]
        n = rows.stop - rows.start
        if new.states.shape[0] != n:
            raise TadaError(
                f"site {ctx.site}: conditioning prepared for {new.states.shape[0]} prompts, the run has {n}"
            )
        states, mask = swap_rows(act, ctx.inputs.get(MASK), rows, new)
        if mask is not None or MASK in ctx.inputs:
            ctx.inputs[MASK] = mask
        return states
