"""Localisation statistics (tada.impact_report): the crossed bootstrap, impact intervals, the top-two
share, and the CSV / summary / heatmap files, on tables built by hand."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from tada.errors import TadaError
from tada.impact_report import (
    CSV_COLUMNS,
    as_json,
    bootstrap_impacts,
    bootstrap_weights,
    plot_heatmaps,
    plot_windows,
    pooled_profile,
    short_group,
    summarise,
    write_csv,
    write_summary,
)
from tada.localize import ImpactTable


def table(clean, corrupt, patched, modes=None, windows=None, units=None, sites=None) -> ImpactTable:
    patched = torch.tensor(patched, dtype=torch.float64)
    sites = sites or [f"xattn_in.{i}" for i in range(patched.shape[1])]
    return ImpactTable(
        sites,
        torch.tensor(clean, dtype=torch.float64),
        torch.tensor(corrupt, dtype=torch.float64),
        patched,
        "test",
        4,
        "a probe",
        "concept",
        [["a", "b"]] * len(clean),
        {},
        modes or [],
        windows or [],
        units,
    )


def test_impact_by_hand_for_patching_and_ablation():
    t = table([1.0, 0.8], [0.0, 0.2], [[0.5, 0.6], [0.3, 0.4]], modes=["input", "ablate"])
    # contrast = 0.9 - 0.1 = 0.8; patched means 0.4 and 0.5
    assert t.impact.tolist() == pytest.approx([(0.4 - 0.1) / 0.8, (0.9 - 0.5) / 0.8])


def test_crossed_weights_multiply_pair_and_seed_counts():
    units = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]])
    t = table([1.0] * 4, [0.0] * 4, [[0.5]] * 4, units=units)
    weights = bootstrap_weights(t, 500, seed=1)
    assert weights.shape == (500, 4)
    # every replicate draws 2 pairs and 2 seeds: 4 unit-draws in all, each a product of counts
    assert torch.all(weights.sum(1) == 4)
    w = weights.long()
    assert torch.all(w[:, 0] * w[:, 3] == w[:, 1] * w[:, 2])  # (p0 s0)(p1 s1) = (p1 s0)(p0 s1)


def test_intervals_are_exact_when_every_unit_agrees_and_widen_with_spread():
    same = summarise(table([1.0] * 6, [0.0] * 6, [[0.25, 0.5]] * 6), replicates=300)
    assert same.impact.tolist() == pytest.approx([0.25, 0.5])
    assert same.low.tolist() == pytest.approx([0.25, 0.5]) and same.high.tolist() == pytest.approx([0.25, 0.5])
    rng = np.random.default_rng(0)
    patched = (0.5 + 0.3 * rng.standard_normal((40, 1))).tolist()
    spread = summarise(table([1.0] * 40, [0.0] * 40, patched), replicates=2000)
    assert spread.low[0] < spread.impact[0] < spread.high[0]
    # the percentile interval of a mean of 40 draws with sd 0.3: about +-1.96 * 0.3 / sqrt(40)
    assert spread.high[0] - spread.low[0] == pytest.approx(2 * 1.96 * np.std(patched) / np.sqrt(40), rel=0.15)


def test_bootstrap_replicates_recompute_the_ratio_of_means():
    t = table([1.0, 0.5], [0.0, 0.1], [[0.2], [0.4]])
    samples = bootstrap_impacts(t, 200, seed=3)
    weights = bootstrap_weights(t, 200, seed=3)
    w = weights / weights.sum(1, keepdim=True)
    expected = (w @ t.patched[:, 0] - w @ t.corrupt) / (w @ t.clean - w @ t.corrupt)
    torch.testing.assert_close(samples[:, 0], expected)


def test_top_two_share_and_the_files(tmp_path):
    # four layers: impacts 0.6, 0.3, 0.1, -0.2 -> top two hold 0.9 of the positive 1.0
    t = table(
        [1.0] * 3,
        [0.0] * 3,
        [[0.6, 0.3, 0.1, -0.2, 0.8, 0.5]] * 3,
        modes=["input"] * 4 + ["input", "ablate"],
        windows=[(0.0, 1.0)] * 4 + [(0.0, 0.5), (0.0, 1.0)],
        sites=["xattn_in.0", "xattn_in.1", "xattn_in.2", "xattn_in.3", "xattn_in.0", "xattn.0+xattn.1"],
    )
    s = summarise(t, "demo", replicates=200)
    assert s.shares["input"]["sites"] == ["xattn_in.0", "xattn_in.1"]
    assert s.shares["input"]["share"] == pytest.approx(0.9)
    assert "ablate" not in s.shares  # one ablated column, a group: no single layers to rank
    assert s.shares["input"]["clear"]
    # no layer restores anything: no share to speak of
    assert short_group("xattn_in.0+xattn_in.1+xattn_in.2") == "xattn_in.0-2"
    assert short_group("xattn.2+xattn.4+xattn.5") == "xattn.2+xattn.4+xattn.5"
    assert short_group("xattn.2+xattn.3") == "xattn.2+xattn.3"
    flat = summarise(table([1.0, 1.0], [0.0, 0.0], [[0.1, -0.1], [-0.1, 0.1]]), "flat", replicates=200)
    assert not flat.shares["input"]["clear"]
    assert "| flat | 2 x 1 |" in write_summary([flat], tmp_path / "flat.md").read_text()
    assert "no layer above 0" in (tmp_path / "flat.md").read_text()
    path = write_csv([s], tmp_path / "impact.csv")
    rows = list(csv.DictReader(path.open()))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 6
    assert rows[4]["window"] == "0-0.5" and rows[5]["mode"] == "ablate" and rows[5]["site"] == "xattn.0+xattn.1"
    assert float(rows[5]["impact"]) == pytest.approx(0.5) and rows[0]["n"] == "3"
    text = write_summary([s], tmp_path / "summary.md").read_text()
    assert "xattn_in.0 0.60 [0.60, 0.60]" in text and "0.90 [0.90, 0.90]" in text and "0-0.5" in text
    assert as_json([s])["concepts"]["demo"]["top2"]["input"]["share"] == pytest.approx(0.9)
    assert plot_heatmaps([s, s], tmp_path / "heat.png").stat().st_size > 0
    assert plot_windows([s], tmp_path / "windows.png").stat().st_size > 0
    with pytest.raises(TadaError, match="no windowed columns"):
        plot_windows([summarise(table([1.0], [0.0], [[0.5]]), replicates=100)], tmp_path / "none.png")


def test_pooled_profile_averages_concepts_replicate_by_replicate(tmp_path):
    a = summarise(table([1.0] * 4, [0.0] * 4, [[0.8, 0.1, 0.1]] * 4), "a", replicates=200)
    rng = np.random.default_rng(1)
    noisy = (np.array([[0.2, 0.6, 0.0]]) + 0.1 * rng.standard_normal((4, 3))).tolist()
    b = summarise(table([1.0] * 4, [0.0] * 4, noisy), "b", replicates=200)
    pooled = pooled_profile([a, b])
    assert pooled["layers"] == ["xattn_in.0", "xattn_in.1", "xattn_in.2"]
    assert pooled["impact"] == pytest.approx(((a.impact + b.impact) / 2).tolist())
    assert pooled["top2"] == ["xattn_in.0", "xattn_in.1"]
    mean = (a.impact + b.impact) / 2
    assert pooled["share"] == pytest.approx((mean[0] + mean[1]) / np.clip(mean, 0, None).sum())
    assert pooled["share_low"] <= pooled["share"] <= pooled["share_high"]
    # the interval is that of the mean of the two concepts' replicates, replicate by replicate
    expected = (a.samples[:, 0] + b.samples[:, 0]) / 2
    assert pooled["low"][0] == pytest.approx(float(np.percentile(expected.numpy(), 2.5)))
    text = write_summary([a, b], tmp_path / "s.md").read_text()
    assert "Mean input impact per layer over the 2 concepts; top two xattn_in.0 and xattn_in.1" in text
    assert as_json([a, b])["pooled"]["input"]["top2"] == ["xattn_in.0", "xattn_in.1"]
