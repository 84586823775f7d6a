"""CAA vectors: shape, normalisation, timesteps, step-count transfer, resume after a kill."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAMILIES

from tada.caa import compute_caa
from tada.concepts import BASE_PROMPTS, CONCEPTS, Concept, concept_pairs, read_pairs
from tada.errors import ConceptError, TadaError
from tada.interventions import Capture

SETTINGS = {"seconds": 1.0, "steps": 3}


@pytest.mark.parametrize("family", FAMILIES)
def test_caa_vector_per_site_and_timestep(family, tiny_models):
    model = tiny_models(family)
    pairs = concept_pairs("piano", 3)
    vector = compute_caa(model, pairs, batch_pairs=2, concept="piano", progress=False, **SETTINGS)
    xattn = [s.alias for s in model.sites.values() if s.kind == "xattn"]
    assert vector.sites == xattn
    assert vector.family == family and vector.width == model.width
    assert vector.settings["batch_pairs"] == 2  # batch composition moves the rounding: it is recorded
    torch.testing.assert_close(vector.timesteps, model.scheduler_timesteps().double().cpu())
    for table in vector.vectors.values():
        assert table.shape[0] == 3
        torch.testing.assert_close(table.norm(dim=-1), torch.ones(3))


def test_caa_equals_mean_difference_of_captures(tiny_models):
    model = tiny_models("stable-audio")
    pairs = concept_pairs("tempo", 2)
    alias = "xattn.3"
    vector = compute_caa(model, pairs, sites=[alias], batch_pairs=1, progress=False, **SETTINGS)
    cap = Capture(rows="cond")
    with model.engine.add({model.site(alias): cap}):
        model.generate([p for p, _ in pairs] + [n for _, n in pairs], seed=[0, 1, 0, 1], **SETTINGS)
    for step in range(3):
        rows = cap.records[step].double()
        diff = rows[:2].mean(0) - rows[2:].mean(0)
        torch.testing.assert_close(vector.vectors[alias][step].double(), diff / diff.norm(), rtol=1e-4, atol=1e-5)


def test_vector_made_at_one_step_count_steers_another(tiny_models):
    model = tiny_models("ace-step-1.5")
    vector = compute_caa(model, concept_pairs("violin", 2), progress=False, **SETTINGS)
    plain = model.generate("lofi music", seed=4, seconds=1.0, steps=6).samples
    with vector.apply(model, 10.0):
        steered = model.generate("lofi music", seed=4, seconds=1.0, steps=6).samples
    assert np.isfinite(steered).all() and not np.array_equal(plain, steered)


def test_caa_resumes_after_a_kill(tiny_models, tmp_path, monkeypatch):
    model = tiny_models("stable-audio")
    pairs = concept_pairs("mood", 4)
    reference = compute_caa(model, pairs, batch_pairs=1, sites="xattn.1,xattn.5", progress=False, **SETTINGS)

    calls = {"n": 0}
    original = model.generate

    def dies_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", dies_on_third)
    work = tmp_path / "parts"
    with pytest.raises(KeyboardInterrupt):
        compute_caa(model, pairs, batch_pairs=1, sites="xattn.1,xattn.5", work_dir=work, progress=False, **SETTINGS)
    assert len(list(work.glob("chunk-*.safetensors"))) == 2
    calls["n"] = -100  # no more deaths
    resumed = compute_caa(
        model, pairs, batch_pairs=1, sites="xattn.1,xattn.5", work_dir=work, progress=False, **SETTINGS
    )
    assert calls["n"] == -100 + 2  # only the two unfinished chunks ran again
    for alias in reference.sites:
        torch.testing.assert_close(resumed.vectors[alias], reference.vectors[alias])
    assert not work.exists()


def test_work_dir_of_another_job_is_refused(tiny_models, tmp_path):
    model = tiny_models("stable-audio")
    work = tmp_path / "parts"
    compute_caa(model, concept_pairs("mood", 1), sites="xattn.1", work_dir=work, progress=False, **SETTINGS)
    work.mkdir()
    (work / "job.json").write_text('{"other": 1}')
    (work / "chunk-00000.safetensors").write_bytes(b"a finished unit of that other job")
    with pytest.raises(TadaError, match="different job"):
        compute_caa(model, concept_pairs("mood", 1), sites="xattn.1", work_dir=work, progress=False, **SETTINGS)


def test_identical_prompts_are_refused(tiny_models):
    model = tiny_models("stable-audio")
    with pytest.raises(TadaError, match="identical activations"):
        compute_caa(model, [("lofi music", "lofi music")], sites="xattn.0", progress=False, **SETTINGS)


def test_neutral_wraps_are_the_reference_protocols():
    wraps = {name: CONCEPTS[name].neutral_prompt("lofi music") for name in CONCEPTS}
    assert wraps["piano"] == wraps["violin"] == "lofi music, with instrument"
    assert wraps["mood"] == wraps["tempo"] == wraps["jazz_vs_rock"] == wraps["classical_vs_electronic"]
    assert wraps["mood"] == "a song, lofi music"
    assert wraps["vocal_gender"] == wraps["vocal_style"] == "lofi music, with clean vocal"
    assert wraps["guitar"] == "lofi music, with a guitar"
    for name, concept in CONCEPTS.items():
        assert wraps[name] not in concept.pair("lofi music")
        assert concept.generic_word and concept.generic_word in wraps[name].replace(",", " ").split()
    with pytest.raises(ValueError, match="generic word"):
        Concept("x", "{p}, with x", "{p}", "x", "{p}, with instrument", "song")


def test_presets_and_pair_files(tmp_path):
    assert len(CONCEPTS) == 9 and len(BASE_PROMPTS) == 50 and len(set(BASE_PROMPTS)) == 50
    for concept in CONCEPTS.values():
        for pos, neg in concept_pairs(concept.name):
            assert pos != neg
    with pytest.raises(ConceptError, match="unknown concept 'banjo'"):
        concept_pairs("banjo")
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text('positive,negative\n"lofi, with piano",lofi\nfast song,slow song\n')
    assert read_pairs(csv_path) == [("lofi, with piano", "lofi"), ("fast song", "slow song")]
    csv_path.write_text("only one column\n")
    with pytest.raises(ConceptError, match="two non-empty columns"):
        read_pairs(csv_path)
    with pytest.raises(ConceptError, match="no prompt-pair file"):
        read_pairs(tmp_path / "missing.csv")
