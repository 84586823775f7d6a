"""The token-embedding baseline: a concept direction added at one word of the prompt.

Fitting reads, in every cross-attention layer's text input, the state of the *concept word*
(the words the positive decoration has where the negative differs: "female" against "male",
"happy" against "sad") and of its counterpart on the negative side. Where the negative side
has no counterpart ("{p}, with piano" against "{p}") the counterpart is the generic word of
the neutral wrap around the same base ("instrument" in "{p}, with instrument"). A word of
several tokens is the mean of its tokens; the direction is the mean over pairs of positive
minus negative, one per layer (each layer reads its own space: tada-mini's layers read
MiniLM states after their own LayerNorm). It keeps its natural scale: not unit-normalised.

Steering adds ``alpha * d`` to the conditional rows of each chosen layer's text input at the
tokens of the generic word of each prompt being generated, so the prompts must contain it:
"lofi, with instrument" for piano. Global is every layer whose text input lines up with the
prompt's words (AudioLDM2's GPT-2 layers do not), localised the layers the fit names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..concepts import Concept, word_spans
from ..conditioning import capture_conditioning
from ..context import StepContext
from ..engine import Site, SteeringHandle
from ..errors import ArtifactError, ConceptError, TadaError
from ..interventions import Intervention
from .base import ApplyOptions, FitRequest, Method, MethodArtifact
from .prompting import input_claims

Span = tuple[int, int]
_WORD = re.compile(r"\w+")


def differing_words(first: str, second: str) -> tuple[list[Span], list[Span]]:
    """Character spans of the words where two prompts differ: (in ``first``, in ``second``)."""
    words = [list(_WORD.finditer(text)) for text in (first, second)]
    keys = [[m.group().lower() for m in found] for found in words]
    matcher = difflib.SequenceMatcher(None, keys[0], keys[1], autojunk=False)
    spans: tuple[list[Span], list[Span]] = ([], [])
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            spans[0].extend(m.span() for m in words[0][i1:i2])
            spans[1].extend(m.span() for m in words[1][j1:j2])
    return spans


def generic_word_spans(concept: Concept, prompt: str) -> list[Span]:
    """Where steering adds the direction: the wrap's generic word when ``prompt`` is in the concept's
    neutral wrap, else every whole-word occurrence of it (none: the prompt cannot be steered)."""
    head, _, tail = concept.neutral.partition("{p}")
    match = re.fullmatch(re.escape(head) + "(.*)" + re.escape(tail), prompt, flags=re.DOTALL)
    if match is not None:
        in_wrap = word_spans(head, concept.generic_word) or [
            (a + match.end(1), b + match.end(1)) for a, b in word_spans(tail, concept.generic_word)
        ]
        if in_wrap:
            return in_wrap
    return word_spans(prompt, concept.generic_word)


def _base(template: str, prompt: str) -> str | None:
    head, _, tail = template.partition("{p}")
    match = re.fullmatch(re.escape(head) + "(.*)" + re.escape(tail), prompt, flags=re.DOTALL)
    return None if match is None else match.group(1)


@dataclass(frozen=True)
class Reading:
    """Where one pair is read: the positive side's prompt at its concept words, the negative side's at theirs."""

    positive: str
    positive_spans: list[Span]
    negative: str
    negative_spans: list[Span]

    @property
    def words(self) -> str:
        def text(prompt: str, spans: list[Span]) -> str:
            return " ".join(prompt[a:b] for a, b in spans)

        return f"{text(self.positive, self.positive_spans)} -> {text(self.negative, self.negative_spans)}"


def read_pair(concept: Concept, positive: str, negative: str, number: int) -> Reading:
    """The concept words of a pair; a side without any is read at the neutral wrap's generic word."""
    pos_spans, neg_spans = differing_words(positive, negative)
    if pos_spans and neg_spans:
        return Reading(positive, pos_spans, negative, neg_spans)
    if not pos_spans and not neg_spans:
        raise ConceptError(f"pair {number}: the positive and negative prompts have the same words ({positive!r})")
    base = _base(concept.negative, negative) if concept.has_templates else None
    if base is None or _base(concept.positive, positive) != base:
        added = positive if pos_spans else negative
        raise ConceptError(
            f"pair {number}: {added!r} adds words the other prompt has no counterpart for, so token-embedding "
            "reads that side at the neutral wrap's generic word of the same base prompt, which needs pairs built "
            "from the concept's templates (fit with --concept, or --positive/--negative such as '{p}, with piano')"
        )
    neutral = concept.neutral_prompt(base)
    generic = generic_word_spans(concept, neutral)
    words, _ = differing_words(positive if pos_spans else negative, neutral)
    if not words or not generic:
        raise ConceptError(
            f"pair {number}: cannot tell the concept word from the generic word {concept.generic_word!r} "
            f"of the neutral wrap {concept.neutral!r}"
        )
    return Reading(positive, words, neutral, generic) if pos_spans else Reading(neutral, generic, negative, words)


