"""`tada sae report`: a tiny cache -> SAE -> report pipeline; the page's features, examples, audio and scores."""

from __future__ import annotations

import html
import json
import re
import shutil

import pytest
import torch
from conftest import run_cli

from tada.concepts import BASE_PROMPTS
from tada.errors import TadaError
from tada.sae.cache import ActivationCache, cache_activations
from tada.sae.model import load_saes
from tada.sae.report import StrongestCaptions, keep_strongest, scan_cache, write_report
from tada.sae.train import TrainSettings, train_sae

FAMILY = "ace-step-1.5"  # the cheapest tiny model to generate with
SITES = ("xattn.2", "xattn.5")
N_CAPTIONS = 40


@pytest.fixture(scope="module")
def pipeline(tiny_models, tmp_path_factory):
    """40 captions cached at two sites (3 steps, 1 s, two shards) and a small SAE trained on each."""
    model = tiny_models(FAMILY)
    root = tmp_path_factory.mktemp("sae-report")
    captions = [f"{base}, with piano" if i % 2 else base for i, base in enumerate(BASE_PROMPTS[:N_CAPTIONS])]
    cache_dir = cache_activations(
        model, captions, ",".join(SITES), root / "cache", every=1, seconds=1.0, steps=3, batch=20, progress=False
    )
    settings = TrainSettings(expansion=4, k=8, batch_size=64, epochs=1, warmup=2, checkpoint_every=10_000)
    for site in SITES:
        train_sae(cache_dir, site, root / "sae", settings, progress=False)
    return model, cache_dir, root / "sae", captions


def sections(page: str) -> list[str]:
    """The HTML of each SAE's part of the page."""
    return page.split("<h2")[1:]


