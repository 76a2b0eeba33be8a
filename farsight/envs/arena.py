"""The built-in procedural arena: a pure-numpy top-down world that probes what world models miss.

What it exercises, and how:

- Action conditioning: the camera follows a player moved by 9 actions (no-op + 8 directions).
- Long-range motion: ``num_objects`` discs move at constant speed and bounce off the walls of a
  world larger than the view, so their momentum must be carried across frames, including while
  they are off-screen. Touching an object gives reward +1 and knocks it away from the player.
- Readback: the player and every object have a unique colour that the floor and walls never
  come close to (floor and walls are muted, objects fully saturated, the player white), so
  positions can be measured in generated frames (``locate_by_color``) and compared with the
  ground truth in ``info["state"]``.
- Resolution: the floor has low-frequency structure (muted Voronoi regions with dark borders, so
  the camera position can be inferred from the view and revisits are recognisable) plus a static
  per-pixel texture of amplitude ``floor_detail`` and optional per-frame i.i.d. pixel noise of
  std ``pixel_noise``: high-frequency content that dominates a full-resolution loss but averages
  out when downsampled.

Conventions: positions are (x, y) in world pixels, x to the right and y down; one world pixel is
one view pixel. Pixel (row i, column j) covers [j, j+1) x [i, i+1), so its centre is
(j + 0.5, i + 0.5). The world is ``world_size`` px square, its outer ``WALL_WIDTH`` px are wall.
The camera (top-left corner of the view, always whole pixels) centres on the player and is
clamped to the world, so the walls come into view near the edges and the view never shows
anything outside the world.

Determinism: ``reset(seed=s)`` fixes the episode given the actions: the initial player and object
state and the pixel-noise stream all come from the seed. The floor comes from
``ArenaConfig.map_seed`` (one fixed map, like a game level) or, when that is negative, from the
reset seed (a new map per episode).

Speed: the world image is rendered once per map; a step copies the view out of it and stamps the
discs and the player's square from masks precomputed at 1/8-pixel phases, so drawing costs a few
small numpy calls per shape and never loops over pixels in Python.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from statistics import NormalDist
from typing import Any

import numpy as np
from gymnasium import spaces

from farsight.config import ConfigError
from farsight.envs.base import ArenaConfig, FarsightEnv, StateSpec

ACTION_MEANINGS = (
    "NOOP",
    "UP",
    "RIGHT",
    "LEFT",
    "DOWN",
    "UPRIGHT",
    "UPLEFT",
    "DOWNRIGHT",
    "DOWNLEFT",
)
_D = math.sqrt(0.5)
# Unit (dx, dy) per action with y down; diagonals are normalised so the speed is the same in
# every direction.
ACTION_DIRECTIONS = np.array(
    [[0, 0], [0, -1], [1, 0], [-1, 0], [0, 1], [_D, -_D], [-_D, -_D], [_D, _D], [-_D, _D]]
)
_DIRECTIONS = ACTION_DIRECTIONS.tolist()

PLAYER_COLOR = np.array([255, 255, 255], dtype=np.uint8)
# Object i is drawn in OBJECT_COLORS[i]. The first six are pairwise 255 apart (max over
# channels); the next six sit between them, at least 127 from any other entry.
OBJECT_COLORS = np.array(
    [
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [255, 255, 0],
        [0, 255, 255],
        [255, 0, 255],
        [255, 128, 0],
        [128, 255, 0],
        [0, 255, 128],
        [0, 128, 255],
        [128, 0, 255],
        [255, 0, 128],
    ],
    dtype=np.uint8,
)

WALL_WIDTH = 6
REGION_SIZE = 40
"""Spacing in px of the floor's Voronoi regions (about one or two per view side at 64 px)."""