def word_sites(model: Any, aliases: Sequence[str] | str | None) -> list[Site]:
    """The text inputs to act on: every layer whose input lines up with the prompt's words (None), or
    the named layers, refusing any whose input does not."""
    sites = model.layer_sites(aliases, "xattn_in")
    aligned = [s for s in sites if model.reads_prompt_tokens(s)]
    if aliases is not None and len(aligned) < len(sites):
        bad = ", ".join(s.alias for s in sites if s not in aligned)
        good = ", ".join(s.alias for s in model.layer_sites(None, "xattn_in") if model.reads_prompt_tokens(s))
        raise TadaError(
            f"token-embedding cannot steer {bad}: that text input does not line up with the prompt's words "
            f"(layers that do: {good or 'none'})"
        )
    if not aligned:
        raise TadaError(f"no cross-attention layer of {model.family} reads the prompt's words token by token")
    return aligned


def _word_positions(model: Any, prompts: list[str], spans: list[list[Span]]) -> list[list[int]]:
    positions = model.span_positions(prompts, spans)
    for prompt, found in zip(prompts, positions):
        if not found:
            raise TadaError(f"the word to read in {prompt!r} lies beyond the tokens {model.family} reads")
    return positions


def fit_directions(
    model: Any, readings: list[Reading], sites: list[Site], generation: dict[str, Any], batch_pairs: int
) -> dict[str, torch.Tensor]:
    """Per site, the mean over pairs of the positive minus the negative word state (float32, on the CPU)."""
    totals: dict[str, torch.Tensor] = {}
    for start in range(0, len(readings), max(1, batch_pairs)):
        chunk = readings[start : start + max(1, batch_pairs)]
        prompts = [r.positive for r in chunk] + [r.negative for r in chunk]
        spans = [r.positive_spans for r in chunk] + [r.negative_spans for r in chunk]
        positions = _word_positions(model, prompts, spans)
        for alias, cond in capture_conditioning(model, prompts, sites, **generation).items():
            states = cond.states.float().cpu()
            words = torch.stack([states[i, found].mean(0) for i, found in enumerate(positions)])
            difference = (words[: len(chunk)] - words[len(chunk) :]).sum(0)
            totals[alias] = totals.get(alias, 0) + difference
    return {alias: total / len(readings) for alias, total in totals.items()}


class GenericWordPositions:
    """The generic word's token positions for the prompts being generated (one batch remembered)."""

    def __init__(self, model: Any, concept: Concept):
        self.model = model
        self.concept = concept
        self._prompts: tuple[str, ...] | None = None
        self._positions: list[list[int]] = []

    def __call__(self, prompts: Sequence[str]) -> list[list[int]]:
        if tuple(prompts) != self._prompts:
            self._positions = self._find(list(prompts))
            self._prompts = tuple(prompts)
        return self._positions

    def _find(self, prompts: list[str]) -> list[list[int]]:
        if not prompts:
            raise TadaError("token-embedding needs the prompts being generated; generate through the model adapter")
        word = self.concept.generic_word
        spans = [generic_word_spans(self.concept, prompt) for prompt in prompts]
        for prompt, found in zip(prompts, spans):
            if not found:
                raise TadaError(
                    f"token-embedding adds its direction at the word {word!r}, which {prompt!r} lacks; generate "
                    f"from the concept's neutral wrap, e.g. {self.concept.neutral_prompt(prompt)!r}"
                )
        return _word_positions(self.model, prompts, spans)


