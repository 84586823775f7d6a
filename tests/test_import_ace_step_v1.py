"""Importing the paper's published ACE-Step v1 artifacts: files built in code in exactly the published
formats, imported and compared value by value; pickles that name anything else refused with no side effect."""

from __future__ import annotations

import io
import json
import os
import pickle
from collections import defaultdict

import numpy as np
import pytest
import torch
from conftest import run_cli

from tada.errors import ArtifactError, TadaError
from tada.imports.ace_step_v1 import BLOCKS, WIDTH, import_caa, v1_timesteps
from tada.imports.safe_pickle import RefusedPickle, load_pickle
from tada.methods import load_artifact

STEPS = 30


def published_sv(passes=(0, 1), steps=STEPS, plain_keys=False, seed=0) -> dict:
    """``sv.pkl``'s content as the reference code writes it: {(step, pass): defaultdict(list){tfN: [vector]}}."""
    rng = np.random.default_rng(seed)
    sv = {}
    for step in range(steps):
        for which in passes:
            blocks = defaultdict(list)
            for b in range(BLOCKS):
                v = rng.standard_normal(WIDTH).astype(np.float32)
                blocks[f"tf{b}"].append(v / np.linalg.norm(v))
            sv[step if plain_keys else (step, which)] = blocks
    return sv


def numpy1_pickle(value) -> bytes:
    """A pickle naming numpy 1's module (``numpy.core.multiarray``), as files written before numpy 2 do
    (protocol 3: globals as text, so the module name can be swapped in place)."""
    data = pickle.dumps(value, protocol=3)
    old = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert old != data and b"_core" not in old
    return old


def caa_folder(root, sv, data: bytes | None = None, config=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "sv.pkl").write_bytes(pickle.dumps(sv) if data is None else data)
    config = {"num_inference_steps": STEPS, "guidance_scale": 5.0, "seed": 0, "concept": "piano"} | (config or {})
    (root / "config.json").write_text(json.dumps(config))
    return root


def test_the_schedule_is_ace_step_v1s_flow_matching_euler_with_shift_3():
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    for steps in (30, 60, 7):
        scheduler.set_timesteps(steps)
        assert torch.allclose(v1_timesteps(steps).float(), scheduler.timesteps, atol=1e-3)
    assert v1_timesteps(30)[0] == 1000.0


@pytest.mark.parametrize("encode", [pickle.dumps, numpy1_pickle], ids=["numpy2-names", "numpy1-names"])
def test_a_published_caa_folder_imports_with_every_value_in_place(tmp_path, encode):
    sv = published_sv()
    folder = caa_folder(tmp_path / "ace-step-caa-piano", sv, encode(sv))
    vectors = import_caa(folder)
    assert sorted(vectors) == ["conditional", "unconditional"]
    for which, name in ((0, "conditional"), (1, "unconditional")):
        vector = vectors[name]
        assert vector.family == "ace-step-v1" and vector.width == WIDTH and vector.concept == "piano"
        assert vector.sites == [f"xattn.{b}" for b in range(BLOCKS)]
        assert torch.equal(vector.timesteps, v1_timesteps(STEPS))
        for b in range(BLOCKS):
            table = vector.vectors[f"xattn.{b}"]
            assert table.dtype == torch.float32 and table.shape == (STEPS, WIDTH)
            for step in range(STEPS):
                assert np.array_equal(table[step].numpy(), sv[(step, which)][f"tf{b}"][0])
        assert vector.normalisation == "unit" and vector.settings["renorm"] is True
    out = tmp_path / "out"
    result = run_cli("import", str(folder), "--out", str(out))
    assert result.returncode == 0, result.stderr
    saved = load_artifact(out / "piano.safetensors")
    assert torch.equal(saved.vectors["xattn.6"], vectors["conditional"].vectors["xattn.6"])
    assert torch.equal(saved.timesteps, v1_timesteps(STEPS))
    assert (out / "piano-unconditional-pass.safetensors").is_file()


def test_plain_step_keys_are_the_conditional_pass_and_one_key_is_every_step(tmp_path):
    sv = published_sv(passes=(0,), plain_keys=True)
    vectors = import_caa(caa_folder(tmp_path / "a", sv))
    assert list(vectors) == ["conditional"]
    assert np.array_equal(vectors["conditional"].vectors["xattn.3"][17].numpy(), sv[17]["tf3"][0])
    one = published_sv(passes=(0,), steps=1)
    vectors = import_caa(caa_folder(tmp_path / "b", one))
    table = vectors["conditional"].vectors["xattn.5"]
    assert table.shape == (STEPS, WIDTH) and all(np.array_equal(row.numpy(), one[(0, 0)]["tf5"][0]) for row in table)


