"""Attribute words: the caption vocabulary's synonyms for each side of a binary attribute.

Captions mention mood, tempo and voice among many other words, and a batch's InfoNCE
barely needs them to tell captions apart, so the text projection learns them weakly
(mood: a cheerful probe ranked major clips above minor ones with ROC AUC 0.66-0.80
while the audio's own mode head was ~96% right). The optional ``phrases`` loss makes
each attribute a zero-shot classifier in the shared space: the audio embedding must
be more similar to the mean embedding of one side's words ("happy", "cheerful", ...)
than of the other's ("sad", "gloomy", ...), as its label says. The words are the
caption generator's own synonym lists, not the evaluation probes or paraphrases.
"""

from __future__ import annotations

from ..data.captions import FAST_WORDS, MOOD_WORDS, SLOW_WORDS, VOCAL_WORDS

# attribute -> (words for target 1, words for target 0)
ATTRIBUTE_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "mode_major": (MOOD_WORDS["major"], MOOD_WORDS["minor"]),
    "fast": (FAST_WORDS, SLOW_WORDS),
    "vocal_female": (VOCAL_WORDS[("female", "sung")] + VOCAL_WORDS[("female", "rap")],
                     VOCAL_WORDS[("male", "sung")] + VOCAL_WORDS[("male", "rap")]),
    "vocal_rap": (VOCAL_WORDS[("female", "rap")] + VOCAL_WORDS[("male", "rap")],
                  VOCAL_WORDS[("female", "sung")] + VOCAL_WORDS[("male", "sung")]),
}
FAST_BPM, SLOW_BPM = 130, 85  # the caption generator's thresholds for fast and slow words


def all_words() -> list[str]:
    return [w for pos, neg in ATTRIBUTE_WORDS.values() for w in (*pos, *neg)]
