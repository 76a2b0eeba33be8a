"""Position readback of generated frames against the ground truth: the arena's player and
objects, and the named objects of any store whose game has a RAM map (Atari: Breakout, Pong).

Arena
=====

The arena draws the player and every object in a unique saturated colour, so a generated frame
can be read back with ``locate_by_color`` (the centroid of each colour's pixels) and compared
with where the simulator says each entity is: view position = world position - camera.

Which entities count, per frame and entity, from the ground truth only:

- visible: its whole shape lies inside the view (centre at least ``margin`` px from every
  edge). Only then is the colour centroid an unbiased read of its position. When ground-truth
  frames are given, the entity must also read back from them within ``gt_px`` of its state
  position (so one occluded by another entity, or drowned in pixel noise, is not blamed on the
  model). Unoccluded arena shapes read back within ~0.3 px (90th percentile at the default
  radius); the 1 px default only removes overlaps.
- out of view: its shape cannot touch the view (centre more than ``margin`` px outside).
- anything in between (clipped by the view edge) is excluded from every metric.

Metrics per horizon, separately for the player and for the objects (all objects pooled):

- ``<entity>_error``: mean Euclidean distance in px between the read-back and the true view
  position, over visible entities that the generation shows at all;
- ``<entity>_miss_rate``: fraction of visible entities absent from the generation. Misses are
  never silently dropped: a model that loses hard objects gets a small error over the ones it
  kept, and a large miss rate;
- ``<entity>_hit_rate``: fraction of visible entities found within ``hit_px`` (a single number
  that neither misses nor large errors can flatter);
- ``object_spurious_rate``: fraction of out-of-view objects that the generation shows anyway
  (hallucinated or misplaced). The camera follows the player, so it has no such rate.

Generated colours are matched with ``locate_by_color``'s per-channel tolerance; pixels of an
entity's colour anywhere in the frame pull its centroid, so a smeared or duplicated entity reads
as a position error, which is what it is.

Named objects (RAM maps)
========================

Atari objects are not uniquely coloured (Breakout's ball and paddle share a red, its ball is
grey above the bricks) and are tiny at 64 px (the ball is 0.8 x 1.2 px: a faint blob, never a
full pixel of its colour). ``locate_objects`` therefore finds an object with a matched filter
near where the ground truth says it is:

1. coverage: each pixel's colour is written as background + a * (object colour - background);
   a in [0, 1] is the share of the pixel the object covers (exact for area-resized frames).
   Pixels off that line (by more than ``tol``, or than ``ANGLE`` of their distance from the
   background: another colour, or a mix of the background with another colour), or not wholly
   inside the game's search area (a pixel mixing in a wall of the object's colour), count 0;
2. the object's footprint (its nominal size rounded up, plus a pixel) is slid over a window
   of +-``radius`` px (default 1/8 of the frame: 8 px at 64) around the true position; the
   nearest placement holding ``min_mass`` (half) of the object's true visible area in
   coverage is taken (the one holding the most if none does), then moved by 1 px steps to
   where it holds the whole object, never onto more than 1.05 times its area (that would be a
   same-coloured neighbour's pixels);
3. the object is found when that footprint holds at least ``min_mass`` (half) of the object's
   area beyond the window's median footprint, and at least ``Z`` robust standard deviations
   of the footprint sums above it (noise gives every footprint some coverage; a tiny object's
   footprint collects enough of it somewhere otherwise). Its position is the coverage centroid
   in that footprint.

So a generated object counts only where it looks like the object: its colour, about its
amount, standing out of the window, near the truth. Calibration on recorded 64 px frames
(frame skip 4; random play, and for Breakout also a ball-following player that clears
bricks): the true frames read back within 1 px for 99.6-99.8% of Breakout's paddle and 95-96%
of its ball sightings (the rest: the ball in a pixel shared with a wall, touching the paddle,
or among bricks of its colour), 99.7-99.9% for Pong's paddles and ball; with the ball painted
out no sighting reads within 1 px of it, also under N(0, 8) pixel noise. A ball generated further
than ``radius`` from the truth is a miss, not a large error; Breakout's paddle inside the
window of a missing ball can be read as the ball (a large error, never a hit): read the hit
rate first.

Which sightings are measured comes from the ground truth only: the object is visible (RAM)
and the same readback finds it in the true frame within ``gt_px`` (default 1/64 of the frame:
1 px at 64) of its RAM position; ``<name>_measured`` is that share of visible sightings.
Metrics per horizon and object ``<name>`` (named by the RAM map): ``<name>_error``,
``<name>_miss_rate``, ``<name>_hit_rate`` (found within ``hit_px``, default 1/32 of the frame:
2 px at 64), as for the arena, and ``<name>_window_psnr``: the PSNR of the mean MSE in a
``window`` px square (default 1/8 of the frame: 8 px at 64) centred on the object's true
position, over visible sightings. The same window PSNR of the autoencoder's reconstruction of
the true frames (``window_psnr_rows`` with prefix ``ae_``) says whether the autoencoder keeps
the object at all, beside its whole-frame PSNR.

Dimension legend: N clips, T steps, K objects, H W frame size, M frames (any leading shape).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from farsight.envs.arena import OBJECT_COLORS, PLAYER_COLOR, locate_by_color
from farsight.envs.atari_ram import NATIVE_HEIGHT, NATIVE_WIDTH, RamMap, ram_map
from farsight.eval.metrics import MetricRow, resolve_horizons
from farsight.eval.stats import bootstrap_ci
from farsight.metrics import psnr_from_mse

DEFAULT_MARGIN = 4.0
"""Half-extent of the arena's shapes at the default object radius 3.5: covered pixel centres
lie within 3.5 px of the centre, so painted pixels reach 4 px."""
DEFAULT_HIT_PX = 2.0
DEFAULT_GT_PX = 1.0


@dataclass(frozen=True)
class EntityReadback:
    """Per-frame readback of E entities (entity 0 is the player, 1.. the objects).

    All arrays are (N, T, E): ``error`` in px (NaN unless visible and found), ``visible``,
    ``found`` (visible and present in the generation), ``out_of_view``, ``shown`` (present in
    the generation, wherever).
    """

    error: np.ndarray
    visible: np.ndarray
    found: np.ndarray
    out_of_view: np.ndarray
    shown: np.ndarray


def _as_float(x: Any, name: str, shape_tail: tuple[int, ...]) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    tail_ok = all(d in (-1, got) for d, got in zip(shape_tail, a.shape[2:], strict=False))
    if a.ndim != 2 + len(shape_tail) or not tail_ok:
        want = "(N, T" + "".join(f", {'K' if d < 0 else d}" for d in shape_tail) + ")"
        raise ValueError(f"{name} must be {want}, got shape {a.shape}")
    return a


def read_entities(
    gen: Any,
    player: Any,
    camera: Any,
    objects: Any,
    *,
    gt_frames: Any = None,
    object_colors: np.ndarray | None = None,
    player_color: np.ndarray = PLAYER_COLOR,
    tol: int = 48,
    margin: float = DEFAULT_MARGIN,
    gt_px: float = DEFAULT_GT_PX,
) -> EntityReadback:
    """Locate the player and objects in generated frames and compare with the true state.

    gen: (N, T, H, W, 3) uint8 generated frames; player: (N, T, 2), camera: (N, T, 2) and
    objects: (N, T, K, 2) world positions (x, y) of the ground truth at the same steps;
    gt_frames: optional (N, T, H, W, 3) true frames (see the module docstring).
    object_colors defaults to ``OBJECT_COLORS[:K]``.
    """
    gen = np.asarray(gen.detach().cpu().numpy() if hasattr(gen, "detach") else gen)
    if gen.ndim != 5 or gen.shape[-1] != 3:
        raise ValueError(f"gen must be (N, T, H, W, 3), got shape {gen.shape}")
    n, t, h, w, _ = gen.shape
    player_w = _as_float(player, "player", (2,))
    camera_w = _as_float(camera, "camera", (2,))
    objects_w = _as_float(objects, "objects", (-1, 2))
    objects_k = objects_w.shape[2]
    for name, a in (("player", player_w), ("camera", camera_w), ("objects", objects_w)):
        if a.shape[:2] != (n, t):
            raise ValueError(f"{name} covers {a.shape[:2]} (N, T) steps but gen has {(n, t)}")
    colors = OBJECT_COLORS[:objects_k] if object_colors is None else np.asarray(object_colors)
    if colors.shape != (objects_k, 3):
        raise ValueError(f"object_colors must be ({objects_k}, 3), got {colors.shape}")
    palette = np.concatenate([np.asarray(player_color).reshape(1, 3), colors]).astype(np.uint8)

    # (N, T, E, 2) true view positions, entity 0 = player.
    true_view = np.concatenate([player_w[:, :, None], objects_w], axis=2) - camera_w[:, :, None]
    x, y = true_view[..., 0], true_view[..., 1]
    inside = (x >= margin) & (x <= w - margin) & (y >= margin) & (y <= h - margin)
    out_of_view = (x < -margin) | (x > w + margin) | (y < -margin) | (y > h + margin)

    if gt_frames is not None:
        gt = np.asarray(gt_frames)
        if gt.shape != gen.shape:
            raise ValueError(f"gt_frames shape {gt.shape} differs from gen shape {gen.shape}")
        gt_read = locate_by_color(gt, palette, tol).astype(np.float64)
        gt_err = np.linalg.norm(gt_read - true_view, axis=-1)
        with np.errstate(invalid="ignore"):
            inside &= gt_err <= gt_px  # NaN (absent in the ground truth) compares False

    read = locate_by_color(gen, palette, tol).astype(np.float64)  # (N, T, E, 2)
    shown = ~np.isnan(read[..., 0])
    found = inside & shown
    error = np.where(found, np.linalg.norm(read - true_view, axis=-1), np.nan)
    return EntityReadback(error, inside, found, out_of_view, shown)


def _ratio(x: np.ndarray) -> np.ndarray:
    """Bootstrap statistic: (B, N, 2) per-clip [numerator, denominator] -> (B,) pooled ratio."""
    return x[..., 0].sum(axis=1) / x[..., 1].sum(axis=1)


def position_metrics(
    gen: Any,
    player: Any,
    camera: Any,
    objects: Any,
    *,
    gt_frames: Any = None,
    horizons: Sequence[int] | None = None,
    object_colors: np.ndarray | None = None,
    player_color: np.ndarray = PLAYER_COLOR,
    tol: int = 48,
    margin: float = DEFAULT_MARGIN,
    gt_px: float = DEFAULT_GT_PX,
    hit_px: float = DEFAULT_HIT_PX,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[MetricRow]:
    """Position error, miss, hit and spurious rates per horizon (see the module docstring).

    Shapes as in ``read_entities``; frame t - 1 is horizon t, ``horizons`` defaults to
    1, 2, 4, ... <= T. Each rate pools entity sightings over clips; ``n`` is its denominator
    (visible sightings, or out-of-view ones for the spurious rate) and the value is NaN when it
    is 0. CIs bootstrap clips, since entities in one clip are not independent.
    """
    gen = np.asarray(gen.detach().cpu().numpy() if hasattr(gen, "detach") else gen)
    if gen.ndim != 5:
        raise ValueError(f"gen must be (N, T, H, W, 3), got shape {gen.shape}")
    hs = resolve_horizons(horizons, gen.shape[1])
    # Read back only the measured steps (locate_by_color makes float copies of the frames).
    idx = [h - 1 for h in hs]

    def at(x: Any, name: str) -> Any:
        if x is None:
            return None
        a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
        if a.ndim < 2 or a.shape[:2] != gen.shape[:2]:
            raise ValueError(
                f"{name} has shape {a.shape}; its (N, T) must be gen's {gen.shape[:2]}"
            )
        return a[:, idx]

    rb = read_entities(
        gen[:, idx],
        at(player, "player"),
        at(camera, "camera"),
        at(objects, "objects"),
        gt_frames=at(gt_frames, "gt_frames"),
        object_colors=object_colors,
        player_color=player_color,
        tol=tol,
        margin=margin,
        gt_px=gt_px,
    )
    hit = rb.found & (np.nan_to_num(rb.error, nan=np.inf) <= hit_px)
    groups = {"player": slice(0, 1), "object": slice(1, None)}
    rows: list[MetricRow] = []
    for j, h in enumerate(hs):
        for entity, sl in groups.items():
            vis = rb.visible[:, j, sl]
            found = rb.found[:, j, sl]
            per_clip = {
                # metric: (numerator, denominator) per clip, summed over this group's entities
                "error": (np.nansum(rb.error[:, j, sl], axis=-1), found.sum(-1)),
                "miss_rate": ((vis & ~found).sum(-1), vis.sum(-1)),
                "hit_rate": (hit[:, j, sl].sum(-1), vis.sum(-1)),
            }
            if entity == "object":
                away = rb.out_of_view[:, j, sl]
                shown = rb.shown[:, j, sl]
                per_clip["spurious_rate"] = ((away & shown).sum(-1), away.sum(-1))
            for name, (num, den) in per_clip.items():
                samples = np.stack([num, den], axis=-1).astype(np.float64)  # (N, 2)
                ci = bootstrap_ci(samples, _ratio, n_boot=n_boot, seed=seed)
                count = int(den.sum())
                rows.append(
                    MetricRow(f"{entity}_{name}", h, ci.estimate, 1, ci.low, ci.high, count)
                )
    return rows


# ---------------------------------------------------------------------------------------------
# Named objects (stores whose game has a RAM map)

OBJECT_KEYS = ("state.object_xy", "state.object_wh", "state.object_visible")
ANGLE = 0.35
"""Most distance from the background-to-object colour line, relative to a pixel's distance
from the background, that still counts as the object's colour (about 20 degrees)."""
GROWN = 1.05
"""Refining a readback never moves to a footprint holding more than this times the object's
area: more would be a same-coloured neighbour's pixels."""
Z = 4.0
"""A readback must stand this many robust standard deviations of the window's footprint sums
above their median (noise, not objects, is what varies between footprints everywhere)."""
"""Per-frame object state recorded by envs with a RAM map (``farsight.envs.atari``)."""
RAM_KEY = "state.ram"


