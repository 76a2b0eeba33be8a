"""Crafter (Hafner 2021), wrapped into the gymnasium API.

Crafter renders at any resolution, so frames come natively at ``size`` x ``size`` (64 is its
own default) and need no resize. Its API is the old gym one: ``done`` is split here into
``terminated`` (the player died: crafter's ``discount`` is 0) and ``truncated`` (``length``
steps reached; crafter's default is 10000).

Seeding: crafter takes its seed at construction and derives episode k's world from
``hash((seed, k))``, so the world depends on how many resets came before. To make
``reset(seed=s)`` reproducible, every reset builds a fresh crafter.Env with a seed drawn from
this env's ``np_random`` (reseeded by ``reset(seed=s)``). A reset generates a new
64x64-cell world, which takes about a second.

Ground-truth state: the player's cell position and its 16 inventory counters (health, food,
drink, energy, materials, tools), all read from the crafter objects at no cost.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import crafter
import gymnasium as gym
import numpy as np

from farsight.envs.base import FarsightEnv, StateSpec

INVENTORY_ITEMS: tuple[str, ...] = tuple(crafter.constants.items)


class _SeededCrafter(crafter.Env):
    """crafter.Env whose creature despawning depends on the seed alone."""

    def _balance_object(self, chunk: tuple[int, ...], objs: set[Any], *args: Any) -> None:
        # crafter keeps a chunk's objects in a set, iterated in memory-address order, and picks
        # the creature to despawn by a seeded index into it: the same seed then gives different
        # episodes from one process to the next. Cells hold one object, so sorting by cell
        # fixes the order.
        super()._balance_object(chunk, sorted(objs, key=lambda o: tuple(o.pos)), *args)


class CrafterEnv(FarsightEnv):
    """Crafter with gymnasium's reset/step, per-reset seeding and inventory state."""

    action_meanings: tuple[str, ...] = tuple(crafter.constants.actions)
    state_spec: StateSpec = {
        "player_pos": ((2,), "float32"),
        "inventory": ((len(INVENTORY_ITEMS),), "float32"),
    }

    def __init__(self, size: int = 64, length: int = 10000) -> None:
        self.size = size
        self.length = length
        self.action_space = gym.spaces.Discrete(len(self.action_meanings))
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        # Replaced on every reset (see module docstring); built here for env_meta().
        self._env = self._make(0)

    def _make(self, seed: int) -> crafter.Env:
        return _SeededCrafter(size=(self.size, self.size), length=self.length, seed=seed)

    def _state(self) -> dict[str, np.ndarray]:
        player = self._env._player
        return {
            "player_pos": np.asarray(player.pos, dtype=np.float32),
            "inventory": np.array([player.inventory[k] for k in INVENTORY_ITEMS], np.float32),
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # crafter.Env can only be seeded at construction; building one costs ~50 ms, against
        # ~1 s for the world generation that reset() does anyway.
        self._env = self._make(int(self.np_random.integers(2**31 - 1)))
        obs = self._env.reset()
        achievements = {name: 0 for name in crafter.constants.achievements}
        return np.ascontiguousarray(obs), {"state": self._state(), "achievements": achievements}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, done, info = self._env.step(int(action))
        terminated = bool(info["discount"] == 0)
        truncated = bool(done) and not terminated
        out = {"state": self._state(), "achievements": info["achievements"]}
        return np.ascontiguousarray(obs), float(reward), terminated, truncated, out

    def env_meta(self) -> dict[str, Any]:
        return {
            "env_id": "crafter",
            "size": self.size,
            "frame_skip": 1,
            "action_meanings": list(self.action_meanings),
            "length": self.length,
            "area": list(self._env._area),
            "view": [int(v) for v in self._env._view],
            "inventory_items": list(INVENTORY_ITEMS),
            "crafter_version": version("crafter"),
        }

    def close(self) -> None:
        # Crafter is pure Python and holds no external resources.
        self._env = None
