"""TopK SAEs: shapes, exactly k latents, unit-norm decoder rows through training, sparse gradients equal to
dense ones, AuxK reviving planted dead latents, BatchTopK's threshold, checkpoints that resume to the same
weights, the activation cache, and sparsify reading tada's folders (and the reverse) with identical
reconstructions."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import run_cli

from tada.errors import ArtifactError, TadaError
from tada.files import write_safetensors, write_text
from tada.sae import SAEConfig, TopKSAE, load_saes
from tada.sae.cache import HOLDOUT_EVERY, ActivationCache, cache_activations, read_captions
from tada.sae.sparse import Selection, decode_selection, kept_values
from tada.sae.train import Trainer, TrainSettings, evaluate, evaluate_on_cache, geometric_median, train_sae


def planted_data(n: int = 4096, d: int = 32, atoms: int = 48, active: int = 3, seed: int = 0) -> torch.Tensor:
    """Sparse combinations of random unit atoms plus an offset: data an SAE can explain well."""
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.nn.functional.normalize(torch.randn(atoms, d, generator=g), dim=1)
    codes = torch.zeros(n, atoms)
    chosen = torch.rand(n, atoms, generator=g).argsort(dim=1)[:, :active]
    codes.scatter_(1, chosen, 1 + torch.rand(n, active, generator=g))
    return codes @ dictionary + 0.5


def fake_cache(directory, vectors: torch.Tensor, captions: int = 40, site: str = "xattn.1") -> ActivationCache:
    """An activation cache on disk without a model: ``vectors`` split evenly over ``captions``."""
    per = vectors.shape[0] // captions
    config = {
        "format": "tada/activation-cache",
        "family": "test",
        "width": vectors.shape[1],
        "sites": {site: "blocks.1.attn2"},
        "rows": "cond",
        "every": 1,
        "cached_steps": [0],
        "seconds": 1.0,
        "steps": 1,
        "guidance": 1.0,
        "seed": 0,
        "batch": captions,
        "captions": captions,
        "captions_sha256": "x",
    }
    directory.mkdir(parents=True, exist_ok=True)
    write_text(directory / "job.json", json.dumps(config, sort_keys=True))
    caption = torch.arange(captions).repeat_interleave(per)
    write_safetensors(
        directory / "chunk-00000.safetensors",
        {
            f"acts/{site}": vectors[: per * captions].half(),
            "caption": caption,
            "step": torch.zeros_like(caption),
            "token": torch.arange(per).repeat(captions),
        },
    )
    return ActivationCache(directory)


# -- the model ------------------------------------------------------------------------------------------
def test_shapes_and_exactly_k_latents():
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=16, k=5, expansion_factor=4))
    x = torch.randn(3, 7, 16)
    assert sae.pre_acts(x).shape == (3, 7, 64)
    values, indices = sae.encode(x)
    assert values.shape == indices.shape == (3, 7, 5)
    assert sae(x).shape == x.shape
    pre = sae.pre_acts(x)
    kept = torch.zeros_like(pre).scatter(-1, indices, values)
    assert ((kept != 0).sum(-1) <= 5).all()
    # positive data, biased encoder: every token has more than k positive pre-activations, and keeps exactly k
    with torch.no_grad():
        sae.encoder.bias.fill_(10.0)
    values, indices = sae.encode(x)
    assert ((values > 0).sum(-1) == 5).all()
    assert all(len(set(row.tolist())) == 5 for row in indices.reshape(-1, 5))
    kth = sae.pre_acts(x).topk(5, dim=-1).values[..., -1:]
    assert (values >= kth - 1e-6).all()  # the k largest, not any k


def test_decoder_unit_norm_and_parallel_gradient_removed():
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=8, k=3, expansion_factor=2))
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(16), atol=1e-6)
    sae.W_dec.grad = torch.randn_like(sae.W_dec)
    sae.remove_parallel_gradient()
    assert (sae.W_dec.grad * sae.W_dec).sum(dim=1).abs().max() < 1e-5
    trainer = Trainer(sae, TrainSettings(batch_size=64, lr=1e-2, warmup=1), total_steps=20, dead_after=10**9)
    data = planted_data(n=640, d=8, atoms=12)
    for i in range(10):
        trainer.step(data[i * 64 : (i + 1) * 64])
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(16), atol=1e-5)


def test_sparse_gradients_equal_dense_autograd():
    """The selection's custom backward gives exactly the gradients of the dense formulation."""
    torch.manual_seed(0)
    x = torch.randn(10, 6, dtype=torch.float64)
    weight = torch.randn(20, 6, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(20, dtype=torch.float64, requires_grad=True)
    w_dec = torch.randn(20, 6, dtype=torch.float64, requires_grad=True)
    centre = torch.randn(6, dtype=torch.float64, requires_grad=True)
    target = torch.randn(10, 6, dtype=torch.float64)
    for batch in (False, True):
        grads = []
        for sparse in (True, False):
            for p in (weight, bias, w_dec, centre):
                p.grad = None
            xc = x - centre
            pre = torch.relu(xc @ weight.T + bias)
            sel = (Selection.batch_topk if batch else Selection.per_row_topk)(pre.detach(), 4)
            if sparse:
                values = kept_values(xc, weight, bias, pre.detach(), sel)
                recon = decode_selection(values, sel, w_dec)
            else:
                mask = torch.zeros_like(pre, dtype=torch.bool)
                mask[sel.rows, sel.latents] = True
                recon = torch.where(mask, pre, torch.zeros_like(pre)) @ w_dec
            (recon - target).pow(2).sum().backward()
            grads.append([p.grad.clone() for p in (weight, bias, w_dec, centre)])
        for a, b in zip(*grads, strict=True):
            assert torch.allclose(a, b, atol=1e-10)
        if batch:
            assert sel.rows.shape[0] == 40 and bool((sel.rows[1:] >= sel.rows[:-1]).all())


def test_geometric_median_resists_outliers():
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [100.0, 100.0]])
    median = geometric_median(points)
    assert median.norm() < 1.5 < float(points.mean(0).norm())