@dataclass(frozen=True)
class ObjectState:
    """Ground truth of K named objects over any leading shape (...): ``xy`` (..., K, 2)
    centres (NaN where not visible), ``wh`` (..., K, 2) visible width and height, ``visible``
    (..., K) bool; in pixels of the frames they belong to."""

    xy: np.ndarray
    wh: np.ndarray
    visible: np.ndarray

    def __getitem__(self, index: Any) -> ObjectState:
        """The same index applied to the leading axes of all three arrays."""
        return ObjectState(self.xy[index], self.wh[index], self.visible[index])

    @staticmethod
    def stack(states: Sequence[ObjectState]) -> ObjectState:
        return ObjectState(
            np.stack([s.xy for s in states]),
            np.stack([s.wh for s in states]),
            np.stack([s.visible for s in states]),
        )


@dataclass(frozen=True)
class SceneObjects:
    """The named objects of a store's frames: what ``locate_objects`` looks for.

    Sizes and areas are in pixels of the store's ``size`` x ``size`` frames.
    """

    names: tuple[str, ...]
    sizes: np.ndarray
    """(K, 2) nominal (width, height): the footprint slid over the search window."""
    background: tuple[int, int, int]
    search: tuple[float, float, float, float]
    """(x0, x1, y0, y1): only pixels wholly inside it count as coverage."""
    colors_at: Callable[[np.ndarray], np.ndarray]
    """Object positions (..., K, 2) -> their colours (..., K, 3) uint8 (some games colour an
    object by where it is)."""
    size: int
    ram_map: RamMap | None = None

    @classmethod
    def from_ram_map(cls, m: RamMap, size: int) -> SceneObjects:
        sx, sy = size / NATIVE_WIDTH, size / NATIVE_HEIGHT

        def colors_at(xy: np.ndarray) -> np.ndarray:
            rows = np.asarray(xy, dtype=np.float64)[..., 1] / sy  # native rows (..., K)
            return np.stack([o.color_at(rows[..., k]) for k, o in enumerate(m.objects)], -2)

        x0, x1, y0, y1 = m.search or m.field
        return cls(
            names=m.names,
            sizes=m.sizes(size),
            background=m.background,
            search=(x0 * sx, x1 * sx, y0 * sy, y1 * sy),
            colors_at=colors_at,
            size=size,
            ram_map=m,
        )

    def state_keys(self, store_arrays: Mapping[str, Any]) -> tuple[str, ...]:
        """The store arrays ``state`` reads: the recorded positions, else the RAM."""
        return OBJECT_KEYS if all(k in store_arrays for k in OBJECT_KEYS) else (RAM_KEY,)

    def state(self, read: Mapping[str, np.ndarray]) -> ObjectState:
        """The object state of a store read holding ``state_keys``."""
        if all(k in read for k in OBJECT_KEYS):
            xy, wh, visible = (np.asarray(read[k]) for k in OBJECT_KEYS)
            return ObjectState(xy, wh, visible.astype(bool))
        if self.ram_map is None or RAM_KEY not in read:
            raise ValueError(f"object state needs {OBJECT_KEYS} or {RAM_KEY!r}; got {list(read)}")
        return ObjectState(*self.ram_map.read(read[RAM_KEY], self.size))