class AddAtWord(Intervention):
    """Add a vector to the conditional rows of a text input at each prompt's generic-word tokens."""

    def __init__(self, vector: torch.Tensor, positions: GenericWordPositions):
        self.vector = vector
        self.positions = positions

    def prepare(self, model: Any, prompts: list[str], **settings: Any) -> None:
        self.positions(prompts)

    def edit(self, act: torch.Tensor, rows: slice, gain: float, ctx: StepContext) -> torch.Tensor:
        positions = self.positions(ctx.prompts)
        if len(positions) != rows.stop - rows.start:
            raise TadaError(f"site {ctx.site}: {len(positions)} prompts for {rows.stop - rows.start} rows")
        if act.shape[-1] != self.vector.shape[0]:
            raise TadaError(f"site {ctx.site} reads width {act.shape[-1]} but the direction has {self.vector.shape[0]}")
        row_index = [rows.start + i for i, found in enumerate(positions) for _ in found]
        token_index = [p for found in positions for p in found]
        if max(token_index) >= act.shape[1]:
            raise TadaError(f"site {ctx.site} reads {act.shape[1]} tokens; the generic word is at {max(token_index)}")
        out = act.clone()
        out[row_index, token_index] += (gain * self.vector).to(device=act.device, dtype=act.dtype)
        return out


class TokenEmbedding(Method):
    name = "token-embedding"
    changes = "conditioning"
    summary = (
        "adds alpha * d to the chosen layers' text input at the generic word of the prompt's neutral wrap "
        "('instrument' in 'lofi, with instrument'); d = mean positive minus negative state at the concept word."
    )
    alpha_convention = "multiples of the fitted direction (its natural scale, not unit-normalised), in [-10, 10]"
    alpha_range = (-10.0, 10.0)

    def fit(self, model: Any, request: FitRequest) -> MethodArtifact:
        concept = request.concept
        if not concept.generic_word:
            raise ConceptError(
                "token-embedding adds its direction at the generic word of the concept's neutral wrap "
                "('instrument' in '{p}, with instrument'): fit it with --concept, or give the concept that wrap"
            )
        sites = word_sites(model, request.sites)
        readings = [read_pair(concept, pos, neg, i) for i, (pos, neg) in enumerate(request.pairs, start=1)]
        if not readings:
            raise ConceptError("token-embedding needs at least one prompt pair")
        directions = fit_directions(model, readings, sites, request.generation(model), request.batch_pairs)
        return self.new_artifact(
            model,
            request,
            [s.alias for s in sites],
            tensors={f"direction/{alias}": vector for alias, vector in directions.items()},
            settings={"pairs": len(readings), "words": sorted({r.words for r in readings})},
        )

    def apply(self, artifact: MethodArtifact, model: Any, alpha: float, options: ApplyOptions) -> SteeringHandle:
        alpha = self.checked(artifact, model, alpha, options)
        sites = word_sites(model, artifact.sites)
        missing = [s.alias for s in sites if f"direction/{s.alias}" not in artifact.tensors]
        if missing:
            raise ArtifactError(f"this token-embedding artifact has no direction for {', '.join(missing)}")
        if not artifact.decorations.generic_word:
            raise ArtifactError("this token-embedding artifact names no generic word to add its direction at")
        if alpha == 0.0:
            return model.engine.add({})
        positions = GenericWordPositions(model, artifact.decorations)
        return model.engine.add(
            {s: AddAtWord(alpha * artifact.tensors[f"direction/{s.alias}"].float(), positions) for s in sites}
        )

    def claims(self, artifact: MethodArtifact, model: Any) -> dict[str, str]:
        return input_claims(artifact, "add")