def test_auxk_revives_planted_dead_latents():
    """Latents whose encoder rows were shrunk never win the TopK; with AuxK they learn to fire, without it
    they stay dead."""
    data = planted_data(n=4096, d=16, atoms=40, active=4)

    def run(auxk_weight: float) -> int:
        torch.manual_seed(0)
        sae = TopKSAE(SAEConfig(d_in=16, k=4, expansion_factor=4))
        with torch.no_grad():
            sae.b_dec.copy_(geometric_median(data[:512]).float())
            sae.encoder.weight[32:] *= 0.001  # 32 of 64 latents planted dead
        settings = TrainSettings(batch_size=256, lr=5e-3, warmup=1, auxk_weight=auxk_weight)
        trainer = Trainer(sae, settings, total_steps=400, dead_after=512)
        for step in range(400):
            trainer.step(data[(step % 16) * 256 : (step % 16 + 1) * 256])
        _, indices = sae.encode(data)
        return len(set(indices[:, :].reshape(-1).tolist()) & set(range(32, 64)))

    without, with_auxk = run(0.0), run(1 / 32)
    assert without <= 2
    assert with_auxk >= 16, (without, with_auxk)


def test_batch_topk_keeps_k_per_row_on_average_and_stores_a_threshold(tmp_path):
    data = planted_data(n=2048, d=16)
    cache = fake_cache(tmp_path / "cache", data)
    settings = TrainSettings(batch_topk=True, k=4, batch_size=128, epochs=2, lr=3e-3, warmup=1, eval_every=1000)
    sae, report = train_sae(cache, "xattn.1", tmp_path / "sae", settings, progress=False)
    assert sae.cfg.batch_topk and sae.cfg.threshold is not None and sae.cfg.threshold > 0
    reloaded = TopKSAE.from_pretrained(tmp_path / "sae" / "blocks.1.attn2")
    assert reloaded.cfg.threshold == pytest.approx(sae.cfg.threshold)
    assert "held_out_threshold_mode" in report
    values, _ = reloaded.encode(data[:256], mode="threshold")
    assert ((values > 0) & (values <= sae.cfg.threshold)).sum() == 0
    pre = reloaded.pre_acts(torch.randn(3, 16))
    sel = Selection.batch_topk(pre, 4)
    assert sel.latents.shape[0] == 12


def test_training_reaches_low_fvu_and_resumes_to_the_same_weights(tmp_path, monkeypatch):
    data = planted_data(n=4000, d=16, atoms=24, active=2)
    cache = fake_cache(tmp_path / "cache", data)
    settings = TrainSettings(k=4, batch_size=100, epochs=3, lr=5e-3, warmup=5, checkpoint_every=10, eval_every=50)
    whole, report = train_sae(cache, "xattn.1", tmp_path / "whole", settings, progress=False)
    assert report["held_out"]["fvu"] < 0.15
    assert report["held_out"]["vectors"] == 4000 // HOLDOUT_EVERY
    assert report["training_set"]["vectors"] == 4000 - 4000 // HOLDOUT_EVERY
    assert report["training_set"]["fvu"] == pytest.approx(report["held_out"]["fvu"], abs=0.05)
    folder = tmp_path / "whole" / "blocks.1.attn2"
    assert {p.name for p in folder.iterdir()} == {"cfg.json", "sae.safetensors", "training.json", "loss.png"}

    calls = {"n": 0}
    original = Trainer.step

    def dying(self, x):
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt
        return original(self, x)

    monkeypatch.setattr(Trainer, "step", dying)
    with pytest.raises(KeyboardInterrupt):
        train_sae(cache, "xattn.1", tmp_path / "resumed", settings, progress=False)
    assert (tmp_path / "resumed" / "blocks.1.attn2" / "checkpoint.safetensors").is_file()
    monkeypatch.setattr(Trainer, "step", original)
    resumed, _ = train_sae(cache, "xattn.1", tmp_path / "resumed", settings, progress=False)
    for name, tensor in whole.state_dict().items():
        assert torch.allclose(tensor, resumed.state_dict()[name], atol=1e-6), name
    other = TrainSettings(k=5, batch_size=100, epochs=3, lr=5e-3, warmup=5, checkpoint_every=10)
    monkeypatch.setattr(Trainer, "step", dying)
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        train_sae(cache, "xattn.1", tmp_path / "clash", settings, progress=False)
    monkeypatch.setattr(Trainer, "step", original)
    with pytest.raises(TadaError, match="checkpoint of different training settings"):
        train_sae(cache, "xattn.1", tmp_path / "clash", other, progress=False)


