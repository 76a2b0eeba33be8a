"""Report writing: metrics files round-trip, seeds fold into t intervals, PNGs and markdown."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pytest
from PIL import Image

from farsight.eval.metrics import MetricRow, horizons, rollout_metrics
from farsight.eval.report import (
    TABLE_HORIZONS,
    lower_is_better,
    markdown_table,
    paired_differences,
    plot_series,
    read_metrics,
    summarize,
    summary_table,
    write_metrics,
    write_report,
    write_strip,
)
from farsight.eval.stats import mean_ci, t_quantile


def synthetic_rows(variants=("baseline", "multiframe"), seeds=(0, 1, 2), max_h=64):
    """PSNR decaying with log2 horizon, the second variant 1 dB better, seed noise."""
    rng = np.random.default_rng(0)
    rows = []
    for v, variant in enumerate(variants):
        for seed in seeds:
            offset = rng.normal(0.0, 0.3)
            for h in horizons(max_h):
                for scale in (1, 4):
                    value = 30.0 - 2.0 * math.log2(h) + v + offset + 3.0 * (scale > 1)
                    rows.append(
                        MetricRow("psnr", h, value, scale, value - 1, value + 1, 16, variant, seed)
                    )
                rows.append(
                    MetricRow("object_error", h, 0.5 * h**0.5, 1, n=40, variant=variant, seed=seed)
                )
    return rows


def assert_png(path, min_bytes=3000):
    assert path.exists() and path.stat().st_size > min_bytes
    pixels = np.asarray(Image.open(path).convert("RGB"))
    assert pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert pixels.std() > 5.0  # not a blank canvas


def test_metrics_round_trip_through_json_and_csv_including_inf_and_nan(tmp_path):
    rows = [
        MetricRow("psnr", 1, math.inf, 1, math.inf, math.inf, 4, "a", 0),
        MetricRow("object_error", 2, math.nan, 1, n=0),
        MetricRow("ssim", 4, 0.75, 8, 0.7, 0.8, 12, "b", 3),
    ]
    json_path, csv_path = write_metrics(tmp_path, rows, meta={"checkpoint": "x.pt"})

    obj = json.loads(json_path.read_text())  # strict JSON: no NaN / Infinity tokens
    assert "NaN" not in json_path.read_text() and "Infinity" not in json_path.read_text()
    assert obj["meta"] == {"checkpoint": "x.pt"}
    assert obj["rows"][0]["value"] == "inf" and obj["rows"][1]["value"] is None
    with csv_path.open(newline="") as f:
        lines = list(csv.DictReader(f))
    assert [d["metric"] for d in lines] == ["psnr", "object_error", "ssim"]
    assert lines[0]["value"] == "inf" and lines[1]["value"] == "" and lines[1]["seed"] == ""

    for path in (json_path, csv_path):
        back = read_metrics(path)
        assert len(back) == 3
        assert back[0] == rows[0] and back[2] == rows[2]
        assert math.isnan(back[1].value) and back[1].seed is None and back[1].n == 0
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_summarize_folds_seeds_with_a_t_interval():
    rows = synthetic_rows()
    summary = summarize(rows)
    s = next(
        x
        for x in summary
        if (x.variant, x.metric, x.scale, x.horizon) == ("multiframe", "psnr", 1, 4)
    )
    values = [
        r.value
        for r in rows
        if (r.variant, r.metric, r.scale, r.horizon) == ("multiframe", "psnr", 1, 4)
    ]
    assert len(values) == 3 and s.n == 3 and s.ci == "t over seeds"
    assert s.mean == pytest.approx(np.mean(values))
    half = t_quantile(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
    assert s.high - s.mean == pytest.approx(half)

    # One seed: the row's own bootstrap interval over clips, labelled as such.
    single = summarize([r for r in rows if r.seed == 0])
    assert {x.ci for x in single if x.metric == "psnr"} == {"bootstrap over clips"}
    assert {x.ci for x in single if x.metric == "object_error"} == {"none"}

    with pytest.raises(ValueError, match="repeat"):
        summarize(rows + rows[:1])


def test_paired_differences_by_seed():
    rows = synthetic_rows()
    diffs = paired_differences(rows, baseline="baseline")
    d = next(x for x in diffs if (x.metric, x.scale, x.horizon) == ("psnr", 1, 16))
    assert d.variant == "multiframe - baseline" and d.n == 3
    base = {
        r.seed: r.value
        for r in rows
        if (r.variant, r.metric, r.scale, r.horizon) == ("baseline", "psnr", 1, 16)
    }
    other = {
        r.seed: r.value
        for r in rows
        if (r.variant, r.metric, r.scale, r.horizon) == ("multiframe", "psnr", 1, 16)
    }
    expected = mean_ci([other[s] - base[s] for s in (0, 1, 2)])
    assert d.mean == pytest.approx(expected.estimate) and d.low == pytest.approx(expected.low)


def test_summary_table_uses_the_horizons_that_exist():
    table = summary_table(summarize(synthetic_rows(max_h=8)))
    header = table.splitlines()[0]
    assert "h=1" in header and "h=4" in header
    assert "h=16" not in header and "h=64" not in header
    full = summary_table(summarize(synthetic_rows()))
    assert all(f"h={h}" in full.splitlines()[0] for h in TABLE_HORIZONS)
    assert "psnr ↑" in full and "object_error ↓" in full
    assert lower_is_better("object_miss_rate") and not lower_is_better("delta_psnr")


def test_write_report_writes_parsable_files_plots_and_markdown(tmp_path):
    rows = synthetic_rows()
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    strip = write_strip(
        tmp_path / "strip_clip0.png",
        gt,
        {"baseline": np.roll(gt, 1, axis=1), "multiframe": gt},
        horizons=[1, 4, 16, 64],
        title="clip 0",
    )
    cosine = plot_series(
        tmp_path / "grad_cosine.png",
        {
            "multiframe/head2": [
                ([0, 100, 200], [0.1, 0.3, 0.2]),
                ([0, 100, 200], [0.2, 0.1, 0.3]),
            ],
            "multiframe/head4": [
                ([0, 100, 200], [-0.1, 0.0, 0.1]),
                ([0, 100, 200], [0.0, 0.1, 0.0]),
            ],
        },
        title="per-head gradient cosine with the next-frame head",
        ylabel="cosine",
    )
    cost = markdown_table(["variant", "GPU hours"], [["baseline", 1.0], ["multiframe", 1.0]])
    out = write_report(
        tmp_path,
        rows,
        title="Ablation",
        baseline="baseline",
        strips=[strip],
        extra_images=[cosine],
        sections=[("Training cost", cost)],
    )

    assert len(read_metrics(out["json"])) == len(rows)
    assert len(read_metrics(out["csv"])) == len(rows)
    summary = json.loads(out["summary"].read_text())
    assert {s["variant"] for s in summary} == {"baseline", "multiframe"}
    # psnr at two scales and object_error: one curve each.
    assert sorted(p.name for p in out["curves"]) == [
        "curve_object_error_s1.png",
        "curve_psnr_s1.png",
        "curve_psnr_s4.png",
    ]
    for path in [*out["curves"], strip, cosine]:
        assert_png(path)

    md = out["markdown"].read_text()
    assert md.startswith("# Ablation")
    for needle in ("h=1", "h=4", "h=16", "h=64", "multiframe - baseline", "Training cost"):
        assert needle in md
    for link in ("strip_clip0.png", "grad_cosine.png", "curve_psnr_s4.png"):
        assert f"]({link})" in md


def test_end_to_end_from_frames(tmp_path):
    rng = np.random.default_rng(2)
    gt = rng.integers(30, 220, (4, 8, 32, 32, 3), dtype=np.uint8)
    noise = rng.integers(-12, 13, gt.shape)
    runs = []
    for seed in (0, 1):
        gen = np.clip(gt.astype(int) + noise * (1 + seed), 0, 255).astype(np.uint8)
        rows = rollout_metrics(gt, gen, scales=(1, 4), n_boot=200)
        runs += [dataclasses.replace(r, variant="model", seed=seed) for r in rows]
    out = write_report(tmp_path, runs)
    back = read_metrics(out["csv"])
    assert {r.metric for r in back} == {"mse", "psnr", "ssim"}
    assert {r.seed for r in back} == {0, 1}
    assert_png(out["curves"][0])


def test_strip_rejects_mismatched_rows(tmp_path):
    gt = np.zeros((8, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="strip row 'model'"):
        write_strip(tmp_path / "s.png", gt, {"model": gt[:4]}, horizons=[1])
    with pytest.raises(ValueError, match="within"):
        write_strip(tmp_path / "s.png", gt, {"model": gt}, horizons=[9])