def ranking_rows(section: str) -> list[list[str]]:
    """The cells of an SAE's ranking table (feature, fires on, scores...)."""
    table = re.search(r'<table class="ranking">(.*?)</table>', section, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]
    return [[re.sub(r"<.*?>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)] for row in rows]


def count_generated(model, monkeypatch) -> list[str]:
    """Record every prompt the model generates from now on."""
    prompts: list[str] = []
    original = model.generate

    def recording(batch, **kwargs):
        prompts.extend(batch)
        return original(batch, **kwargs)

    monkeypatch.setattr(model, "generate", recording)
    return prompts


def test_report_shows_most_frequent_features_with_playable_examples(pipeline, tmp_path, monkeypatch):
    model, cache_dir, sae_dir, captions = pipeline
    generated = count_generated(model, monkeypatch)
    out = tmp_path / "report"
    page_path = write_report(sae_dir, model, out, top=3, examples=2, progress=False)
    assert page_path == out / "index.html" and page_path.is_file()
    page = page_path.read_text()
    parts = sections(page)
    assert len(parts) == len(SITES)
    for part in parts:
        features = re.findall(r'<section class="feature"[^>]*data-feature="(\d+)"', part)
        assert len(features) == 3 and len(set(features)) == 3
        assert [row[0] for row in ranking_rows(part)] == features
        shares = [float(row[1].rstrip("%")) for row in ranking_rows(part)]
        assert shares == sorted(shares, reverse=True) and shares[-1] > 0
        for feature in re.split(r'<section class="feature"', part)[1:]:
            shown = [html.unescape(c) for c in re.findall(r"<tr><td>(.*?)</td>", feature)]
            assert 1 <= len(shown) <= 2 and set(shown) <= set(captions)
    clips = re.findall(r'<audio controls[^>]*src="([^"]+)"', page)
    assert clips and all((out / clip).is_file() for clip in clips)
    assert sorted(p.name for p in (out / "audio").glob("*.wav")) == sorted({c.split("/")[-1] for c in clips})
    # each clip generated once, from its own caption (batched, not one call per clip)
    assert sorted(generated) == sorted({captions[int(c[-9:-4])] for c in clips})
    assert all((out / src).is_file() for src in re.findall(r'<img src="([^"]+)"', page))
    markdown = (out / "report.md").read_text()
    assert markdown.count("### Feature") == 3 * len(SITES) and "<audio" not in markdown
    assert all(f"]({clip})" in markdown for clip in clips)


def test_report_ranks_by_concept_score(pipeline, tmp_path):
    model, _, sae_dir, _ = pipeline
    out = tmp_path / "report"
    page = write_report(sae_dir, model, out, concept="piano", n_pairs=2, top=4, examples=1, progress=False).read_text()
    assert "concept &#x27;piano&#x27;" in page and "Cohen&#x27;s d" in page
    for part in sections(page):
        rows = ranking_rows(part)
        assert len(rows) == 4 and all(len(row) == 5 for row in rows)  # feature, fires on, tf-idf, diff, Cohen's d
        tfidf = [float(row[2]) for row in rows]
        assert tfidf == sorted(tfidf, reverse=True)
    assert "| feature | fires on | tf-idf | diff | Cohen's d |" in (out / "report.md").read_text()


def test_scan_matches_a_dense_pass_over_the_cache(pipeline):
    _, cache_dir, sae_dir, _ = pipeline
    cache = ActivationCache(cache_dir)
    sae = load_saes(sae_dir)["layers.2.cross_attn"]
    activity = scan_cache(sae, cache, "xattn.2", examples=3, progress=False)
    acts, labels = cache.load("xattn.2", columns=("caption", "step"))
    with torch.no_grad():
        values, indices = sae.encode(acts)
    dense = torch.zeros(acts.shape[0], sae.num_latents).scatter_(1, indices, values.float())
    assert activity.vectors == acts.shape[0]
    assert torch.equal(activity.fires, (dense > 0).sum(0))
    for position, step in enumerate(activity.steps):
        mean = dense[labels["step"] == step].double().mean(0)
        torch.testing.assert_close(activity.step_mean[position], mean)
    feature = int(activity.fires.argmax())
    per_caption = torch.zeros(N_CAPTIONS).scatter_reduce(0, labels["caption"], dense[:, feature], "amax")
    best = torch.sort(per_caption, descending=True, stable=True)
    expected = [(int(c), float(v)) for c, v in zip(best.indices[:3], best.values[:3], strict=True) if v > 0]
    assert [c for c, _ in activity.examples(feature)] == [c for c, _ in expected]
    assert [v for _, v in activity.examples(feature)] == pytest.approx([v for _, v in expected])


def test_keep_strongest_takes_each_captions_maximum_then_the_best_captions():
    latent = torch.tensor([0, 0, 0, 1, 1, 0, 1])
    caption = torch.tensor([5, 5, 2, 3, 4, 7, 3])
    value = torch.tensor([1.0, 3.0, 2.0, 0.25, 0.5, 2.0, 0.75])
    kept = keep_strongest(latent, caption, value, per_latent=2, n_captions=10)
    assert [t.tolist() for t in kept] == [[0, 0, 1, 1], [5, 2, 3, 4], [3.0, 2.0, 0.75, 0.5]]


@pytest.mark.parametrize("min_pending", [1, 50, 1 << 16])
def test_streamed_strongest_captions_equal_one_reduction(monkeypatch, min_pending):
    monkeypatch.setattr(StrongestCaptions, "MIN_PENDING", min_pending)
    gen = torch.Generator().manual_seed(0)
    latent = torch.randint(0, 12, (3000,), generator=gen)
    caption = torch.randint(0, 40, (3000,), generator=gen)
    value = torch.randint(1, 30, (3000,), generator=gen).float()  # many ties: the tie rule must hold too
    streamed = StrongestCaptions(per_latent=3, n_captions=40)
    for start in range(0, 3000, 97):
        streamed.add(latent[start : start + 97], caption[start : start + 97], value[start : start + 97])
    for got, expected in zip(streamed.result(), keep_strongest(latent, caption, value, 3, 40), strict=True):
        assert torch.equal(got, expected)


def test_missing_cache_is_one_line_error(pipeline, tmp_path):
    model, cache_dir, sae_dir, _ = pipeline
    moved = tmp_path / "sae"
    shutil.copytree(sae_dir, moved)
    for cfg_path in moved.glob("*/cfg.json"):
        cfg = json.loads(cfg_path.read_text())
        cfg["tada"]["cache"] = str(tmp_path / "gone")
        cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(TadaError, match="cannot read the activation cache of the SAE at .*--cache") as error:
        write_report(moved, model, tmp_path / "out", progress=False)
    assert "\n" not in str(error.value)
    result = run_cli("sae", "report", str(moved), f"random-tiny:{FAMILY}", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot read the activation cache") and result.stderr.count("\n") == 1
    assert not (tmp_path / "out" / "index.html").exists()
    # --cache points the report at the cache instead
    page = run_cli(
        "sae", "report", str(moved), f"random-tiny:{FAMILY}", "--cache", str(cache_dir), "--features", "1",
        "--examples", "1", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert page.returncode == 0, page.stderr
    assert (tmp_path / "out" / "index.html").is_file()