# Floor pixels stay within [_FLOOR_MIN, _FLOOR_MAX] with channel spread <= 40 (texture and
# borders shift all channels equally, clipping only shrinks the spread). Any saturated colour
# has one channel at 255 and one at 0, so it is >= (255 - 40) / 2 > 100 from every floor pixel,
# and white is >= 255 - _FLOOR_MAX = 79 away; walls are greys, >= 155 from both.
_FLOOR_MIN, _FLOOR_MAX = 48, 176
_FLOOR_PALETTE = np.array(
    [
        [132, 120, 96],
        [100, 120, 92],
        [96, 108, 132],
        [132, 104, 98],
        [116, 108, 136],
        [94, 124, 120],
        [124, 124, 90],
        [128, 106, 120],
    ],
    dtype=np.float64,
)
_DETAIL_SCALE = 48.0
"""Texture half-range in uint8 units at floor_detail = 1."""
_BORDER_SHADE = 36.0
_WALL_GREYS = (72, 100)

_PHASES = 8
"""Sub-pixel phases per axis of the precomputed shape masks: positions are drawn to 1/16 px, and
the centroid of a hard-edged disc or square is within about 0.2 px of its centre on top of that
(``locate_by_color`` reads positions back to about 0.25 px)."""


def _render_world(cfg: ArenaConfig, rng: np.random.Generator) -> np.ndarray:
    """The static (world_size, world_size, 3) uint8 image: textured Voronoi floor inside walls."""
    w = cfg.world_size
    n = math.ceil(w / REGION_SIZE)
    grid_x, grid_y = np.meshgrid(np.arange(n), np.arange(n))
    seeds = (np.stack([grid_x, grid_y], -1) + rng.uniform(0.15, 0.85, (n, n, 2))) * REGION_SIZE
    region_color = rng.integers(len(_FLOOR_PALETTE), size=(n, n))
    # A pixel's nearest seed lies in its own or a neighbouring cell (seeds are jittered inside
    # their cells), so 9 candidates per pixel suffice; the padding ring is never nearest.
    padded = np.full((n + 2, n + 2, 2), -1e6)
    padded[1:-1, 1:-1] = seeds
    padded_color = np.zeros((n + 2, n + 2), dtype=np.int64)
    padded_color[1:-1, 1:-1] = region_color
    centres = np.arange(w) + 0.5
    cell = (centres // REGION_SIZE).astype(np.int64)
    rows, cols = cell[:, None] + 1, cell[None, :] + 1
    dists, colors = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            s = padded[rows + dy, cols + dx]
            dists.append(np.hypot(s[..., 0] - centres[None, :], s[..., 1] - centres[:, None]))
            colors.append(padded_color[rows + dy, cols + dx])
    dist = np.stack(dists)
    nearest = dist.argmin(0)
    base = _FLOOR_PALETTE[np.take_along_axis(np.stack(colors), nearest[None], 0)[0]]
    two_nearest = np.partition(dist, 1, axis=0)
    border = (two_nearest[1] - two_nearest[0]) < 2.0

    shade = cfg.floor_detail * _DETAIL_SCALE * rng.uniform(-1.0, 1.0, (w, w))
    shade -= _BORDER_SHADE * border
    floor = np.clip(base + shade[..., None], _FLOOR_MIN, _FLOOR_MAX)

    checker = ((centres[:, None] // 3 + centres[None, :] // 3) % 2).astype(bool)
    wall = np.where(checker, *_WALL_GREYS)
    in_wall = np.zeros((w, w), dtype=bool)
    in_wall[:WALL_WIDTH] = in_wall[-WALL_WIDTH:] = True
    in_wall[:, :WALL_WIDTH] = in_wall[:, -WALL_WIDTH:] = True
    floor[in_wall] = wall[in_wall][:, None]
    return np.round(floor).astype(np.uint8)


def _shape_masks(
    inside: Callable[[np.ndarray, np.ndarray], np.ndarray], extent: float
) -> tuple[np.ndarray, int]:
    """Boolean masks (phase_y, phase_x, S, S) of a shape centred at each sub-pixel phase.

    ``inside(dx, dy)`` says whether a pixel centre at offset (dx, dy) from the shape's centre is
    covered; ``extent`` bounds |dx| and |dy| of covered centres. Mask pixel (a, b) is the pixel
    at (floor(y) + a - reach, floor(x) + b - reach) for a centre (x, y) in that phase.
    """
    reach = math.ceil(extent + 0.5)
    offsets = np.arange(-reach, reach + 1) + 0.5
    phases = (np.arange(_PHASES) + 0.5) / _PHASES
    dx = offsets[None, None, None, :] - phases[None, :, None, None]
    dy = offsets[None, None, :, None] - phases[:, None, None, None]
    return inside(dx, dy), reach


def _stamp(
    frame: np.ndarray, masks: np.ndarray, reach: int, x: float, y: float, color: np.ndarray
) -> None:
    """Paint the shape centred at view position (x, y) into ``frame``, clipped to the view."""
    ix, iy = math.floor(x), math.floor(y)
    mask = masks[int((y - iy) * _PHASES), int((x - ix) * _PHASES)]
    x0, y0 = ix - reach, iy - reach
    side, h, w = mask.shape[0], frame.shape[0], frame.shape[1]
    a0, a1 = max(0, -y0), min(side, h - y0)
    b0, b1 = max(0, -x0), min(side, w - x0)
    if a0 < a1 and b0 < b1:
        frame[y0 + a0 : y0 + a1, x0 + b0 : x0 + b1][mask[a0:a1, b0:b1]] = color


@functools.cache
def _noise_table(std: float) -> np.ndarray:
    """int16 table mapping a uniform uint16 to Gaussian noise of the given std.

    Indexing it with random uint16s is several times faster than drawing normals per pixel;
    the 65536 quantiles reach +-4.3 std, and are rescaled so the std is exact before rounding.
    """
    dist = NormalDist()
    q = np.array([dist.inv_cdf((k + 0.5) / 65536) for k in range(65536)])
    table = np.round(q * (std / q.std())).astype(np.int16)
    table.flags.writeable = False  # shared between envs by the cache
    return table


def locate_by_color(frames: np.ndarray, colors: np.ndarray, tol: int = 48) -> np.ndarray:
    """Centroid (x, y), in view pixels, of the pixels of each colour in each frame.

    frames: (..., H, W, 3) uint8; colors: (K, 3). A pixel counts for a colour when it is within
    ``tol`` of it on every channel. Returns (..., K, 2) float32, NaN where a colour is absent.
    The result is comparable with ``state - camera`` for shapes fully inside the view.
    """
    frames = np.asarray(frames).astype(np.int16)
    h, w = frames.shape[-3], frames.shape[-2]
    x_centres = np.arange(w) + 0.5
    y_centres = np.arange(h) + 0.5
    out = []
    for color in np.asarray(colors, dtype=np.int16):
        match = (np.abs(frames - color).max(-1) <= tol).astype(np.float64)
        count = match.sum((-2, -1))
        with np.errstate(invalid="ignore", divide="ignore"):
            x = (match.sum(-2) @ x_centres) / count
            y = (match.sum(-1) @ y_centres) / count
        out.append(np.stack([x, y], -1))
    return np.stack(out, -2).astype(np.float32)


class ArenaEnv(FarsightEnv):
    """Top-down arena: a player, bouncing objects with unique colours, a textured floor.

    Actions (``ACTION_MEANINGS``): NOOP, UP, RIGHT, LEFT, DOWN, UPRIGHT, UPLEFT, DOWNRIGHT,
    DOWNLEFT; UP decreases y. The player moves ``player_speed`` px per step in that direction
    (diagonals too) and stops at the walls. ``info["state"]`` holds float32 world positions:
    ``player`` (2,), ``camera`` (2,) (top-left of the view), ``objects`` (num_objects, 2) and
    ``object_vel`` (num_objects, 2), all as (x, y). Episodes are truncated after
    ``episode_steps`` steps and never terminate.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
    action_meanings = ACTION_MEANINGS

    def __init__(self, cfg: ArenaConfig | None = None, size: int = 64) -> None:
        cfg = cfg if cfg is not None else ArenaConfig()
        _validate(cfg, size)
        self.cfg = cfg
        self.size = size
        self.render_mode = "rgb_array"
        self.observation_space = spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(len(ACTION_MEANINGS))
        n = cfg.num_objects
        self.state_spec: StateSpec = {
            "player": ((2,), "float32"),
            "camera": ((2,), "float32"),
            "objects": ((n, 2), "float32"),
            "object_vel": ((n, 2), "float32"),
        }
        self._object_colors = OBJECT_COLORS[:n]
        r = cfg.object_radius
        self._disc, self._disc_reach = _shape_masks(lambda dx, dy: dx**2 + dy**2 <= r**2, r)
        # The player is a square. A half-side a quarter pixel off the half-pixel grid makes its
        # pixel width vary with the sub-pixel phase, so its centroid tracks the position as well
        # as a disc's does (a half-side of 3.5 would always cover 7 pixels: 0.44 px error).
        half = math.floor(r) + 0.25
        self._square, self._square_reach = _shape_masks(
            lambda dx, dy: np.maximum(np.abs(dx), np.abs(dy)) <= half, half
        )
        # Contact treats both shapes as discs of radius r.
        self._contact = 2 * r
        self._lo = WALL_WIDTH + r
        self._hi = cfg.world_size - WALL_WIDTH - r
        self._noise_table = _noise_table(cfg.pixel_noise) if cfg.pixel_noise > 0 else None
        self._world = (
            _render_world(cfg, np.random.default_rng(cfg.map_seed)) if cfg.map_seed >= 0 else None
        )
        self._t = -1

    @property
    def world_image(self) -> np.ndarray:
        """The static (world_size, world_size, 3) floor-and-walls image of the current map."""
        if self._world is None:
            raise RuntimeError("the map is drawn per episode (map_seed < 0): call reset() first")
        return self._world

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``options`` is unused. Returns (frame, {"state": ...})."""
        super().reset(seed=seed)
        rng = self.np_random
        cfg = self.cfg
        if cfg.map_seed < 0:
            self._world = _render_world(cfg, rng)
        n = cfg.num_objects
        self._player = rng.uniform(self._lo, self._hi, 2).tolist()
        self._objects = rng.uniform(self._lo, self._hi, (n, 2))
        angle = rng.uniform(0.0, 2 * math.pi, n)
        self._object_vel = cfg.object_speed * np.stack([np.cos(angle), np.sin(angle)], -1)
        # A separate stream, so extra render() calls never change the dynamics.
        self._noise_rng = rng.spawn(1)[0]
        self._t = 0
        self._update_camera()
        return self.render(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        cfg = self.cfg
        if not 0 <= self._t < cfg.episode_steps:
            raise RuntimeError("episode is over (or never started): call reset()")
        a = int(action)
        if not 0 <= a < len(ACTION_MEANINGS):
            raise ValueError(f"action {action} not in [0, {len(ACTION_MEANINGS)})")
        lo, hi = self._lo, self._hi

        # The player and camera are two Python floats each: cheaper than numpy calls on (2,).
        (x, y), (dx, dy) = self._player, _DIRECTIONS[a]
        nx = min(max(x + cfg.player_speed * dx, lo), hi)
        ny = min(max(y + cfg.player_speed * dy, lo), hi)
        self._player = [nx, ny]

        pos = self._objects + self._object_vel
        vel = self._object_vel
        below, above = pos < lo, pos > hi
        if below.any() or above.any():
            pos = np.where(below, 2 * lo - pos, np.where(above, 2 * hi - pos, pos))
            vel = np.where(below | above, -vel, vel)

        # Reward only objects approaching the player (relative velocity), so an object that was
        # just knocked away is not counted again while the two still overlap.
        away = pos - (nx, ny)
        dist2 = (away * away).sum(-1)
        hit = dist2 < self._contact**2
        if hit.any():
            hit &= ((vel - (nx - x, ny - y)) * away).sum(-1) < 0
            vel[hit] = cfg.object_speed * away[hit] / np.sqrt(dist2[hit])[:, None]
        self._objects, self._object_vel = pos, vel

        self._t += 1
        self._update_camera()
        truncated = self._t >= cfg.episode_steps
        return self.render(), float(hit.sum()), False, truncated, self._info()

    def render(self) -> np.ndarray:
        """The current view as (size, size, 3) uint8; each call draws fresh pixel noise."""
        s = self.size
        cx, cy = self._camera
        frame = self._world[cy : cy + s, cx : cx + s].copy()
        # Objects are mostly off-screen: skip those whose masks cannot reach the view.
        margin = self._disc_reach + 1
        for (x, y), color in zip(self._objects.tolist(), self._object_colors, strict=True):
            x, y = x - cx, y - cy
            if -margin < x < s + margin and -margin < y < s + margin:
                _stamp(frame, self._disc, self._disc_reach, x, y, color)
        px, py = self._player
        _stamp(frame, self._square, self._square_reach, px - cx, py - cy, PLAYER_COLOR)
        if self._noise_table is None:
            return frame
        # Raw 64-bit words cut into uint16s: a third of the cost of Generator.integers.
        n = frame.size
        words = self._noise_rng.bit_generator.random_raw(-(-n // 4))
        noisy = self._noise_table.take(words.view(np.uint16)[:n].reshape(frame.shape))
        noisy += frame
        np.clip(noisy, 0, 255, out=noisy)
        return noisy.astype(np.uint8)

    def env_meta(self) -> dict:
        return {
            "env_id": "arena",
            "size": self.size,
            "frame_skip": 1,
            "action_meanings": list(ACTION_MEANINGS),
            "arena": dataclasses.asdict(self.cfg),
            "wall_width": WALL_WIDTH,
            "player_color": PLAYER_COLOR.tolist(),
            "object_colors": self._object_colors.tolist(),
        }

    def _update_camera(self) -> None:
        # Whole pixels (rounded half up), so the floor is sliced without resampling.
        x, y = self._player
        top = self.cfg.world_size - self.size
        half = self.size / 2
        self._camera = [
            min(max(math.floor(x - half + 0.5), 0), top),
            min(max(math.floor(y - half + 0.5), 0), top),
        ]

    def _info(self) -> dict[str, Any]:
        return {
            "state": {
                "player": np.array(self._player, dtype=np.float32),
                "camera": np.array(self._camera, dtype=np.float32),
                "objects": self._objects.astype(np.float32),
                "object_vel": self._object_vel.astype(np.float32),
            }
        }


def _validate(cfg: ArenaConfig, size: int) -> None:
    problems = []
    if cfg.world_size < size:
        problems.append(f"world_size {cfg.world_size} < view size {size}: raise world_size")
    if not 0 <= cfg.num_objects <= len(OBJECT_COLORS):
        problems.append(f"num_objects must be in [0, {len(OBJECT_COLORS)}] (one colour each)")
    if cfg.object_radius < 1:
        # Below this the pixel holding an object's centre might not be painted.
        problems.append("object_radius must be >= 1")
    span = cfg.world_size - 2 * (WALL_WIDTH + cfg.object_radius)
    if not 0 <= cfg.object_speed < span or not 0 <= cfg.player_speed < span:
        problems.append(f"speeds must be >= 0 and below the free span of the world ({span:g})")
    if not 0 <= cfg.floor_detail <= 1:
        problems.append("floor_detail must be in [0, 1]")
    if cfg.pixel_noise < 0:
        problems.append("pixel_noise must be >= 0")
    if cfg.episode_steps < 1:
        problems.append("episode_steps must be >= 1")
    if problems:
        raise ConfigError("invalid env.arena config: " + "; ".join(problems))