def scene_objects(store: Any) -> SceneObjects | None:
    """The named objects of a store (an ``EpisodeStore``), or None when it has none: its game
    has no RAM map, or it holds neither recorded object positions nor the RAM (older
    recordings hold only the RAM; positions are then read from it here)."""
    env = store.meta.get("env") or {}
    m = ram_map(str(env.get("env_id", "")))
    if m is None or "frames" not in store.arrays:
        return None
    shape = tuple(store.arrays["frames"][0])
    if shape[0] != shape[1]:
        raise ValueError(f"store {store.path}: frames {shape} are not square")
    objects = SceneObjects.from_ram_map(m, int(shape[0]))
    keys = objects.state_keys(store.arrays)
    if not all(k in store.arrays for k in keys):
        return None
    if keys == OBJECT_KEYS and tuple(store.arrays[OBJECT_KEYS[0]][0]) != (len(m.objects), 2):
        raise ValueError(
            f"store {store.path}: {OBJECT_KEYS[0]} has shape {store.arrays[OBJECT_KEYS[0]][0]} "
            f"per frame, the RAM map of {m.env_id} has {len(m.objects)} objects {m.names}"
        )
    return objects


def _gather(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """images (M, H, W, ...) at rows (M, A) x cols (M, B) -> (M, A, B, ...)."""
    m = np.arange(images.shape[0])[:, None, None]
    return images[m, rows[:, :, None], cols[:, None, :]]


def locate_objects(
    frames: Any,
    truth: ObjectState,
    objects: SceneObjects,
    *,
    radius: float | None = None,
    tol: float = 32.0,
    min_mass: float = 0.5,
) -> np.ndarray:
    """Find each visible object near its true position (see the module docstring).

    frames: (..., H, W, 3) uint8; truth: the objects' state over the same leading shape. Of
    the footprints within ``radius`` px of the truth, the nearest holding ``min_mass`` of the
    object's true visible area (w * h) in coverage is taken (else the one holding the most),
    then moved by 1 px steps to where it holds the whole object; the object counts as found
    when that footprint holds at least ``min_mass`` times its area, and is read as the
    coverage centroid there. Returns xy (..., K, 2) float64, NaN where not found or not
    visible.
    """
    frames = np.asarray(frames)
    xy_t = np.asarray(truth.xy, dtype=np.float64)
    lead, (h, w) = frames.shape[:-3], frames.shape[-3:-1]
    k = len(objects.names)
    if frames.shape[-1] != 3 or xy_t.shape != (*lead, k, 2):
        raise ValueError(
            f"frames {frames.shape} must be (..., H, W, 3) and the truth (..., {k}, 2) over the "
            f"same leading shape, got xy {xy_t.shape}"
        )
    radius = objects.size / 8 if radius is None else radius
    reach = math.ceil(radius)
    side = 2 * reach + 1
    flat = frames.reshape(-1, h, w, 3)
    guess = np.where(np.asarray(truth.visible, bool)[..., None], xy_t, np.nan).reshape(-1, k, 2)
    area = np.asarray(truth.wh, dtype=np.float64).prod(-1).reshape(-1, k)
    colors = objects.colors_at(guess).astype(np.float64)  # (M, K, 3)
    bg = np.asarray(objects.background, dtype=np.float64)

    # Coverage is computed on a padded copy so that windows never leave the array; padding and
    # pixels not wholly inside the search area count 0 (a boundary pixel may mix a wall of
    # the object's colour into the background).
    sx0, sx1, sy0, sy1 = objects.search
    ys, xs = np.arange(h), np.arange(w)
    allowed = ((ys >= sy0 - 1e-6) & (ys + 1 <= sy1 + 1e-6))[:, None] & (
        (xs >= sx0 - 1e-6) & (xs + 1 <= sx1 + 1e-6)
    )[None, :]
    pad = reach + 1
    padded = np.pad(flat.astype(np.float64) - bg, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    allowed_p = np.pad(allowed, pad)

    out = np.full(guess.shape, np.nan)
    for j in range(k):
        fw, fh = (math.ceil(v - 1e-6) + 1 for v in objects.sizes[j])
        look = ~np.isnan(guess[:, j]).any(-1)
        if not look.any():
            continue
        g = guess[look, j]
        n = len(g)
        # The window: the pixel holding the truth +- reach, in padded coordinates.
        r0 = np.clip(np.floor(g[:, 1]).astype(np.int64) - reach + pad, 0, h + 2 * pad - side)
        c0 = np.clip(np.floor(g[:, 0]).astype(np.int64) - reach + pad, 0, w + 2 * pad - side)
        rows = r0[:, None] + np.arange(side)
        cols = c0[:, None] + np.arange(side)
        crop = _gather(padded[look], rows, cols)  # (n, side, side, 3), minus the background
        d = colors[look, j] - bg  # (n, 3)
        dd = np.maximum((d * d).sum(-1), 1e-9)[:, None, None]
        a = np.clip((crop * d[:, None, None]).sum(-1) / dd, 0.0, 1.0)
        # Off the line: further than tol from it, or than ANGLE times the pixel's own distance
        # from the background (a mix of the background with another colour, however faint,
        # stays at its colour's angle: Pong's orange paddle edge is no ball).
        residual = np.linalg.norm(crop - a[..., None] * d[:, None, None], axis=-1)
        off_line = residual > np.minimum(tol, ANGLE * np.linalg.norm(crop, axis=-1))
        a = np.where(off_line | ~allowed_p[rows[:, :, None], cols[:, None, :]], 0.0, a)
        # Footprint sums by an integral image: sums[:, i, j] covers a[:, i:i+fh, j:j+fw].
        ii = np.pad(a.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
        sums = ii[:, fh:, fw:] - ii[:, :-fh, fw:] - ii[:, fh:, :-fw] + ii[:, :-fh, :-fw]
        # Distance of each footprint's centre from the truth, in px.
        oi = np.arange(sums.shape[1]) + fh / 2 + (r0 - pad)[:, None] - g[:, 1:2]  # (n, I)
        oj = np.arange(sums.shape[2]) + fw / 2 + (c0 - pad)[:, None] - g[:, 0:1]  # (n, J)
        dist = np.hypot(oi[:, :, None], oj[:, None, :])
        # 1. Candidate: the nearest footprint holding enough to count (min_mass of the
        #    object's area; else the one holding the most), so that Breakout's ball beside its
        #    same-coloured paddle is read as the ball, not the paddle. (True frames show a
        #    tiny ball with 70-100% of its nominal coverage: resize filter and rounding.)
        target = area[look, j]
        score = np.minimum(sums, min_mass * target[:, None, None]) - 1e-3 * dist
        best = score.reshape(n, -1).argmax(-1)
        bi, bj = np.divmod(best, sums.shape[2])
        # 2. Climb to the footprint holding the whole object: a partial footprint's centroid
        #    would lean towards the truth. Steps of 1 px, never past GROWN times the object's
        #    area (which would take in a neighbour of the same colour).
        ceiling = np.where(sums <= GROWN * target[:, None, None], sums, -np.inf)
        ceiling = np.pad(ceiling, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
        rows_n = np.arange(n)
        for _ in range(fw + fh):
            here = sums[rows_n, bi, bj]
            around = _gather(ceiling, bi[:, None] + np.arange(3), bj[:, None] + np.arange(3))
            step = around.reshape(n, 9).argmax(-1)
            better = around.reshape(n, 9)[rows_n, step] > here + 1e-9
            if not better.any():
                break
            bi = np.where(better, bi + step // 3 - 1, bi)
            bj = np.where(better, bj + step % 3 - 1, bj)
        mass = sums[rows_n, bi, bj]
        # 3. Contrast: noise or a colour cast spread over the window gives every footprint
        #    some coverage, and a footprint the size of a tiny object collects enough of it
        #    somewhere. So the footprint must hold its share beyond the window's typical
        #    footprint (the median of all footprint sums) and stand Z robust standard
        #    deviations (1.4826 MAD of the sums) above it. A few same-coloured neighbours
        #    (a paddle in the window) move neither the median nor the MAD.
        flat_sums = sums.reshape(n, -1)
        level = np.median(flat_sums, -1)
        spread = 1.4826 * np.median(np.abs(flat_sums - level[:, None]), -1)
        need = np.maximum(min_mass * target, Z * spread)
        # A zero-area truth must not be met by empty pixels.
        found = (mass - level >= need - 1e-9) & (mass > 1e-6)
        foot = _gather(a, bi[:, None] + np.arange(fh), bj[:, None] + np.arange(fw))
        with np.errstate(invalid="ignore", divide="ignore"):
            cx = (foot.sum(1) * (np.arange(fw) + 0.5)).sum(-1) / mass
            cy = (foot.sum(2) * (np.arange(fh) + 0.5)).sum(-1) / mass
        x = c0 - pad + bj + cx
        y = r0 - pad + bi + cy
        out[look, j] = np.where(found[:, None], np.stack([x, y], -1), np.nan)
    return out.reshape(*lead, k, 2)


@dataclass(frozen=True)
class ObjectReadback:
    """Per-sighting readback of K named objects; every array is (N, T, K).

    ``visible``: the ground truth has the object on screen; ``measured``: visible and the
    locator reads it from the true frame within ``gt_px`` (all visible ones without true
    frames); ``found``: measured and found in the generation; ``error`` in px, NaN unless found.
    """

    error: np.ndarray
    visible: np.ndarray
    measured: np.ndarray
    found: np.ndarray


def _check_state(truth: ObjectState, lead: tuple[int, ...], k: int) -> None:
    shapes = (truth.xy.shape, truth.wh.shape, truth.visible.shape)
    if shapes != ((*lead, k, 2), (*lead, k, 2), (*lead, k)):
        raise ValueError(
            f"object state xy, wh, visible have shapes {shapes}; expected "
            f"{(*lead, k, 2)}, {(*lead, k, 2)}, {(*lead, k)} ({k} objects over {lead})"
        )


def read_objects(
    gen: Any,
    truth: ObjectState,
    objects: SceneObjects,
    *,
    gt_frames: Any = None,
    gt_px: float | None = None,
    radius: float | None = None,
    tol: float = 32.0,
) -> ObjectReadback:
    """Locate the named objects in generated frames and compare with their true positions.

    gen: (N, T, H, W, 3) uint8; truth: (N, T, K, ...) object state at the same steps;
    gt_frames: optional (N, T, H, W, 3) true frames (see the module docstring).
    """
    gen = np.asarray(gen.detach().cpu().numpy() if hasattr(gen, "detach") else gen)
    if gen.ndim != 5 or gen.shape[-1] != 3:
        raise ValueError(f"gen must be (N, T, H, W, 3), got shape {gen.shape}")
    _check_state(truth, gen.shape[:2], len(objects.names))
    xy = np.asarray(truth.xy, dtype=np.float64)
    vis = np.asarray(truth.visible, dtype=bool) & ~np.isnan(xy).any(-1)
    measured = vis.copy()
    if gt_frames is not None:
        gt = np.asarray(gt_frames)
        if gt.shape != gen.shape:
            raise ValueError(f"gt_frames shape {gt.shape} differs from gen shape {gen.shape}")
        gt_px = objects.size / 64 if gt_px is None else gt_px
        gt_read = locate_objects(gt, truth, objects, radius=radius, tol=tol)
        with np.errstate(invalid="ignore"):
            measured &= np.linalg.norm(gt_read - xy, axis=-1) <= gt_px
    read = locate_objects(gen, truth, objects, radius=radius, tol=tol)
    found = measured & ~np.isnan(read[..., 0])
    error = np.where(found, np.linalg.norm(read - xy, axis=-1), np.nan)
    return ObjectReadback(error, vis, measured, found)


def window_mse(a: Any, b: Any, xy: Any, window: int) -> np.ndarray:
    """MSE between frames a and b in a ``window`` px square centred on each position.

    a, b: (..., H, W, 3); xy: (..., K, 2) (NaN: no window). The square is shifted to stay
    inside the frame. Returns (..., K) in uint8 units^2, NaN where xy is NaN.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    xy = np.asarray(xy, dtype=np.float64)
    h, w = a.shape[-3:-1]
    if a.shape != b.shape or xy.shape[:-2] != a.shape[:-3] or not 1 <= window <= min(h, w):
        raise ValueError(
            f"window_mse: frames {a.shape} and {b.shape} must match, xy {xy.shape} must be "
            f"(..., K, 2) over their leading shape, window {window} within the frame"
        )
    k = xy.shape[-2]
    sq = ((a - b) ** 2).mean(-1).reshape(-1, h, w)
    pts = xy.reshape(-1, k, 2)
    out = np.full(pts.shape[:-1], np.nan)
    for j in range(k):
        ok = ~np.isnan(pts[:, j]).any(-1)
        if not ok.any():
            continue
        p = pts[ok, j]
        c0 = np.clip(np.round(p[:, 0] - window / 2).astype(np.int64), 0, w - window)
        r0 = np.clip(np.round(p[:, 1] - window / 2).astype(np.int64), 0, h - window)
        crop = _gather(sq[ok], r0[:, None] + np.arange(window), c0[:, None] + np.arange(window))
        out[ok, j] = crop.mean((1, 2))
    return out.reshape(*xy.shape[:-1])


def _psnr_of_ratio(x: np.ndarray) -> np.ndarray:
    """Bootstrap statistic: (B, N, 2) per-clip [sum of MSEs, count] -> (B,) PSNR of the mean."""
    return psnr_from_mse(_ratio(x))


def _pooled_row(metric: str, h: int, num: np.ndarray, den: np.ndarray, stat, n_boot, seed):
    samples = np.stack([num, den], axis=-1).astype(np.float64)  # (N, 2)
    ci = bootstrap_ci(samples, stat, n_boot=n_boot, seed=seed)
    return MetricRow(metric, h, ci.estimate, 1, ci.low, ci.high, int(den.sum()))


def window_psnr_rows(
    gt: Any,
    pred: Any,
    truth: ObjectState,
    names: Sequence[str],
    *,
    horizons: Sequence[int] | None = None,
    window: int | None = None,
    prefix: str = "",
    whole_frame: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[MetricRow]:
    """``<prefix><name>_window_psnr`` per horizon and object: the PSNR of the mean MSE of
    ``pred`` against ``gt`` in a ``window`` px square (default 1/8 of the frame) centred on each
    visible object's true position, pooled over sightings (``n``); CIs bootstrap clips.
    ``whole_frame`` adds ``<prefix>psnr``, the whole-frame PSNR of the same frames.

    gt, pred: (N, T, H, W, 3); truth: (N, T, K, ...); frame t - 1 is horizon t.
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.ndim != 5 or gt.shape != pred.shape:
        raise ValueError(f"gt {gt.shape} and pred {pred.shape} must be equal (N, T, H, W, 3)")
    _check_state(truth, gt.shape[:2], len(names))
    hs = resolve_horizons(horizons, gt.shape[1])
    idx = [h - 1 for h in hs]
    window = max(1, gt.shape[-2] // 8) if window is None else window
    at = truth[:, idx]
    pts = np.where(np.asarray(at.visible, bool)[..., None], at.xy, np.nan)
    wm = window_mse(gt[:, idx], pred[:, idx], pts, window)  # (N, len(hs), K)
    rows: list[MetricRow] = []
    for j, h in enumerate(hs):
        if whole_frame:
            frame = ((gt[:, h - 1].astype(np.float64) - pred[:, h - 1]) ** 2).mean((1, 2, 3))
            ones = np.ones_like(frame)
            rows.append(_pooled_row(f"{prefix}psnr", h, frame, ones, _psnr_of_ratio, n_boot, seed))
        for kk, name in enumerate(names):
            m = wm[:, j, kk]
            num, den = np.nan_to_num(m, nan=0.0), (~np.isnan(m)).astype(np.float64)
            metric = f"{prefix}{name}_window_psnr"
            rows.append(_pooled_row(metric, h, num, den, _psnr_of_ratio, n_boot, seed))
    return rows


def object_metrics(
    gen: Any,
    truth: ObjectState,
    objects: SceneObjects,
    *,
    gt_frames: Any = None,
    horizons: Sequence[int] | None = None,
    gt_px: float | None = None,
    hit_px: float | None = None,
    radius: float | None = None,
    window: int | None = None,
    tol: float = 32.0,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[MetricRow]:
    """Per horizon and named object: error, miss, hit and measured rates, and the window PSNR
    of ``gen`` (the latter needs ``gt_frames``). See the module docstring; shapes as in
    ``read_objects``. Rates pool sightings over clips (``n`` is the denominator: measured
    sightings, or visible ones for ``_measured``); CIs bootstrap clips."""
    gen = np.asarray(gen.detach().cpu().numpy() if hasattr(gen, "detach") else gen)
    if gen.ndim != 5:
        raise ValueError(f"gen must be (N, T, H, W, 3), got shape {gen.shape}")
    _check_state(truth, gen.shape[:2], len(objects.names))
    hs = resolve_horizons(horizons, gen.shape[1])
    idx = [h - 1 for h in hs]
    gt = None
    if gt_frames is not None:
        gt = np.asarray(gt_frames)
        if gt.shape != gen.shape:
            raise ValueError(f"gt_frames shape {gt.shape} differs from gen shape {gen.shape}")
    rb = read_objects(
        gen[:, idx],
        truth[:, idx],
        objects,
        gt_frames=None if gt is None else gt[:, idx],
        gt_px=gt_px,
        radius=radius,
        tol=tol,
    )
    hit_px = objects.size / 32 if hit_px is None else hit_px
    hit = rb.found & (np.nan_to_num(rb.error, nan=np.inf) <= hit_px)
    rows: list[MetricRow] = []
    for j, h in enumerate(hs):
        for kk, name in enumerate(objects.names):
            meas, found = rb.measured[:, j, kk], rb.found[:, j, kk]
            per_clip = {
                # metric: (numerator, denominator) per clip
                "error": (np.nan_to_num(rb.error[:, j, kk], nan=0.0), found),
                "miss_rate": (meas & ~found, meas),
                "hit_rate": (hit[:, j, kk], meas),
                "measured": (meas, rb.visible[:, j, kk]),
            }
            for metric, (num, den) in per_clip.items():
                num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
                rows.append(_pooled_row(f"{name}_{metric}", h, num, den, _ratio, n_boot, seed))
    if gt is not None:
        rows += window_psnr_rows(
            gt, gen, truth, objects.names, horizons=hs, window=window, n_boot=n_boot, seed=seed
        )
    return rows
