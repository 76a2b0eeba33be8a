"""Seconds per training step of a dynamics recipe at several batch sizes, in bf16 and fp32,
with and without its generated contexts (``rollout_context``): does a bigger batch or another
dtype buy clips per second on this machine? The step is ``farsight bench train``'s
(``time_steps``: random latents and actions, the recipe's model, objective and AdamW); the
median of 6 timed steps.

    python docs/results/follow_actions/step_cost.py [--recipe dyn_quickstart] [key.sub=value ...]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from farsight.bench.train import time_steps
from farsight.config import apply_overrides
from farsight.train.recipes.dynamics import DYNAMICS_RECIPES


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
                recipe = apply_overrides(DYNAMICS_RECIPES.get(args.recipe), args.overrides)
                recipe.rollout_context.fraction = fraction
                recipe.model.num_actions = 9
                timing = argparse.Namespace(
                    clip_len=recipe.data.clip_len, batch_size=batch_size, repeats=6
                )
                times, _, _ = time_steps(
                    recipe.model, recipe, timing, torch.device("cpu"), precision
                )
                med = statistics.median(times)
                print(
                    f"{precision} batch {batch_size} generated contexts {fraction:g}: "
                    f"{med:.3f} s/step, {batch_size / med:.1f} clips/s",
                    flush=True,
                )


if __name__ == "__main__":
    main()