def test_evaluate_counts_dead_latents():
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=8, k=2, expansion_factor=2))
    with torch.no_grad():
        sae.encoder.bias[:8] = -1e6  # half the latents can never fire
    result = evaluate(sae, torch.randn(500, 8))
    assert result["dead_share"] >= 0.5
    assert result["l0"] <= 2


def test_evaluate_on_a_fresh_cache_matches_evaluate_and_names_missing_sites(tmp_path):
    data = planted_data(n=2000, d=16, atoms=24, active=2)
    cache = fake_cache(tmp_path / "cache", data)
    settings = TrainSettings(k=4, batch_size=100, epochs=1, lr=5e-3, warmup=5, eval_every=50)
    sae, report = train_sae(cache, "xattn.1", tmp_path / "sae", settings, progress=False)
    # the training report's figures come back from the same cache
    (held,) = evaluate_on_cache(tmp_path / "sae", tmp_path / "cache", part="held-out")
    (seen,) = evaluate_on_cache(tmp_path / "sae", tmp_path / "cache", part="train")
    assert seen["vectors"] == report["training_set"]["vectors"]
    assert seen["dead_share"] == report["training_set"]["dead_share"]
    assert held["site"] == "xattn.1" and held["hookpoint"] == "blocks.1.attn2"
    assert held["fvu"] == pytest.approx(report["held_out"]["fvu"], rel=1e-6)
    assert held["dead_share"] == report["held_out"]["dead_share"]
    # a fresh cache of other vectors: every vector counts
    fresh_data = planted_data(n=1000, d=16, atoms=24, active=2, seed=3)
    fake_cache(tmp_path / "fresh", fresh_data)
    (fresh,) = evaluate_on_cache(tmp_path / "sae", tmp_path / "fresh")
    direct = evaluate(sae, fresh_data.half())
    assert fresh["vectors"] == 1000
    assert fresh["fvu"] == pytest.approx(direct["fvu"], rel=1e-5)
    assert fresh["dead_share"] == direct["dead_share"]
    fake_cache(tmp_path / "elsewhere", fresh_data, site="xattn.1")
    job = json.loads((tmp_path / "elsewhere" / "job.json").read_text())
    job["sites"] = {"xattn.1": "blocks.4.attn2"}
    write_text(tmp_path / "elsewhere" / "job.json", json.dumps(job))
    with pytest.raises(TadaError, match="one of all, train, held-out"):
        evaluate_on_cache(tmp_path / "sae", tmp_path / "fresh", part="test")
    with pytest.raises(TadaError, match="caches no activations at blocks.1.attn2"):
        evaluate_on_cache(tmp_path / "sae", tmp_path / "elsewhere")
    sae_dir, fresh_dir, json_path = (str(tmp_path / name) for name in ("sae", "fresh", "e.json"))
    result = run_cli("sae", "evaluate", sae_dir, fresh_dir, "--json", json_path)
    assert result.returncode == 0, result.stderr
    assert "| xattn.1 | blocks.1.attn2 | 1000 |" in result.stdout
    assert json.loads((tmp_path / "e.json").read_text())["saes"][0]["vectors"] == 1000


