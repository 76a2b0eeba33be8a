"""The training benchmark times a recipe's own step, generated contexts included."""

from __future__ import annotations

import argparse

import torch

from farsight.bench.train import time_steps
from farsight.train.recipes.dynamics import DYNAMICS_RECIPES


def test_time_steps_runs_a_recipe_that_trains_on_its_own_rollouts():
    recipe = DYNAMICS_RECIPES.get("dyn_quickstart")
    assert recipe.rollout_context.fraction > 0  # the path under test
    cfg = recipe.model
    cfg.num_actions = 9
    args = argparse.Namespace(clip_len=recipe.data.clip_len, batch_size=1, repeats=1)
    times, flops, tokens = time_steps(cfg, recipe, args, torch.device("cpu"), "fp32")
    gh, gw = cfg.token_grid
    assert len(times) == 1 and times[0] > 0
    assert flops > 0
    assert tokens == recipe.data.clip_len * gh * gw
