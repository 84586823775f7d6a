"""The nine benchmark concepts as labelled clip groups, with their probes and ROC AUC.

Each concept splits clips into those with the attribute and those with its opposite;
clips that are neither (a mid tempo, no vocals for a vocal concept) take no part. The
standard probe is the concept preset's (``tada.concepts``); the paraphrases are worded
unlike the corpus captions, to check that the text side generalises beyond templates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from ..concepts import CONCEPTS
from ..data.captions import FAST_BPM, SLOW_BPM
from .labels import Clip


@dataclass(frozen=True)
class ConceptTest:
    name: str
    positive: Callable[[Clip], bool]
    negative: Callable[[Clip], bool]
    paraphrases: tuple[str, ...]

    @property
    def probe(self) -> str:
        return CONCEPTS[self.name].probe

    def split(self, clips: list[Clip]) -> tuple[list[int], list[int]]:
        """Indices of clips with the attribute and of clips with its opposite."""
        pos = [i for i, c in enumerate(clips) if self.positive(c)]
        neg = [i for i, c in enumerate(clips) if self.negative(c)]
        return pos, neg


def _has(name: str) -> Callable[[Clip], bool]:
    return lambda clip: name in clip.instruments


def _vocal(key: str, value: str) -> Callable[[Clip], bool]:
    return lambda clip: bool(clip.vocals) and clip.vocals.get(key) == value


def _genre(name: str) -> Callable[[Clip], bool]:
    return lambda clip: clip.genre == name


def _only(present: str, absent: str) -> Callable[[Clip], bool]:
    return lambda clip: present in clip.instruments and absent not in clip.instruments


TESTS: dict[str, ConceptTest] = {
    t.name: t
    for t in (
        ConceptTest(
            "piano",
            _has("piano"),
            lambda c: "piano" not in c.instruments,
            ("a track where someone plays the piano", "music played on the keys of a piano", "a pianist performing"),
        ),
        ConceptTest(
            "mood",
            lambda c: c.mode == "major",
            lambda c: c.mode == "minor",
            ("music that puts you in a good mood", "an optimistic, lighthearted melody", "a joyful tune"),
        ),
        ConceptTest(
            "tempo",
            lambda c: c.bpm >= FAST_BPM,
            lambda c: c.bpm <= SLOW_BPM,
            ("an energetic high-tempo piece", "music with a quick pace", "a rapid, driving rhythm"),
        ),
        ConceptTest(
            "vocal_gender",
            _vocal("gender", "female"),
            _vocal("gender", "male"),
            ("a song performed by a female vocalist", "a lady's voice over music", "a singer with a high female voice"),
        ),
        ConceptTest(
            "vocal_style",
            _vocal("style", "rap"),
            _vocal("style", "sung"),
            ("a rapper delivering rhymes", "spoken rhymes rapped over a beat", "rapping"),
        ),
        ConceptTest(
            "guitar",
            _only("acoustic guitar", "electric guitar"),
            _only("electric guitar", "acoustic guitar"),
            ("someone strumming an acoustic guitar", "an unplugged guitar piece", "a steel-string acoustic guitar"),
        ),
        ConceptTest(
            "violin",
            _has("violin"),
            lambda c: "violin" not in c.instruments,
            ("a fiddle tune", "a violinist playing a melody", "bowed violin"),
        ),
        ConceptTest(
            "jazz_vs_rock",
            _genre("jazz"),
            _genre("rock"),
            ("a swinging jazz tune", "jazz music with improvisation", "a jazz combo playing in a club"),
        ),
        ConceptTest(
            "classical_vs_electronic",
            _genre("classical"),
            _genre("electronic"),
            (
                "music in the style of a classical composer",
                "a piece by a symphony orchestra",
                "a classical composition",
            ),
        ),
    )
}


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a positive clip outscores a negative one (ties count half): Mann-Whitney U."""
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    if not len(positive) or not len(negative):
        return float("nan")
    ranks = rankdata(np.concatenate([positive, negative]))
    u = ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2
    return float(u / (len(positive) * len(negative)))


def concept_aucs(
    clips: list[Clip], similarity: Callable[[list[str]], np.ndarray], paraphrases: bool = False
) -> dict[str, dict[str, float]]:
    """ROC AUC per concept and probe; ``similarity(texts)`` gives an array ``(clips, texts)``."""
    tests = list(TESTS.values())
    texts = list(dict.fromkeys(p for t in tests for p in (t.probe, *(t.paraphrases if paraphrases else ()))))
    scores = similarity(texts)
    column = {text: i for i, text in enumerate(texts)}
    results: dict[str, dict[str, float]] = {}
    for test in tests:
        pos, neg = test.split(clips)
        probes = (test.probe, *(test.paraphrases if paraphrases else ()))
        results[test.name] = {p: roc_auc(scores[pos, column[p]], scores[neg, column[p]]) for p in probes}
    return results


def encoder_margins(encode: Callable[[list[str]], np.ndarray], anchor: str = "music") -> dict[str, dict[str, float]]:
    """How the frozen sentence encoder alone orders each probe, before any training.

    Per concept and probe text (standard and paraphrases): cosine similarity to the
    concept's positive prompt minus that to its negative prompt, both built around
    ``anchor`` (``"music, with acoustic guitar"`` / ``"music, with electric guitar"``).
    ``encode(texts)`` returns unit-norm sentence embeddings. A margin at or below zero
    means the encoder itself puts the wording nearer the opposite concept: a text head
    trained on the corpus captions then has nothing to go on for it.
    """
    results: dict[str, dict[str, float]] = {}
    for test in TESTS.values():
        concept = CONCEPTS[test.name]
        probes = [test.probe, *test.paraphrases]
        sides = [concept.positive.format(p=anchor), concept.negative.format(p=anchor)]
        emb = np.asarray(encode(probes + sides), dtype=float)
        margin = emb[:-2] @ emb[-2] - emb[:-2] @ emb[-1]
        results[test.name] = {p: float(m) for p, m in zip(probes, margin)}
    return results