# -- files ---------------------------------------------------------------------------------------------
def test_sparsify_reads_tada_folders_and_tada_reads_sparsify_folders(tmp_path):
    sparsify = pytest.importorskip("sparsify")
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=12, k=3, expansion_factor=4, tada={"hookpoint": "blocks.2.attn2"}))
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.encoder.bias.normal_()
    sae.save_pretrained(tmp_path / "tada" / "blocks.2.attn2")
    x = torch.randn(50, 12)
    theirs = sparsify.Sae.load_from_disk(tmp_path / "tada" / "blocks.2.attn2")
    assert theirs.cfg.k == 3 and theirs.num_latents == 48
    assert torch.allclose(theirs(x).sae_out, sae(x), atol=1e-5)

    other = sparsify.Sae(12, sparsify.SaeConfig(expansion_factor=2, k=4))
    with torch.no_grad():
        other.b_dec.normal_()
        other.encoder.bias.normal_()
    other.save_to_disk(tmp_path / "theirs" / "layers.5")
    ours = load_saes(tmp_path / "theirs")["layers.5"]
    assert ours.hookpoint == "layers.5" and ours.k == 4
    assert torch.allclose(ours(x), other(x).sae_out, atol=1e-5)


def test_bad_sae_folders_fail_in_one_line(tmp_path):
    sae = TopKSAE(SAEConfig(d_in=4, k=2))
    folder = sae.save_pretrained(tmp_path / "ok" / "h")
    with pytest.raises(TadaError, match="holds no SAE"):
        load_saes(tmp_path)
    with pytest.raises(TadaError, match="no such SAE directory"):
        load_saes(tmp_path / "missing")
    cfg = json.loads((folder / "cfg.json").read_text())
    write_text(folder / "cfg.json", json.dumps({**cfg, "d_in": 5}))
    with pytest.raises(ArtifactError, match="shape"):
        TopKSAE.from_pretrained(folder)
    write_text(folder / "cfg.json", "{not json")
    with pytest.raises(ArtifactError, match="not readable JSON"):
        TopKSAE.from_pretrained(folder)
    (folder / "sae.safetensors").write_bytes(b"garbage")
    write_text(folder / "cfg.json", json.dumps(cfg))
    with pytest.raises(ArtifactError, match="not a readable safetensors"):
        TopKSAE.from_pretrained(folder)
    with pytest.raises(TadaError, match="k must be"):
        SAEConfig(d_in=4, k=100)


# -- the cache -----------------------------------------------------------------------------------------
def test_cache_records_every_token_at_chosen_steps_and_resumes(tiny_models, tmp_path):
    model = tiny_models("tada-mini")
    captions = [f"a song number {i}" for i in range(5)]
    settings = {"seconds": 1.0, "steps": 4}
    out = cache_activations(
        model, captions, "xattn.0,xattn.1", tmp_path / "c", every=2, batch=2, progress=False, **settings
    )
    cache = ActivationCache(out)
    assert cache.complete and cache.config["cached_steps"] == [0, 2] and cache.captions == captions
    acts, labels = cache.load("xattn.1", columns=("caption", "step", "token"))
    tokens = int((labels["caption"] == 0).sum()) // 2
    assert acts.shape == (5 * 2 * tokens, model.width) and acts.dtype == torch.float16
    assert sorted(set(labels["step"].tolist())) == [0, 2]
    assert cache.load("blocks.1.attn2")[0].shape == acts.shape  # a site by its hookpoint

    # the cached rows are what the site outputs on the conditional pass
    from tada.interventions import Capture

    capture = Capture(rows="cond", reduce="full")
    with model.engine.add({model.site("xattn.1"): capture}):
        model.generate(captions[2:4], seed=[2, 3], **settings)
    first = acts[labels["caption"] == 2].reshape(2, tokens, -1)
    assert torch.equal(first[1], capture.records[2][0].half())

    shard = out / "chunk-00001.safetensors"
    before = shard.read_bytes()
    shard.unlink()
    cache_activations(model, captions, "xattn.0,xattn.1", out, every=2, batch=2, progress=False, **settings)
    assert shard.read_bytes() == before
    with pytest.raises(TadaError, match="different job"):
        cache_activations(model, captions, "xattn.0", out, every=2, batch=2, progress=False, **settings)


def test_cache_bad_input(tiny_models, tmp_path):
    model = tiny_models("tada-mini")
    with pytest.raises(TadaError, match="no captions"):
        cache_activations(model, [], "xattn.0", tmp_path / "a")
    with pytest.raises(TadaError, match="has no site"):
        cache_activations(model, ["x"], "xattn.99", tmp_path / "b")
    with pytest.raises(TadaError, match="either"):
        read_captions(None, None)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(TadaError, match="no captions"):
        read_captions(empty)
    with pytest.raises(TadaError, match="not an activation cache"):
        ActivationCache(tmp_path)
    with pytest.raises(TadaError, match="caches no site"):
        fake_cache(tmp_path / "f", planted_data(n=400, d=4)).load("xattn.7")
    tiny = fake_cache(tmp_path / "g", planted_data(n=400, d=4))
    with pytest.raises(TadaError, match="fewer than one batch"):
        train_sae(tiny, "xattn.1", tmp_path / "s", TrainSettings(batch_size=4096), progress=False)
    assert math.isfinite(float(tiny.split("xattn.1")[0].float().sum()))
