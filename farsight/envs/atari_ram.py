"""Object positions of Atari games read from the console RAM: ground truth for real games.

A ``RamMap`` names the objects that matter in one game and says, for each, how the 128 bytes
of RAM give its bounding box on the native 210 x 160 screen. ``RamMap.read`` clips the boxes
to the game's playfield (objects slide under walls and the HUD), takes their centres and
scales them to the stored frame size; an object is visible when its clipped box is not empty
(and the game has it in play at all, e.g. a served ball); the size of the clipped box is its
visible extent (a paddle half under a wall is half as wide).

Conventions (as the arena's): positions are (x, y), x to the right, y down, in pixels of the
frame they refer to; pixel (row i, column j) covers [j, j+1) x [i, i+1). Native boxes are
half-open [x0, x1) x [y0, y1). A native point (x, y) is (x * S / 160, y * S / 210) in an
S x S frame, which is exactly where area-resizing (``resize_area``) puts it. Positions of
objects that are not visible are NaN.

The byte addresses are the published ones (the OCAtari project's RAM annotations); every
offset from byte to pixel below was fitted on recorded ale_py frames, by finding each object
by its colour on the native screen, and holds exactly (0 px residual) except where a comment
says otherwise. Measured on 6,000 frames per game, 1 emulator frame per step, random play
(Breakout also 10,000 frames of a ball-following player that clears bricks):

- Breakout: paddle x = byte 72 - 47 (left edge), width 2 * byte 108 (16, or 12 once the ball
  has reached the top wall), rows 189-192. Ball x = byte 99 - 49, top = byte 101 + 9, 2 x 4
  px; byte 101 = 0 means no ball in play, and a ball below row 194 is not drawn. Above row 93
  (the bottom of the brick wall) the game draws the ball one row higher, and always in the
  playfield colour of the rows it crosses: grey above the bricks, each brick row's own colour
  inside the wall, red below.
- Pong: ball x = byte 49 - 49, top = byte 54 - 14 (one row higher in about 12% of frames,
  with no RAM byte that predicts it), 2 x 4 px; byte 54 = 0 means no ball. The opponent's
  (computer's) paddle, left, x 16-19: top = byte 50 - 15, 16 rows. The player's ``paddle``,
  right, x 140-143: 16 rows from byte 51 - 13 rounded down to even (it moves 2 rows at a
  time). Paddles slide under the white bars at the top and bottom.

This module is pure numpy (no emulator), so stores recorded elsewhere can be read with it.
Dimension legend: ... any leading shape (frames, clips), K objects of the map.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

NATIVE_HEIGHT, NATIVE_WIDTH = 210, 160
RAM_SIZE = 128

# (x0, x1, y0, y1, present): native half-open box bounds, each (...,) float64, and a bool mask
# of whether the game has the object at all (independent of clipping).
Box = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class RamObject:
    """One object of a game: its name, how to read its box from RAM, how it looks."""

    name: str
    box: Callable[[np.ndarray], Box]
    """RAM (..., 128) as int64 -> native box (see ``Box``)."""
    color: tuple[int, int, int]
    """RGB the game draws it in on the playfield (what readback in frames looks for)."""
    size: tuple[float, float]
    """Nominal (width, height) in native pixels."""
    color_bands: tuple[tuple[int, tuple[int, int, int]], ...] = ()
    """(first native row, RGB) bands for games that colour an object by the screen row it is
    on; rows above the first band, and objects without bands, use ``color``."""

    def color_at(self, y: np.ndarray) -> np.ndarray:
        """RGB (..., 3) uint8 of the object with its centre at native rows y (...,)."""
        y = np.asarray(y, dtype=np.float64)
        table = np.array([self.color, *(c for _, c in self.color_bands)], dtype=np.uint8)
        starts = np.array([r for r, _ in self.color_bands], dtype=np.float64)
        # NaN (not visible) rows fall in the first entry: any colour will do there.
        index = np.searchsorted(starts, np.nan_to_num(y, nan=-1.0), side="right")
        return table[index]


@dataclass(frozen=True)
class RamMap:
    """The objects of one game and the playfield they are drawn in."""

    env_id: str
    objects: tuple[RamObject, ...]
    field: tuple[int, int, int, int]
    """Native (x0, x1, y0, y1) of the playfield: boxes are clipped to it."""
    background: tuple[int, int, int]
    """RGB of the empty playfield (object readback measures colour against it)."""
    search: tuple[int, int, int, int] | None = None
    """Native (x0, x1, y0, y1) where readback may look for objects (None: ``field``): an area
    holding nothing else that could pass for an object (no same-coloured walls)."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.objects)

    def read(self, ram: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Object centres, visible extents and visibility in an ``size`` x ``size`` frame.

        ram: (..., 128) uint8. Returns xy (..., K, 2) float32 (NaN where not visible), wh
        (..., K, 2) float32 (width and height of the part inside the playfield, 0 where not
        visible) and visible (..., K) bool.
        """
        ram = np.asarray(ram)
        if ram.shape[-1:] != (RAM_SIZE,):
            raise ValueError(f"{self.env_id}: RAM must be (..., {RAM_SIZE}), got {ram.shape}")
        r = ram.astype(np.int64)
        sx, sy = size / NATIVE_WIDTH, size / NATIVE_HEIGHT
        fx0, fx1, fy0, fy1 = self.field
        xys, whs, visibles = [], [], []
        for obj in self.objects:
            x0, x1, y0, y1, present = obj.box(r)
            x0, x1 = np.maximum(x0, fx0), np.minimum(x1, fx1)
            y0, y1 = np.maximum(y0, fy0), np.minimum(y1, fy1)
            visible = present & (x1 > x0) & (y1 > y0)
            xy = np.stack([(x0 + x1) / 2 * sx, (y0 + y1) / 2 * sy])
            wh = np.stack([(x1 - x0) * sx, (y1 - y0) * sy])
            xys.append(np.where(visible, xy, np.nan))
            whs.append(np.where(visible, wh, 0.0))
            visibles.append(visible)
        # (K, 2, ...) -> (..., K, 2)
        xy = np.moveaxis(np.stack(xys), (0, 1), (-2, -1)).astype(np.float32)
        wh = np.moveaxis(np.stack(whs), (0, 1), (-2, -1)).astype(np.float32)
        return xy, wh, np.moveaxis(np.stack(visibles), 0, -1)

    def sizes(self, size: int) -> np.ndarray:
        """(K, 2) nominal (width, height) of each object in ``size`` x ``size`` frame px."""
        scale = np.array([size / NATIVE_WIDTH, size / NATIVE_HEIGHT])
        return np.array([o.size for o in self.objects], dtype=np.float64) * scale

    def meta(self) -> dict:
        """JSON description stored with a recording (``env_meta()["ram_map"]``)."""
        return {
            "objects": [
                {
                    "name": o.name,
                    "color": list(o.color),
                    "size": list(o.size),
                    "color_bands": [[r, list(c)] for r, c in o.color_bands],
                }
                for o in self.objects
            ],
            "field": list(self.field),
            "search": list(self.search or self.field),
            "background": list(self.background),
        }


def _const(r: np.ndarray, value: float) -> np.ndarray:
    return np.full(r.shape[:-1], value, dtype=np.float64)


def _box(x0: np.ndarray, width: float | np.ndarray, y0: np.ndarray, height: float, present):
    x0 = np.asarray(x0, dtype=np.float64)
    y0 = np.asarray(y0, dtype=np.float64)
    return x0, x0 + width, y0, y0 + height, np.asarray(present, dtype=bool)


# --- Breakout ---------------------------------------------------------------------------------
_BRICKS_BOTTOM = 93
"""First native row below the brick wall; above it the ball is drawn one row higher."""
_GREY = (142, 142, 142)
# The ball takes the playfield colour of the rows it crosses: the walls' grey above the bricks,
# each brick row's colour inside the wall (where it is invisible against intact bricks), red
# below (the paddle's colour).
_BREAKOUT_BALL_BANDS = (
    (57, (200, 72, 72)),
    (63, (198, 108, 58)),
    (69, (180, 122, 48)),
    (75, (162, 162, 42)),
    (81, (72, 160, 72)),
    (87, (66, 72, 200)),
    (_BRICKS_BOTTOM, (200, 72, 72)),
)


def _breakout_paddle(r: np.ndarray) -> Box:
    # Always in play; clipped by the right wall (x >= 152) near the right edge.
    return _box(r[..., 72] - 47, 2.0 * r[..., 108], _const(r, 189), 4, np.ones(r.shape[:-1]))


def _breakout_ball(r: np.ndarray) -> Box:
    top = r[..., 101] + 9
    top = np.where(top < _BRICKS_BOTTOM, top - 1, top)
    return _box(r[..., 99] - 49, 2, top, 4, r[..., 101] != 0)


BREAKOUT = RamMap(
    env_id="ALE/Breakout-v5",
    objects=(
        RamObject("paddle", _breakout_paddle, (200, 72, 72), (16, 4)),
        RamObject("ball", _breakout_ball, _GREY, (2, 4), _BREAKOUT_BALL_BANDS),
    ),
    field=(8, 152, 32, 195),  # inside the grey walls; a ball below row 194 is not drawn
    background=(0, 0, 0),
    search=(8, 152, 32, 210),  # below the field only black: room for the paddle's pixels
)


# --- Pong -------------------------------------------------------------------------------------
def _pong_ball(r: np.ndarray) -> Box:
    return _box(r[..., 49] - 49, 2, r[..., 54] - 14, 4, r[..., 54] != 0)


def _pong_opponent(r: np.ndarray) -> Box:
    return _box(_const(r, 16), 4, r[..., 50] - 15, 16, np.ones(r.shape[:-1]))


def _pong_paddle(r: np.ndarray) -> Box:
    top = 2 * np.floor_divide(r[..., 51] - 13, 2)
    return _box(_const(r, 140), 4, top, 16, np.ones(r.shape[:-1]))


PONG = RamMap(
    env_id="ALE/Pong-v5",
    objects=(
        RamObject("paddle", _pong_paddle, (92, 186, 92), (4, 16)),
        RamObject("opponent", _pong_opponent, (213, 130, 74), (4, 16)),
        RamObject("ball", _pong_ball, (236, 236, 236), (2, 4)),
    ),
    field=(0, 160, 34, 194),  # between the white top and bottom bars
    background=(144, 72, 17),
)


RAM_MAPS: dict[str, RamMap] = {m.env_id: m for m in (BREAKOUT, PONG)}
"""Games with a known RAM map, by ``ALE/<Game>-v5`` id. Add a game by adding its map here."""


def ram_map(env_id: str) -> RamMap | None:
    """The RAM map of a game, or None when farsight knows none for it."""
    return RAM_MAPS.get(env_id)
