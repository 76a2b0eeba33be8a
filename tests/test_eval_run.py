"""``farsight eval``'s driver: open-loop rollouts of held-out arena clips, every metric, files."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
import torch

from farsight.data.recorder import RecordConfig, record
from farsight.data.store import EpisodeStore, SplitSpec
from farsight.errors import UsageError
from farsight.eval.report import read_metrics, row_to_json
from farsight.eval.run import EvalConfig, evaluate, pick_clips, write_eval
from farsight.sampling import SamplingConfig
from tests.test_sampling import tiny_world_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def arena(tmp_path_factory) -> EpisodeStore:
    """A 32 x 32 arena (ae_tiny's frame size) with ground-truth positions; half held out."""
    path = tmp_path_factory.mktemp("arena") / "store"
    cfg = RecordConfig(frames=200, shard_frames=100)
    cfg.env.size = 32
    cfg.env.arena.episode_steps = 39  # 40 frames per episode
    cfg.split = SplitSpec(seed=0, val=0.0, test=0.5)
    record(cfg, path, progress=False)
    return EpisodeStore(path)


@pytest.fixture(scope="module")
def world_model():
    return tiny_world_model(num_actions=9)  # random weights that do use their actions


def small(**kw) -> EvalConfig:
    base = {"clips": 2, "horizon": 8, "n_boot": 50, "sampling": SamplingConfig(steps=2)}
    return EvalConfig(**{**base, **kw})


def action_blind(world_model):
    """The same model with a zero action embedding: its outputs cannot depend on actions."""
    blind = copy.copy(world_model)
    blind.dynamics = copy.deepcopy(world_model.dynamics)
    with torch.no_grad():
        blind.dynamics.action_embed.weight.zero_()
    return blind


def by_key(rows):
    return {(r.metric, r.scale, r.horizon): r for r in rows}


def test_eval_writes_metrics_plots_strip_and_markdown(arena, world_model, tmp_path):
    result = evaluate(world_model, arena, small(), progress=False)
    rows = by_key(result.rows)
    for h in (1, 2, 4, 8):
        for scale in (1, 4, 8):
            assert ("psnr", scale, h) in rows and ("ssim", scale, h) in rows
        for metric in ("latent_mse", "delta_psnr", "player_error", "object_hit_rate"):
            assert (metric, 1, h) in rows
    assert rows[("psnr", 1, 1)].n == 2 and np.isfinite(rows[("psnr", 1, 8)].value)
    # The arena's readback of the autoencoder's reconstructions, beside the model's.
    for metric in ("ae_player_hit_rate", "ae_object_hit_rate", "ae_player_error"):
        assert (metric, 1, 1) in rows
    assert 0 <= rows[("ae_player_hit_rate", 1, 1)].value <= 1
    assert result.gt.shape == result.gen.shape == (2, 8, 32, 32, 3)
    # The clips are held out and the truth is what the store holds after the prompt.
    test_eps = set(arena.split_episodes("test"))
    assert {c["episode"] for c in result.meta["clips"]} <= test_eps
    first = result.meta["clips"][0]
    truth = arena.read(first["episode"], first["start"] + 4, 8)["frames"]  # prompt of 4
    assert np.array_equal(result.gt[0], truth)

    done = write_eval(result, tmp_path / "eval")
    text = done.read_text()
    assert done.name == "README.md" and "Delta_4 PSNR" in text
    assert "copy the last prompt frame" in text  # the no-model reference on the same clips
    assert "(autoencoder)" in text and "player_hit_rate" in text
    from_json = read_metrics(tmp_path / "eval" / "metrics.json")
    from_csv = read_metrics(tmp_path / "eval" / "metrics.csv")
    assert len(from_json) == len(from_csv) == len(result.rows)
    assert [r.value for r in from_json if r.metric == "psnr"] == [
        r.value for r in result.rows if r.metric == "psnr"
    ]
    with open(tmp_path / "eval" / "metrics.csv") as f:
        assert next(csv.reader(f))[:3] == ["metric", "horizon", "value"]
    meta = json.loads((tmp_path / "eval" / "metrics.json").read_text())["meta"]
    assert meta["prompt_frames"] == 4 and meta["horizon"] == 8
    # The copy-last-frame reference is machine-readable too, and is the copy: at every
    # horizon its PSNR is that of the last prompt frame against the truth.
    reference = read_metrics(tmp_path / "eval" / "reference.json")
    copy_psnr = {r.horizon: r.value for r in reference if r.metric == "psnr" and r.scale == 1}
    assert set(copy_psnr) == {r.horizon for r in result.rows if r.metric == "psnr"}
    last = result.prompts[:, -1:].astype(np.float64)
    mse = ((result.gt.astype(np.float64) - last) ** 2).mean(axis=(0, 2, 3, 4))
    for h, value in copy_psnr.items():
        assert abs(value - 10 * np.log10(255.0**2 / mse[h - 1])) < 1e-6
    for name in ("strip.png", "curve_psnr_s1.png", "curve_delta_psnr_s1.png", "rollout.npz"):
        assert (tmp_path / "eval" / name).stat().st_size > 1000
    with np.load(tmp_path / "eval" / "rollout.npz") as z:
        assert np.array_equal(z["gen"], result.gen)


def test_same_seed_same_numbers(arena, world_model):
    a = evaluate(world_model, arena, small(), progress=False)
    b = evaluate(world_model, arena, small(), progress=False)
    assert [row_to_json(r) for r in a.rows] == [row_to_json(r) for r in b.rows]
    assert np.array_equal(a.gen_random, b.gen_random)
    c = evaluate(world_model, arena, small(seed=1), progress=False)
    assert not np.array_equal(a.gen, c.gen)


def test_delta_psnr_is_zero_for_a_model_that_ignores_actions(arena, world_model):
    blind = evaluate(action_blind(world_model), arena, small(), progress=False)
    assert np.array_equal(blind.gen, blind.gen_random)  # same prompt, same noise
    deltas = [r for r in blind.rows if r.metric == "delta_psnr"]
    assert deltas and all(abs(r.value) < 1e-9 for r in deltas)
    # The same weights with their action embedding generate differently from random actions.
    seeing = evaluate(world_model, arena, small(), progress=False)
    assert not np.array_equal(seeing.gen, seeing.gen_random)
    assert any(abs(r.value) > 1e-3 for r in seeing.rows if r.metric == "delta_psnr")


def test_clips_are_disjoint_windows_spread_over_episodes(arena):
    clips = pick_clips(arena, "test", 12, 5, seed=0)
    eps = arena.split_episodes("test")
    assert len({c.episode for c in clips}) == min(len(eps), 5)
    assert len({(c.episode, c.start) for c in clips}) == len(clips)
    assert all(c.start % 12 == 0 and c.start + 12 <= 40 for c in clips)
    assert pick_clips(arena, "test", 12, 5, seed=0) == clips


def test_bad_input_is_a_clear_error(arena, world_model):
    with pytest.raises(UsageError, match="unknown split 'nope'"):
        evaluate(world_model, arena, small(split="nope"), progress=False)
    with pytest.raises(UsageError, match="no 'val' episodes"):
        evaluate(world_model, arena, small(split="val"), progress=False)
    # A horizon longer than the episodes is lowered to what they allow.
    result = evaluate(world_model, arena, small(clips=1, horizon=500), progress=False)
    assert result.meta["horizon"] == 36 and result.meta["horizon_asked"] == 500
    five_actions = tiny_world_model(num_actions=5)
    with pytest.raises(UsageError, match="has 9 actions"):
        evaluate(five_actions, arena, small(), progress=False)
