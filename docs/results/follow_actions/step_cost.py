"""Seconds per training step of a dynamics recipe at several batch sizes, in bf16 and fp32,
with and without its generated contexts (``rollout_context``): does a bigger batch or another
dtype buy clips per second on this machine? Random latents and actions, the recipe's model,
objective and AdamW, median of 6 steps after 2 warm-up steps.

    python docs/results/follow_actions/step_cost.py [--recipe dyn_quickstart] [key.sub=value ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from farsight.config import apply_overrides
from farsight.models.dynamics import DynamicsModel
from farsight.objectives import make_objective
from farsight.precision import autocast
from farsight.train.dynamics_objective import own_context
from farsight.train.recipes.dynamics import DYNAMICS_RECIPES


def step_fn(recipe_name: str, overrides: list[str], batch_size: int, precision: str, share: float):
    recipe = apply_overrides(DYNAMICS_RECIPES.get(recipe_name), overrides)
    recipe.rollout_context.fraction = share
    cfg = recipe.model
    cfg.num_actions = 9
    torch.manual_seed(0)
    model = DynamicsModel(cfg)
    objective = make_objective(recipe.objective)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    frames = recipe.data.clip_len + cfg.heads.max_offset - 1
    h, w = cfg.latent_size
    batch = {
        "latents": torch.randn(batch_size, frames, cfg.latent_channels, h, w),
        "actions": torch.randint(0, cfg.num_actions, (batch_size, frames)),
    }
    device = torch.device("cpu")

    def step() -> None:
        with autocast(device, precision):
            shown = own_context(model, batch, recipe, recipe.data.clip_len) if share else batch
            loss, _ = objective(model, shown)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="dyn_quickstart")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    share = DYNAMICS_RECIPES.get(args.recipe).rollout_context.fraction
    for precision in ("bf16", "fp32"):
        for batch_size in (8, 16, 32):
            for fraction in (share, 0.0):
                step = step_fn(args.recipe, args.overrides, batch_size, precision, fraction)
                for _ in range(2):
                    step()
                times = []
                for _ in range(6):
                    t0 = time.perf_counter()
                    step()
                    times.append(time.perf_counter() - t0)
                med = statistics.median(times)
                print(
                    f"{precision} batch {batch_size} generated contexts {fraction:g}: "
                    f"{med:.3f} s/step, {batch_size / med:.1f} clips/s",
                    flush=True,
                )


if __name__ == "__main__":
    main()
