"""Atari 2600 games through the Arcade Learning Environment (``ALE/<Game>-v5``).

The game is built with ``gymnasium.make`` so that the id is validated against ale_py's own
registry and the v5 protocol applies: 4 frames per step, sticky actions with probability
0.25, the game's minimal action set. Those three can be overridden by keyword. Sticky actions
draw from the ALE's RNG, which ``reset(seed=...)`` reseeds, so a seed plus an action sequence
fixes the frames.

The 210x160 RGB screen is squeezed to ``size`` x ``size`` by area averaging; the aspect ratio
is not kept, because every farsight model takes square frames. The console RAM (128 bytes)
is the ground-truth state: it costs nothing to read and determines the game completely.

For games with a RAM map (``farsight.envs.atari_ram``: Breakout, Pong) the state also holds
the objects that matter, read from the RAM: ``object_xy`` (K, 2) float32, their centres (x, y)
in pixels of the ``size`` x ``size`` frame (NaN when not visible), ``object_wh`` (K, 2)
float32, the width and height of their visible part (0 when not visible), and
``object_visible`` (K,) bool; ``env_meta()["ram_map"]`` names the K objects and their colours.
"""

from __future__ import annotations

import re
from typing import Any

import ale_py
import gymnasium as gym
import numpy as np

from farsight.config import ConfigError
from farsight.envs.atari_ram import ram_map
from farsight.envs.base import FarsightEnv, StateSpec, resize_area

gym.register_envs(ale_py)

_V5_ID = re.compile(r"ALE/[A-Za-z0-9]+-v5")


def available_games() -> list[str]:
    """The ``ALE/<Game>-v5`` ids that ale_py registers (ROMs are bundled with it)."""
    return sorted(k for k in gym.registry if _V5_ID.fullmatch(k))


class AtariEnv(FarsightEnv):
    """One ALE game with v5 semantics, frames area-resized to ``size`` x ``size``."""

    def __init__(
        self,
        env_id: str,
        size: int = 64,
        frame_skip: int = 4,
        repeat_action_probability: float = 0.25,
        full_action_space: bool = False,
    ) -> None:
        if env_id not in gym.registry or not _V5_ID.fullmatch(env_id):
            games = ", ".join(g[4:-3] for g in available_games())
            raise ConfigError(
                f"unknown ALE game id {env_id!r}; use ALE/<Game>-v5 with <Game> in: {games}"
            )
        self.env_id = env_id
        self.size = size
        self.frame_skip = frame_skip
        self.repeat_action_probability = repeat_action_probability
        self.full_action_space = full_action_space
        self._env = gym.make(
            env_id,
            obs_type="rgb",
            frameskip=frame_skip,
            repeat_action_probability=repeat_action_probability,
            full_action_space=full_action_space,
        )
        self._ale = self._env.unwrapped.ale
        self.action_meanings = tuple(self._env.unwrapped.get_action_meanings())
        self.action_space = gym.spaces.Discrete(len(self.action_meanings))
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.ram_map = ram_map(env_id)
        self.state_spec: StateSpec = {"ram": ((128,), "uint8")}
        if self.ram_map is not None:
            k = len(self.ram_map.objects)
            self.state_spec["object_xy"] = ((k, 2), "float32")
            self.state_spec["object_wh"] = ((k, 2), "float32")
            self.state_spec["object_visible"] = ((k,), "bool")

    def _info(self, ale_info: dict[str, Any]) -> dict[str, Any]:
        # The RAM after the step's last emulator frame is the state of the returned screen
        # (calibrated to the pixel in farsight.envs.atari_ram).
        ram = self._ale.getRAM().copy()
        state: dict[str, np.ndarray] = {"ram": ram}
        if self.ram_map is not None:
            xy, wh, visible = self.ram_map.read(ram, self.size)
            state.update(object_xy=xy, object_wh=wh, object_visible=visible)
        return {
            "lives": int(ale_info["lives"]),
            "episode_frame_number": int(ale_info["episode_frame_number"]),
            "state": state,
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs, info = self._env.reset(seed=seed)
        return resize_area(obs, self.size), self._info(info)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._env.step(int(action))
        frame = resize_area(obs, self.size)
        return frame, float(reward), bool(terminated), bool(truncated), self._info(info)

    def env_meta(self) -> dict[str, Any]:
        spec_kwargs = self._env.spec.kwargs if self._env.spec is not None else {}
        return {
            "env_id": self.env_id,
            "size": self.size,
            "frame_skip": self.frame_skip,
            "action_meanings": list(self.action_meanings),
            "game": str(spec_kwargs.get("game", "")),
            "repeat_action_probability": self.repeat_action_probability,
            "full_action_space": self.full_action_space,
            "max_num_frames_per_episode": int(spec_kwargs.get("max_num_frames_per_episode", 0)),
            "native_shape": list(self._env.observation_space.shape),
            "ale_py_version": ale_py.__version__,
            "ram_map": self.ram_map.meta() if self.ram_map is not None else None,
        }

    def close(self) -> None:
        self._env.close()