class Runs:
    """An object whose pickle calls a function when loaded (the attack the allow-list stops)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize(
    "payload, named",
    [
        (lambda marker: Runs(os.system, f"touch {marker}"), "system"),
        (lambda marker: Runs(exec, f"open({str(marker)!r}, 'w').close()"), "builtins.exec"),
        (lambda marker: {(0, 0): Runs(open, str(marker), "w")}, "open"),
    ],
    ids=["os.system", "exec", "open-inside-a-dict"],
)
def test_a_pickle_that_would_run_code_is_refused_in_one_line_with_no_side_effect(tmp_path, payload, named):
    marker = tmp_path / "ran"
    folder = caa_folder(tmp_path / "evil", {}, pickle.dumps(payload(marker)))
    with pytest.raises(RefusedPickle, match=f"calls .*{named}.*not on tada's allow-list") as caught:
        import_caa(folder)
    assert "\n" not in str(caught.value) and not marker.exists()
    result = run_cli("import", str(folder), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "allow-list" in result.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_torch_saved_tensors_and_object_arrays_are_refused(tmp_path):
    path = tmp_path / "scores.pkl"
    buffer = io.BytesIO()
    # the published score pickles: torch tensors pickled with pickle, rebuilt by an unrestricted torch.load
    path.write_bytes(pickle.dumps({"tfidf": torch.ones(3, 4), "concept": "piano"}))
    with pytest.raises(RefusedPickle, match=r"calls torch\."):  # _load_from_bytes, or _rebuild_tensor_v2 now
        load_pickle(path)
    torch.save({"tfidf": torch.ones(3)}, buffer)  # a zip file: not a pickle at all
    path.write_bytes(buffer.getvalue())
    with pytest.raises(TadaError, match="is not a readable pickle"):
        load_pickle(path)
    path.write_bytes(pickle.dumps(np.array([{"a": 1}], dtype=object)))
    with pytest.raises(TadaError, match="refused to load"):
        load_pickle(path)
    path.write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(TadaError, match="is not a readable pickle"):
        load_pickle(path)


def test_a_malformed_folder_is_one_clear_line(tmp_path):
    with pytest.raises(TadaError, match="no sv.pkl"):
        import_caa(tmp_path)
    sv = published_sv(steps=3)
    with pytest.raises(TadaError, match="steps .* are missing"):
        import_caa(caa_folder(tmp_path / "short", sv))
    bad = {(0, 0): defaultdict(list, {"tf99": [np.zeros(WIDTH, np.float32)]})}
    with pytest.raises(TadaError, match="unknown block 'tf99'"):
        import_caa(caa_folder(tmp_path / "block", bad))
    narrow = {(0, 0): defaultdict(list, {"tf1": [np.zeros(16, np.float32)]})}
    with pytest.raises(TadaError, match="expected a float vector of 2560"):
        import_caa(caa_folder(tmp_path / "narrow", narrow, config={"num_inference_steps": 1}))


def test_an_imported_vector_is_refused_by_another_family(tmp_path):
    from tada.adapters import load_model

    vector = import_caa(caa_folder(tmp_path / "caa", published_sv(passes=(0,), steps=1)))["conditional"]
    model = load_model("random-tiny:tada-mini")
    with pytest.raises(ArtifactError, match="ace-step-v1"):
        vector.apply(model, 1.0)


def published_austeer(steps=4, blocks=(6, 7), seed=0) -> dict:
    """``austeer.pkl`` as the reference writes it: {step: {"tfN": {"betas": float64, "scores": float64}}}."""
    rng = np.random.default_rng(seed)
    out = {}
    for step in range(steps):
        out[step] = {}
        for b in blocks:
            scores = rng.uniform(0.5, 1.0, WIDTH)
            scores[:50] = 1.0  # perfectly consistent channels: ties, broken in layer then channel order
            out[step][f"tf{b}"] = {"betas": scores * rng.choice([-1.0, 1.0], WIDTH), "scores": scores}
    return out


def test_a_published_austeer_pickle_keeps_the_top_k_channels_per_step(tmp_path):
    from tada.imports.ace_step_v1 import import_austeer

    raw = published_austeer()
    path = tmp_path / "austeer.pkl"
    path.write_bytes(pickle.dumps(raw))
    vector = import_austeer(path, k=100)
    assert vector.sites == ["xattn.6", "xattn.7"] and vector.method == "austeer"
    assert torch.equal(vector.timesteps, v1_timesteps(4)) and vector.settings["renorm"] is True
    for step in range(4):
        scores = np.concatenate([raw[step]["tf6"]["scores"], raw[step]["tf7"]["scores"]])
        betas = np.concatenate([raw[step]["tf6"]["betas"], raw[step]["tf7"]["betas"]])
        got = torch.cat([vector.vectors["xattn.6"][step], vector.vectors["xattn.7"][step]]).numpy()
        kept = np.flatnonzero(got)
        assert len(kept) == 100
        assert set(kept) >= set(range(50))  # the ties of layer 6 come first
        assert scores[kept].min() >= np.sort(scores)[::-1][99]  # the 100 highest scores
        assert np.allclose(got[kept], betas[kept].astype(np.float32))  # each at its signed beta
    out = tmp_path / "out"
    result = run_cli("import", str(path), "--out", str(out), "--k", "100")
    assert result.returncode == 0, result.stderr
    assert torch.equal(load_artifact(out / "austeer.safetensors").vectors["xattn.7"], vector.vectors["xattn.7"])


def published_sae(root, blocks=(6, 7), latents=32, seed=0):
    """SAE folders as published: sparsify's cfg.json keys and sae.safetensors tensors, per hookpoint."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    saved = {}
    for b in blocks:
        folder = root / f"transformer_blocks.{b}.cross_attn"
        folder.mkdir(parents=True)
        cfg = {
            "expansion_factor": 4,
            "normalize_decoder": True,
            "num_latents": latents,
            "k": 8,
            "batch_topk": True,
            "sample_topk": False,
            "input_unit_norm": False,
            "multi_topk": False,
            "d_in": WIDTH,
        }
        (folder / "cfg.json").write_text(json.dumps(cfg))
        tensors = {
            "encoder.weight": torch.randn(latents, WIDTH, generator=gen),
            "encoder.bias": torch.randn(latents, generator=gen),
            "W_dec": torch.randn(latents, WIDTH, generator=gen),
            "b_dec": torch.randn(WIDTH, generator=gen),
        }
        save_file(tensors, str(folder / "sae.safetensors"))
        saved[b] = tensors
    return saved


