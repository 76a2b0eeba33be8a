"""What every farsight environment provides.

Environments are gymnasium envs with a Discrete action space and uint8 RGB observations of
shape (H, W, 3). Beyond gymnasium they expose:

- ``action_meanings``: one short human-readable name per action (keyboard labels in play);
- ``env_meta()``: a JSON-serialisable dict stored with every recording (env id, size, frame
  skip, ...);
- ``state_spec``: name -> (per-frame shape, dtype) of the ground-truth state the env puts in
  ``info["state"]`` on every reset and step (empty when it has none).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from PIL import Image

StateSpec = dict[str, tuple[tuple[int, ...], str]]


@dataclass
class ArenaConfig:
    """The built-in procedural arena (see farsight/envs/arena.py)."""

    world_size: int = 128
    """Side of the square world in view pixels; the view is ``size`` x ``size``."""
    num_objects: int = 6
    object_radius: float = 3.5
    object_speed: float = 2.0
    """Initial object speed in pixels per step (momentum, bouncing off walls)."""
    player_speed: float = 2.0
    floor_detail: float = 0.35
    """Amplitude (0..1) of the static high-frequency floor texture."""
    pixel_noise: float = 0.0
    """Std of per-frame i.i.d. pixel noise in uint8 units (0 = off)."""
    episode_steps: int = 512
    map_seed: int = 0
    """Seed of the floor map: one fixed map for every episode (a level a model can learn);
    -1 draws a new map from each reset seed (the map must then be remembered in context)."""


@dataclass
class EnvConfig:
    id: str = "arena"
    """'arena' (built-in), 'ALE/<Game>-v5', 'crafter', 'vizdoom/basic' or
    'vizdoom/health_gathering'."""
    size: int = 64
    """Frames are resized to size x size."""
    max_episode_steps: int = 1000
    """Episodes are cut after this many steps (0: never)."""
    arena: ArenaConfig = field(default_factory=ArenaConfig)


class FarsightEnv(gym.Env):
    """Base class: Discrete actions, uint8 (H, W, 3) frames, ground-truth state in info."""

    metadata = {"render_modes": []}
    action_meanings: tuple[str, ...] = ()
    state_spec: StateSpec = {}

    def env_meta(self) -> dict:
        raise NotImplementedError


def resize_area(frame: np.ndarray, size: int) -> np.ndarray:
    """Area-interpolated resize of an (H, W, 3) uint8 frame to (size, size, 3)."""
    if frame.shape[0] == size and frame.shape[1] == size:
        return np.ascontiguousarray(frame)
    # BOX is area averaging: every source pixel contributes by its overlap.
    return np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.BOX))
