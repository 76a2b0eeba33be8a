"""ViZDoom scenarios bundled with the vizdoom package (``basic``, ``health_gathering``, ...).

A scenario is a ``<name>.cfg`` + ``<name>.wad`` pair in ``vizdoom.scenarios_path``; its .cfg
sets the map, rewards, episode timeout, buttons and game variables. On top of it the game
runs headless (no window, no sound), renders RGB24 at 160x120, and frames are area-resized
to ``size`` x ``size`` (the 4:3 aspect ratio is not kept: farsight models take square frames).

Actions: vizdoom takes one value per button; the discrete set exposed here is no-op, each
binary button alone, and each pair of binary buttons that do not cancel out (e.g. no
``move_left+move_right``). For ``basic`` (move_left, move_right, attack) and
``health_gathering`` (turn_left, turn_right, move_forward) that is 6 actions: every
meaningful combination. Delta (analog) buttons are left out.

One step holds the action for ``frame_skip`` tics (default 4) and renders only the last.
Episodes end on the scenario's goal, the player's death (``terminated``) or its
``episode_timeout`` (``truncated``). vizdoom has no screen once an episode is finished, so
the final step repeats the last frame.

Seeding: each reset draws the game seed from ``np_random`` (reseeded by ``reset(seed=s)``)
and calls ``game.set_seed`` before ``new_episode``, so episodes are reproducible by seed.
The scenario's game variables (e.g. AMMO2, HEALTH) are the ground-truth state.

The Doom process writes ``_vizdoom.ini`` and a ``_vizdoom/`` folder into its working
directory; both are redirected to a temporary directory removed by ``close()``.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import weakref
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import vizdoom as vzd

from farsight.config import ConfigError
from farsight.envs.base import FarsightEnv, StateSpec, resize_area

# Pairs of buttons that cancel each other out; pressing both is a no-op in disguise.
_OPPOSITE = {
    frozenset({vzd.Button.MOVE_LEFT, vzd.Button.MOVE_RIGHT}),
    frozenset({vzd.Button.TURN_LEFT, vzd.Button.TURN_RIGHT}),
    frozenset({vzd.Button.MOVE_FORWARD, vzd.Button.MOVE_BACKWARD}),
    frozenset({vzd.Button.LOOK_UP, vzd.Button.LOOK_DOWN}),
    frozenset({vzd.Button.MOVE_UP, vzd.Button.MOVE_DOWN}),
}
_RESOLUTION = vzd.ScreenResolution.RES_160X120


def available_scenarios() -> list[str]:
    """Names of the bundled scenarios: a .cfg with a .wad of the same name."""
    root = Path(vzd.scenarios_path)
    return sorted(p.stem for p in root.glob("*.cfg") if p.with_suffix(".wad").exists())


def _name(item: vzd.Button | vzd.GameVariable) -> str:
    return item.name.lower()


class VizDoomEnv(FarsightEnv):
    """A bundled ViZDoom scenario as a Discrete-action env of uint8 RGB frames."""

    def __init__(self, scenario: str, size: int = 64, frame_skip: int = 4) -> None:
        if scenario not in available_scenarios():
            raise ConfigError(
                f"unknown vizdoom scenario {scenario!r}; available: "
                + ", ".join(available_scenarios())
            )
        self.scenario = scenario
        self.size = size
        self.frame_skip = frame_skip
        self._tmp = tempfile.TemporaryDirectory(prefix="farsight-vizdoom-")

        game = vzd.DoomGame()
        game.load_config(os.path.join(vzd.scenarios_path, f"{scenario}.cfg"))
        game.set_window_visible(False)
        game.set_sound_enabled(False)
        game.set_screen_format(vzd.ScreenFormat.RGB24)
        game.set_screen_resolution(_RESOLUTION)
        game.set_mode(vzd.Mode.PLAYER)
        game.set_doom_config_path(os.path.join(self._tmp.name, "_vizdoom.ini"))
        # The Doom process inherits the cwd at init() and creates ./_vizdoom/ there.
        cwd = os.getcwd()
        os.chdir(self._tmp.name)
        try:
            game.init()
        finally:
            os.chdir(cwd)
        self._game = game
        # Finalizers run newest first at exit, so an env never closed still stops Doom (which
        # saves its .ini) before the temporary directory is removed.
        self._stop_game = weakref.finalize(self, game.close)

        buttons = list(game.get_available_buttons())
        binary = [i for i, b in enumerate(buttons) if "DELTA" not in b.name]
        combos: list[tuple[int, ...]] = [()] + [(i,) for i in binary]
        combos += [
            (i, j)
            for i, j in itertools.combinations(binary, 2)
            if frozenset({buttons[i], buttons[j]}) not in _OPPOSITE
        ]
        self._actions = [[1.0 if i in c else 0.0 for i in range(len(buttons))] for c in combos]
        self.action_meanings = tuple(
            "+".join(_name(buttons[i]) for i in c) if c else "noop" for c in combos
        )
        self._buttons = buttons
        self._variables = list(game.get_available_game_variables())
        self.state_spec: StateSpec = {_name(v): ((1,), "float32") for v in self._variables}
        self.action_space = gym.spaces.Discrete(len(self._actions))
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self._last_frame = np.zeros((size, size, 3), np.uint8)

    def _observe(self) -> tuple[np.ndarray, dict[str, Any]]:
        game = self._game
        if not game.is_episode_finished():
            self._last_frame = resize_area(game.get_state().screen_buffer, self.size)
        # get_game_variable still answers after the episode ended (get_state() does not).
        state = {
            _name(v): np.array([game.get_game_variable(v)], np.float32) for v in self._variables
        }
        return self._last_frame, {"state": state}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._game.set_seed(int(self.np_random.integers(2**31 - 1)))
        self._game.new_episode()
        return self._observe()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        game = self._game
        reward = game.make_action(self._actions[int(action)], self.frame_skip)
        terminated = truncated = False
        if game.is_episode_finished():
            truncated = game.is_episode_timeout_reached() and not game.is_player_dead()
            terminated = not truncated
        frame, info = self._observe()
        return frame, float(reward), terminated, truncated, info

    def env_meta(self) -> dict[str, Any]:
        game = self._game
        return {
            "env_id": f"vizdoom/{self.scenario}",
            "size": self.size,
            "frame_skip": self.frame_skip,
            "action_meanings": list(self.action_meanings),
            "scenario": self.scenario,
            "buttons": [_name(b) for b in self._buttons],
            "game_variables": [_name(v) for v in self._variables],
            "screen_resolution": f"{game.get_screen_width()}x{game.get_screen_height()}",
            "episode_timeout_tics": int(game.get_episode_timeout()),
            "episode_start_time_tics": int(game.get_episode_start_time()),
            "living_reward": float(game.get_living_reward()),
            "death_penalty": float(game.get_death_penalty()),
            "doom_skill": int(game.get_doom_skill()),
            "vizdoom_version": vzd.__version__,
        }

    def close(self) -> None:
        self._stop_game()
        self._tmp.cleanup()
