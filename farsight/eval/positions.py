"""Object- and player-position error of generated arena frames against the ground-truth state.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from farsight.envs.arena import OBJECT_COLORS, PLAYER_COLOR, locate_by_color
from farsight.eval.metrics import MetricRow, resolve_horizons
from farsight.eval.stats import bootstrap_ci

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