def test_published_sae_folders_import_with_every_weight_and_their_site(tmp_path):
    from tada.sae.model import TopKSAE

    saved = published_sae(tmp_path / "ace-step-sae")
    result = run_cli("import", str(tmp_path / "ace-step-sae"), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    for b, tensors in saved.items():
        sae = TopKSAE.from_pretrained(tmp_path / "out" / f"transformer_blocks.{b}.cross_attn")
        assert sae.cfg.tada["site"] == f"xattn.{b}" and sae.cfg.tada["family"] == "ace-step-v1"
        assert sae.cfg.k == 8 and sae.cfg.num_latents == 32 and sae.cfg.batch_topk is True
        state = sae.state_dict()
        for name, tensor in tensors.items():
            assert torch.equal(state[name], tensor), name
    wrong = tmp_path / "wrong" / "transformer_blocks.30.cross_attn"
    published_sae(tmp_path / "tmp", blocks=(1,))
    wrong.parent.mkdir()
    (tmp_path / "tmp" / "transformer_blocks.1.cross_attn").rename(wrong)
    with pytest.raises(TadaError, match="transformer_blocks.0.cross_attn .. transformer_blocks.23"):
        from tada.imports.ace_step_v1 import import_sae

        import_sae(tmp_path / "wrong", tmp_path / "out2")


def test_a_published_sae_score_pickle_is_read_without_the_unrestricted_loader(tmp_path, monkeypatch):
    import torch.serialization

    scores = {
        "tfidf": torch.rand(STEPS, 64, dtype=torch.float64),
        "diff": torch.randn(STEPS, 64, dtype=torch.float64),
        "mean_pos": torch.rand(STEPS, 64, dtype=torch.float64),
        "concept": "piano",
    }
    path = tmp_path / "scores_tf6.pkl"
    path.write_bytes(pickle.dumps(scores))
    real_load = torch.load
    calls = []

    def watched(*args, **kwargs):  # every torch.load on the way must be the restricted one
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", watched)
    monkeypatch.setattr(torch.serialization, "load", watched)
    result = run_cli("import", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert calls and all(c is True for c in calls)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "out" / "scores_tf6.safetensors"), "pt") as f:
        assert f.metadata()["format"] == "tada/sae-scores" and f.metadata()["concept"] == "piano"
        for key in ("tfidf", "diff", "mean_pos"):
            assert torch.equal(f.get_tensor(key), scores[key])


def test_imported_scores_and_sae_give_the_papers_sae_vector(tmp_path):
    saved = published_sae(tmp_path / "sae", blocks=(6,), latents=32)
    scores = {"tfidf": torch.rand(STEPS, 32, dtype=torch.float64), "concept": "piano"}
    path = tmp_path / "scores.pkl"
    path.write_bytes(pickle.dumps(scores))
    folder = tmp_path / "sae" / "transformer_blocks.6.cross_attn"
    result = run_cli("import", str(path), "--out", str(tmp_path / "out"), "--sae", str(folder), "--top", "3")
    assert result.returncode == 0, result.stderr
    vector = load_artifact(tmp_path / "out" / "piano-sae.safetensors")
    assert vector.method == "sae" and vector.sites == ["xattn.6"] and vector.settings["renorm"] is True
    w_dec = saved[6]["W_dec"]
    for step in (0, 13, 29):
        best = torch.topk(scores["tfidf"][step], 3).indices
        assert torch.allclose(vector.vectors["xattn.6"][step], w_dec[best].sum(0), atol=1e-5)
    published_sae(tmp_path / "small", blocks=(6,), latents=16)
    small = tmp_path / "small" / "transformer_blocks.6.cross_attn"
    result = run_cli("import", str(path), "--out", str(tmp_path / "out2"), "--sae", str(small))
    assert result.returncode == 2 and "rank 32 features but the SAE" in result.stderr
    assert not (tmp_path / "out2").exists()  # checked before anything is written
