"""``data.min_clip_len``: each step's clips cut to a drawn length, their last frames kept, so
the frame a next-frame objective trains meets its clip's first frame at many distances."""

from __future__ import annotations

import pytest
import torch

from farsight.config import ConfigError
from farsight.train.dynamics_objective import TrainObjective, cut_clips
from farsight.train.recipes.dynamics import DYNAMICS_RECIPES, DynamicsRunConfig

B, CLIP, EXTRA = 3, 10, 2


def batch() -> dict:
    # Frame t of every clip holds the value t: what survives a cut is readable.
    frames = torch.arange(CLIP + EXTRA, dtype=torch.float32)
    latents = frames.view(1, -1, 1, 1, 1).expand(B, -1, 2, 4, 4).clone()
    actions = torch.arange(CLIP + EXTRA).expand(B, -1).clone()
    return {"latents": latents, "actions": actions}


def config(min_clip_len: int) -> DynamicsRunConfig:
    cfg = DynamicsRunConfig()
    cfg.data.clip_len, cfg.data.min_clip_len = CLIP, min_clip_len
    return cfg


def test_cut_clips_keep_their_last_frames_and_draw_every_length_in_range():
    torch.manual_seed(0)
    seen = set()
    for _ in range(200):
        cut, length = cut_clips(batch(), config(6))
        assert 6 <= length <= CLIP
        kept = torch.arange(CLIP - length, CLIP + EXTRA, dtype=torch.float32)
        assert torch.equal(cut["latents"][0, :, 0, 0, 0], kept)  # far-head frames still last
        assert torch.equal(cut["actions"][1], kept.long())
        seen.add(length)
    assert seen == set(range(6, CLIP + 1))


def test_without_min_clip_len_the_batch_is_untouched_and_draws_nothing():
    whole = batch()
    for min_len in (0, CLIP):
        state = torch.random.get_rng_state()
        cut, length = cut_clips(whole, config(min_len))
        assert cut is whole and length == CLIP
        assert torch.equal(torch.random.get_rng_state(), state)


def test_the_same_seed_cuts_the_same_lengths():
    def lengths():
        torch.manual_seed(5)
        return [cut_clips(batch(), config(4))[1] for _ in range(20)]

    assert lengths() == lengths()


def test_the_objective_trains_on_the_cut_clip(monkeypatch):
    from farsight.train import dynamics_objective

    cfg = DYNAMICS_RECIPES.get("dyn_quickstart")
    cfg.data.clip_len, cfg.data.min_clip_len = CLIP, 5
    cfg.grad_cosine_every = 0
    shapes, contexts = [], []

    def objective(model, batch):
        shapes.append(batch["latents"].shape[1])
        return torch.zeros(()), {}

    def own_context(model, batch, cfg, clip_len):
        contexts.append((batch["latents"].shape[1], clip_len))
        return batch

    monkeypatch.setattr(dynamics_objective, "own_context", own_context)
    train = TrainObjective(cfg, start_step=0, is_main=True)
    train.objective = objective
    torch.manual_seed(1)
    for _ in range(10):
        train(None, batch())
    assert all(5 + EXTRA <= s <= CLIP + EXTRA for s in shapes) and len(set(shapes)) > 1
    # The generated context is made for the cut clip, not the configured one.
    assert [c[0] for c in contexts] == shapes and all(n + EXTRA == s for s, n in contexts)


@pytest.mark.parametrize("bad", [1, CLIP + 1])
def test_a_min_clip_len_outside_the_clip_is_refused_by_name(bad):
    cfg = DYNAMICS_RECIPES.get("dyn_quickstart")
    cfg.data.clip_len, cfg.data.min_clip_len = CLIP, bad
    with pytest.raises(ConfigError, match="data.min_clip_len"):
        cfg.validate()


def test_the_atari_recipe_trains_frames_whose_window_lacks_the_clip_start():
    """A rollout past the window never shows the model its clip's first frame; ``dyn_atari``
    trains only such frames, from the first one a rollout generates (the window's length + 1
    after a prompt of a window's frames) up to twice the window."""
    cfg = DYNAMICS_RECIPES.get("dyn_atari").validate()
    window = cfg.model.window
    assert cfg.data.min_clip_len == window + 1
    assert cfg.data.clip_len == 2 * window
