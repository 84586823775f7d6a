"""benchmarks/sae_train_speed.py runs end to end on a tiny synthetic problem and writes its summary
(no timing thresholds here: the ratio is only checked to be a positive number)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("sae_train_speed", ROOT / "benchmarks" / "sae_train_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(bench, out: Path, variants: str, memory_steps: int) -> dict:
    argv = ["--synthetic", "512", "--width", "32", "--batch", "64", "--steps", "3", "--warmup-steps", "1"]
    argv += ["--repeats", "1", "--variants", variants, "--memory-steps", str(memory_steps), "--threads", "1"]
    summary = bench.main([*argv, "--out", str(out), "--no-progress"])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(summary))
    assert written["settings"]["latents"] == 128 and written["settings"]["batch"] == 64
    assert math.isfinite(written["ratio"]) and written["ratio"] > 0
    assert list(written["variants"]) == variants.split(",")
    for row in written["variants"].values():
        assert row["ratio"] > 0 and len(row["block_ratios"]) == 1
        for impl in ("tada", "sparsify"):
            for field in ("median_s_per_step", "activations_per_s", "train_fvu_last", "heldout_fvu"):
                assert math.isfinite(row[impl][field]) and row[impl][field] > 0, (impl, field)
        assert row["fvu_similar"]
    return written


def test_sae_speed_benchmark_tiny(tmp_path):
    bench = load_benchmark()
    # AuxK on planted dead latents, with the peak memory of each trainer in its own process
    planted = run(bench, tmp_path / "planted.json", "planted", memory_steps=1)
    for impl in ("tada", "sparsify"):
        arm = planted["variants"]["planted"][impl]
        assert arm["peak_rss_growth_mib"] >= 0 and arm["peak_rss_mib"] > 0
    # no dead latents, no memory runs: same initial parameters and batches, so both learn the same thing
    none = run(bench, tmp_path / "none.json", "none", memory_steps=0)["variants"]["none"]
    assert abs(none["tada"]["heldout_fvu"] - none["sparsify"]["heldout_fvu"]) < 1e-3
    assert "peak_rss_mib" not in none["tada"]


def test_planted_mask_and_batches_are_shared():
    bench = load_benchmark()
    mask = bench.planted_mask(100, 0.25, 0)
    assert int(mask.sum()) == 25 and bool((mask == bench.planted_mask(100, 0.25, 0)).all())
    vectors = bench.synthetic_vectors(300, 8, 0)
    batches = bench.Batches(vectors, 64, 0)
    assert batches.per_epoch == 4
    assert bool((batches(5, "cpu") == bench.Batches(vectors, 64, 0)(5, "cpu")).all())


def test_sae_speed_benchmark_on_a_cache(tmp_path):
    from safetensors.torch import save_file

    bench = load_benchmark()
    cache = tmp_path / "cache"
    cache.mkdir()
    job = {"format": "tada/activation-cache", "captions": 40, "batch": 40, "sites": {"xattn.0": "layers.0.attn"}}
    (cache / "job.json").write_text(json.dumps(job))
    vectors = bench.synthetic_vectors(400, 16, 1)
    save_file({"acts/xattn.0": vectors, "caption": torch.arange(400) // 10}, str(cache / "chunk-00000.safetensors"))
    out = tmp_path / "cache.json"
    argv = ["--cache", str(cache), "--site", "layers.0.attn", "--batch", "32", "--steps", "2", "--warmup-steps", "0"]
    argv += ["--repeats", "2", "--variants", "none", "--memory-steps", "0", "--out", str(out), "--no-progress"]
    summary = bench.main(argv)
    assert summary["settings"]["width"] == 16 and summary["settings"]["train_vectors"] == 380
    assert summary["settings"]["heldout_vectors"] == 20 and summary["ratio"] > 0
    assert len(summary["variants"]["none"]["block_ratios"]) == 2
