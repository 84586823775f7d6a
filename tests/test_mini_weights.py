"""The tada-mini weights committed in the package: they load offline on a fresh clone, they are a
finished training run within the size budget, and the model follows its prompt.

The prompt checks use decorations and base prompts of the concept presets (none of them a
caption template of the training corpus) and seeds the acceptance benchmark does not use.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tada import signal_checks
from tada.adapters import load_model
from tada.concepts import BASE_PROMPTS, CONCEPTS
from tada.mini import WEIGHTS_DIR
from tada.mini.train import PROVENANCE
from tada.scorer import Scorer

SEEDS = [77, 78, 79]


@pytest.fixture(scope="module")
def mini():
    return load_model("tada-mini")


def test_bundled_weights_are_a_finished_run_within_budget(mini):
    provenance = json.loads((WEIGHTS_DIR / PROVENANCE).read_text())
    config = provenance["config"]
    assert provenance["transformer"]["steps"] == config["transformer"]["steps"]
    # a fine-tune keeps its base run's autoencoder (config {"from": ...}), a fine-tune of a fine-tune its
    # base's base's: the run at the end of the init_from chain trained it, and its steps count
    run = provenance
    while "from" in run["config"]["autoencoder"]:
        run = run["init_from"]
    assert provenance["autoencoder"]["steps"] == run["config"]["autoencoder"]["steps"] == run["autoencoder"]["steps"]
    size = sum(p.stat().st_size for p in WEIGHTS_DIR.rglob("*") if p.is_file())
    assert size <= 60e6, size
    assert mini.family == "tada-mini" and len([s for s in mini.sites.values() if s.kind == "xattn"]) == 8


_GENERATED: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _pairs(mini, concept: str) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative clips of 2 base prompts x 2 seeds (generated once per concept)."""
    if concept not in _GENERATED:
        c = CONCEPTS[concept]
        bases = [BASE_PROMPTS[1], BASE_PROMPTS[4]]
        grid = [(b, s) for b in bases for s in SEEDS[:2]]
        pos = mini.generate([c.positive.format(p=b) for b, _ in grid], seed=[s for _, s in grid]).samples[:, 0]
        neg = mini.generate([c.negative.format(p=b) for b, _ in grid], seed=[s for _, s in grid]).samples[:, 0]
        _GENERATED[concept] = pos, neg
    return _GENERATED[concept]


@pytest.mark.parametrize("concept", ["jazz_vs_rock", "vocal_style", "tempo"])
def test_positive_prompts_score_higher_on_the_probe(mini, concept):
    pos, neg = _pairs(mini, concept)
    scorer = Scorer.load()
    probe = CONCEPTS[concept].probe
    sp = scorer.similarity(list(pos), mini.sample_rate, probe)[:, 0]
    sn = scorer.similarity(list(neg), mini.sample_rate, probe)[:, 0]
    assert bool((sp > sn).all()), (sp, sn)


def test_fast_prompts_are_faster_than_slow_ones(mini):
    fast, slow = _pairs(mini, "tempo")
    bpm_fast = [signal_checks.tempo_bpm(c, mini.sample_rate) for c in fast]
    bpm_slow = [signal_checks.tempo_bpm(c, mini.sample_rate) for c in slow]
    assert np.median(bpm_fast) >= np.median(bpm_slow) + 30, (bpm_fast, bpm_slow)


def test_female_vocal_prompts_sing_higher_than_male_ones(mini):
    female, male = _pairs(mini, "vocal_gender")
    f0_female = np.nanmedian([signal_checks.median_f0(c, mini.sample_rate) for c in female])
    f0_male = np.nanmedian([signal_checks.median_f0(c, mini.sample_rate) for c in male])
    assert f0_female > 1.5 * f0_male, (f0_female, f0_male)
    # the acceptance check's reading: each female clip above its male partner (same prompt and seed)
    register_female = np.array([signal_checks.pitch_register(c, mini.sample_rate) for c in female])
    register_male = np.array([signal_checks.pitch_register(c, mini.sample_rate) for c in male])
    assert bool((register_female > register_male).all()), (register_female, register_male)


def test_the_main_job_turns_piano_up_on_the_bundled_model(tmp_path):
    """``make demo``'s command: a CAA vector, one clip without and one with piano, both scored."""
    from conftest import run_cli

    result = run_cli("demo", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "piano.safetensors").is_file() and (tmp_path / "unsteered.wav").is_file()
    line = [line for line in result.stdout.splitlines() if line.startswith("probe")][0]
    unsteered, steered = (float(part.split()[-1]) for part in line.split(":", 1)[1].split(","))
    assert steered > unsteered + 0.1, line
