"""The scorer weights committed in the package: they load on a fresh clone and they score.

Clips are rendered here from seeds outside every range the weights were trained on (read
from their ``training.json``), so the checks are on audio the scorer never saw.
"""

from __future__ import annotations

import json

import pytest

from tada.data.attributes import sample_spec
from tada.data.corpus import render_spec
from tada.scorer import Scorer
from tada.scorer.api import WEIGHTS
from tada.scorer.features import SAMPLE_RATE
from tada.scorer.probes import TESTS, encoder_margins
from tada.scorer.train import PROVENANCE

FIRST_SEED = 30_000_000


@pytest.fixture(scope="module")
def bundled():
    return Scorer.load()


def unseen_clips(want, count: int) -> list:
    """The first ``count`` specs from fresh seeds for which ``want(spec)`` holds."""
    ranges = json.loads((WEIGHTS / PROVENANCE).read_text())["trained_seeds"]
    specs, seed = [], FIRST_SEED
    while len(specs) < count:
        assert not any(lo <= seed < hi for lo, hi in ranges)
        spec = sample_spec(seed)
        if want(spec):
            specs.append(spec)
        seed += 1
    return specs


def test_bundled_weights_load_with_their_provenance(bundled):
    provenance = json.loads((WEIGHTS / PROVENANCE).read_text())
    assert provenance["steps"] == provenance["config"]["steps"]  # a finished run, not a checkpoint
    assert bundled.model.config.genres and bundled.model.config.instruments
    size = sum(p.stat().st_size for p in WEIGHTS.iterdir())
    assert size < 20e6


@pytest.mark.parametrize("concept", ["jazz_vs_rock", "vocal_style"])
def test_bundled_weights_rank_unseen_clips_by_the_probe(bundled, concept):
    """The two concepts the held-out benchmark puts at ROC AUC ~1: every positive clip above every negative."""
    test = TESTS[concept]
    positive = [render_spec(s) for s in unseen_clips(test.positive, 3)]
    negative = [render_spec(s) for s in unseen_clips(test.negative, 3)]
    scores = bundled.similarity(positive + negative, SAMPLE_RATE, test.probe)[:, 0]
    assert scores[:3].min() > scores[3:].max(), scores


def test_sentence_encoder_alone_orders_every_probe_but_one(bundled):
    """MiniLM, before any training, puts every probe wording nearer its own concept's
    prompt than the opposite one, except "an unplugged guitar piece", which it places
    nearer "electric guitar": the one paraphrase the scorer misses widely (AUC ~0.5)."""
    margins = encoder_margins(lambda texts: bundled.encoder.encode(texts).numpy())
    assert set(margins) == set(TESTS)
    wrong = {text for per in margins.values() for text, m in per.items() if m <= 0}
    assert wrong == {"an unplugged guitar piece"}, margins
