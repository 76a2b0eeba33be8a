"""The training step with RoPE's rotation and the per-action previous-frame matrices as they
were before commit "RoPE's rotation with its own backward" and as they are, timed in turn in
one process on the same draws (the values are the same; only the kernels differ).

    python docs/results/follow_actions/step_ab.py [--recipe dyn_quickstart] [--rounds 12]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from step_profile import recipe_step  # this folder's

import farsight.models.layers as layers


def flip_rotate_parts(x, parts):
    """The rotation as it was: the halves swapped with flip, autograd's backward."""
    c = torch.cat([t for cos, _ in parts for t in (cos, cos)], -1).to(x.dtype)
    s = torch.cat([t for _, sin in parts for t in (-sin, sin)], -1).to(x.dtype)
    halves = x.unflatten(-1, (len(parts), 2, -1)).flip(-2).flatten(-3)
    return torch.addcmul(x * c, halves, s)


def fp32_gather(self, index, dtype):
    """The per-action matrices as they were gathered: B*T matrices from the fp32 table."""
    return self.per_index[index.flatten()].to(dtype)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="dyn_quickstart")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=12)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    train_step = recipe_step(args.recipe)

    def step(seed: int) -> None:
        torch.manual_seed(seed)  # the same generated contexts for every variant
        train_step()

    variants = {
        "before": (flip_rotate_parts, fp32_gather),
        "rotation only": (layers._rotate_parts, fp32_gather),
        "now": (layers._rotate_parts, layers.NeighbourhoodEmbed.index_weights),
    }
    now = variants["now"]
    times = {name: [] for name in variants}
    try:
        for r in range(args.rounds):
            for name, (rotate_parts, index_weights) in variants.items():
                layers._rotate_parts = rotate_parts
                layers.NeighbourhoodEmbed.index_weights = index_weights
                step(r)
                t0 = time.perf_counter()
                step(1000 + r)
                step(2000 + r)
                times[name].append((time.perf_counter() - t0) / 2)
    finally:
        layers._rotate_parts, layers.NeighbourhoodEmbed.index_weights = now
    print(f"{args.recipe}, batch 8, {train_step.precision}, median of {args.rounds} rounds:")
    for name, values in times.items():
        print(f"  {name}: {statistics.median(values) * 1e3:.1f} ms a step")


if __name__ == "__main__":
    main()
