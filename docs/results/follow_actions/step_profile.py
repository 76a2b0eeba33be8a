"""Where a dynamics training step's time goes, and what three of its parts cost.

Prints (1) torch's profiler table of ``farsight bench train``'s step (the recipe's model,
objective, generated contexts and AdamW on random latents, bf16 autocast where the CPU has
it), (2) AdamW's step with torch's per-tensor loop and fused, and (3) the recipe's generated
contexts (``own_context``) with ``attend`` as it is and with torch's fused kernel for every
call, interleaved over the same draws. ``--compile`` also tries ``torch.compile`` on the
model.

    python docs/results/follow_actions/step_profile.py [--recipe dyn_quickstart] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import farsight.models.layers as layers
from farsight.models.dynamics import DynamicsModel
from farsight.objectives import make_objective
from farsight.precision import autocast, resolve_precision
from farsight.train.dynamics_objective import own_context
from farsight.train.recipes.dynamics import DYNAMICS_RECIPES
from farsight.train.schedule import make_optimizer


def fused_attend(q, k, v, mask=None):
    """torch's kernel for every call, bf16 run in fp32 (``attend`` without autograd)."""
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else v.dtype
    with torch.autocast("cpu", enabled=False):
        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    return out.to(dtype)


@dataclass
class RecipeStep:
    """A recipe's model, optimizer and one batch of random latents, and its training step."""

    model: DynamicsModel
    batch: dict
    recipe: object
    precision: str

    def __post_init__(self) -> None:
        self.objective = make_objective(self.recipe.objective)
        self.optimizer = make_optimizer(self.model, self.recipe.train.optim)
        self.trained = self.model

    def __call__(self) -> None:
        recipe, clip = self.recipe, self.recipe.data.clip_len
        with autocast(torch.device("cpu"), self.precision):
            shown = (
                own_context(self.model, self.batch, recipe, clip)
                if recipe.rollout_context.fraction
                else self.batch
            )
            loss, _ = self.objective(self.trained, shown)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def recipe_step(name: str, batch_size: int = 8) -> RecipeStep:
    """``name``'s training step on the CPU at ``batch_size`` clips (9 actions, seed 0)."""
    precision = resolve_precision("auto", torch.device("cpu"))
    recipe = DYNAMICS_RECIPES.get(name)
    cfg = recipe.model
    cfg.num_actions = 9
    torch.manual_seed(0)
    model = DynamicsModel(cfg)
    frames = recipe.data.clip_len + cfg.heads.max_offset - 1
    batch = {
        "latents": torch.randn(batch_size, frames, cfg.latent_channels, *cfg.latent_size),
        "actions": torch.randint(0, cfg.num_actions, (batch_size, frames)),
    }
    return RecipeStep(model, batch, recipe, precision)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="dyn_quickstart")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--compile", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    step = recipe_step(args.recipe, args.batch_size)
    model, batch, recipe, precision = step.model, step.batch, step.recipe, step.precision
    clip = recipe.data.clip_len
    if args.compile:
        step.trained = torch.compile(model)

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    print(f"{args.recipe}, batch {args.batch_size}, {precision}, 3 steps:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))

    for p_ in model.parameters():
        p_.grad = torch.randn_like(p_)
    for fused in (False, True):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)
        times = []
        for _ in range(25):
            t0 = time.perf_counter()
            opt.step()
            times.append(time.perf_counter() - t0)
        print(f"AdamW fused={fused}: {statistics.median(times[3:]) * 1e3:.1f} ms a step")

    ours, totals = layers.attend, {"attend": [], "fused kernel": []}
    try:
        for draw in range(6):
            for name, fn in (("attend", ours), ("fused kernel", fused_attend)):
                layers.attend = fn
                torch.manual_seed(draw)
                t0 = time.perf_counter()
                with autocast(device, precision):
                    for _ in range(4):
                        own_context(model, batch, recipe, clip)
                totals[name].append((time.perf_counter() - t0) / 4)
    finally:
        layers.attend = ours
    for name, values in totals.items():
        print(f"own_context with {name}: {statistics.median(values) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
