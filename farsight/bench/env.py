"""Environment steps/s with a random policy, rendering every frame, on one core."""

from __future__ import annotations

import argparse

import numpy as np

from farsight.bench import Row, median_rate
from farsight.envs import EnvConfig, make_env

DEFAULT_ENVS = ["arena", "ALE/Breakout-v5", "crafter", "vizdoom/health_gathering"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--envs", nargs="+", default=DEFAULT_ENVS)
    p.add_argument("--steps", type=int, default=5000, help="steps per repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--size", type=int, default=64)


def env_rate(env_id: str, size: int, steps: int, repeats: int) -> float:
    env = make_env(EnvConfig(id=env_id, size=size))
    rng = np.random.default_rng(0)
    n_actions = env.action_space.n
    env.reset(seed=0)

    def run() -> int:
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(int(rng.integers(n_actions)))
            if terminated or truncated:
                env.reset(seed=int(rng.integers(1 << 30)))
        return steps

    rate, _ = median_rate(run, repeats=repeats)
    env.close()
    return rate


def run(args: argparse.Namespace) -> list:
    # lazy: torch, when the benchmark runs; `farsight bench env --help` imports this module.
    import torch

    torch.set_num_threads(1)
    rows = []
    for env_id in args.envs:
        rate = env_rate(env_id, args.size, args.steps, args.repeats)
        note = f"{args.size}x{args.size}, resets included"
        if env_id == "arena":
            note += "; goal >= 5,000"
        rows.append(Row(f"{env_id} steps/s", rate, "steps/s", note))
    return rows
