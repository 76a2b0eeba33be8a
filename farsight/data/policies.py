"""Behaviour policies for recording.

A world model learns only the dynamics its data shows. Uniform random actions that change
every frame make the player jitter in place; holding an action for a random number of steps
produces sustained motion, which is what long-range prediction needs to see.

A policy is made by ``make_policy(cfg, num_actions, rng)`` and called as ``policy(frame)``;
add one with ``register_policy(name, factory)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from farsight.config import ConfigError

Policy = Callable[[np.ndarray], int]
PolicyFactory = Callable[["PolicyConfig", int, np.random.Generator], Policy]


@dataclass
class PolicyConfig:
    kind: str = "repeat"
    """'repeat' (random action held for a random number of steps), 'sticky', 'uniform'."""
    min_repeat: int = 1
    max_repeat: int = 12
    stick_prob: float = 0.8
    """sticky: probability of repeating the previous action each step."""


def _uniform(cfg: PolicyConfig, num_actions: int, rng: np.random.Generator) -> Policy:
    return lambda frame: int(rng.integers(num_actions))


def _repeat(cfg: PolicyConfig, num_actions: int, rng: np.random.Generator) -> Policy:
    if not 1 <= cfg.min_repeat <= cfg.max_repeat:
        raise ConfigError(
            f"policy.min_repeat={cfg.min_repeat} and policy.max_repeat={cfg.max_repeat} "
            "must satisfy 1 <= min_repeat <= max_repeat"
        )
    action, left = 0, 0

    def act(frame: np.ndarray) -> int:
        nonlocal action, left
        if left == 0:
            action = int(rng.integers(num_actions))
            left = int(rng.integers(cfg.min_repeat, cfg.max_repeat + 1))
        left -= 1
        return action

    return act


def _sticky(cfg: PolicyConfig, num_actions: int, rng: np.random.Generator) -> Policy:
    if not 0.0 <= cfg.stick_prob < 1.0:
        raise ConfigError(f"policy.stick_prob={cfg.stick_prob} must be in [0, 1)")
    action = int(rng.integers(num_actions))

    def act(frame: np.ndarray) -> int:
        nonlocal action
        if rng.random() >= cfg.stick_prob:
            action = int(rng.integers(num_actions))
        return action

    return act


POLICIES: dict[str, PolicyFactory] = {"uniform": _uniform, "repeat": _repeat, "sticky": _sticky}


def register_policy(name: str, factory: PolicyFactory) -> None:
    POLICIES[name] = factory


def make_policy(cfg: PolicyConfig, num_actions: int, rng: np.random.Generator) -> Policy:
    if cfg.kind not in POLICIES:
        raise ConfigError(f"policy.kind={cfg.kind!r} is unknown; known: {', '.join(POLICIES)}")
    return POLICIES[cfg.kind](cfg, num_actions, rng)
