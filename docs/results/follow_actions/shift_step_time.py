"""What ``model.shift_reference`` costs a training step: paired timing on the quickstart's shape.

``dyn_quickstart``'s objective (forward, backward and an AdamW step) on random latents of the
quickstart's shape (batch 8, clips of 12 frames of 16 x 16 x 8 latents, 9 actions), without
the change, with ``model.shift_reference=1`` and with ``shift_learned`` as well, one step of
each in turn; prints each one's median over the repeats (the first 3 left out) and its ratio
to the recipe's.

    python docs/results/follow_actions/shift_step_time.py [--repeats 25] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from farsight.config import build_config
from farsight.models.dynamics import DynamicsModel
from farsight.objectives import make_objective
from farsight.train.recipes.dynamics import DYNAMICS_RECIPES

FIXED = ["model.latent_channels=8", "model.latent_size=[16,16]", "model.num_actions=9"]
VARIANTS = {
    "dyn_quickstart": [],
    "model.shift_reference=1": ["model.shift_reference=1"],
    "+ model.shift_learned=true": ["model.shift_reference=1", "model.shift_learned=true"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=25)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.repeats < 4:
        raise SystemExit(f"--repeats {args.repeats}: at least 4 (the first 3 are left out)")
    torch.set_num_threads(args.threads)
    parts = {}
    for name, overrides in VARIANTS.items():
        cfg = build_config(DYNAMICS_RECIPES, "dyn_quickstart", overrides + FIXED, [])
        torch.manual_seed(0)
        model = DynamicsModel(cfg.model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        parts[name] = (model, make_objective(cfg.objective), opt)
    g = torch.Generator().manual_seed(0)
    batch = {"latents": torch.randn(8, 12, 8, 16, 16), "actions": torch.randint(0, 9, (8, 12))}
    times = {name: [] for name in parts}
    for _ in range(args.repeats):
        for name, (model, objective, opt) in parts.items():
            start = time.perf_counter()
            loss, _ = objective(model, batch, g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["dyn_quickstart"][3:])
    for name, t in times.items():
        median = statistics.median(t[3:])
        print(f"{name}: {median * 1000:.1f} ms a step ({median / base:.3f}x)")


if __name__ == "__main__":
    main()
