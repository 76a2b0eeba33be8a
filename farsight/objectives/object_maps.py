"""Object maps: where each tracked entity of a frame is, as a Gaussian bump on the latent grid.
The target of the dynamics model's object head (``model.object_channels``), trained by
``objective.object_maps``.

Head 1's loss is a mean over every latent position, and a moving disc or ball is a few of
them: a model can lower it a long way while drawing each object at the conditional mean of
its next positions (a faint smear). The object head reads the last block's tokens of a frame
the model is denoising and must say where every entity of that frame is, which from a noisy
frame means carrying each one's position and velocity from the past: a loss in which the
objects are all there is, on the same features head 1 reads.

Entities, from a store's ground-truth state (``state.*`` arrays), in a fixed order:
    arena            ``player`` (2,) then ``objects`` (N, 2), world pixels; the view's
                     top-left corner is ``camera`` (2,), so view = world - camera
    RAM-mapped game  ``object_xy`` (K, 2), pixels of the frame, NaN where not visible
An entity outside the view (or not visible) has an empty map.

Dimension legend: B batch, T frames, K entities, H W latent grid.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

ARENA_KEYS = ("player", "camera", "objects")
RAM_KEY = "object_xy"


def entity_count(state_shapes: Mapping[str, tuple[int, ...]]) -> int:
    """K from the per-frame shapes of a store's state arrays (names without ``state.``);
    0 when the store holds no entity positions."""
    if all(k in state_shapes for k in ARENA_KEYS):
        return 1 + int(state_shapes["objects"][0])
    if RAM_KEY in state_shapes:
        return int(state_shapes[RAM_KEY][0])
    return 0


def entity_positions(state: Mapping[str, Tensor]) -> Tensor:
    """(B, T, K, 2) view positions (x, y) in frame pixels, NaN where not visible."""
    if all(k in state for k in ARENA_KEYS):
        world = torch.cat([state["player"].unsqueeze(-2), state["objects"]], dim=-2)
        return (world - state["camera"].unsqueeze(-2)).float()
    if RAM_KEY in state:
        return state[RAM_KEY].float()
    raise KeyError(
        f"no entity positions in the batch's state {sorted(state)}: object maps need "
        f"{list(ARENA_KEYS)} (the arena) or {RAM_KEY!r} (a game with a RAM map)"
    )


def object_maps(xy: Tensor, grid: tuple[int, int], cell: float, sigma: float) -> Tensor:
    """xy (B, T, K, 2) frame pixels (NaN: none) -> (B, T, K, H, W) maps in [0, 1]: at each
    latent cell exp(-d^2 / (2 sigma^2)), d the distance in cells from the cell's centre to the
    entity. ``cell``: frame pixels per latent cell. At sigma about half a cell the ratios of
    neighbouring cells carry the sub-cell position."""
    h, w = grid
    pos = xy / cell  # in cells; cell i covers [i, i + 1), its centre is i + 0.5
    shown = ~pos.isnan().any(-1)
    pos = torch.where(shown.unsqueeze(-1), pos, torch.zeros_like(pos))
    rows = torch.arange(h, device=xy.device, dtype=pos.dtype) + 0.5
    cols = torch.arange(w, device=xy.device, dtype=pos.dtype) + 0.5
    dy = (rows - pos[..., 1:2]).pow(2)  # (B, T, K, H)
    dx = (cols - pos[..., 0:1]).pow(2)  # (B, T, K, W)
    maps = torch.exp(-(dy.unsqueeze(-1) + dx.unsqueeze(-2)) / (2 * sigma**2))
    return maps * shown[..., None, None].to(maps.dtype)


def object_map_error(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Squared error of the maps over the masked frames (B, T), relative to the target maps'
    energy there: 1 for a head that says "nothing anywhere", 0 for the exact maps; so the
    weight means the same whatever the number of entities and their size on the grid. The
    energy counts as at least 1 (about one bump's at sigma 0.5 to 0.6), so a batch whose
    masked frames show no entity does not divide by almost nothing."""
    m = mask.to(torch.float32)[..., None, None, None]
    err = ((pred.float() - target.float()).pow(2) * m).sum()
    energy = (target.float().pow(2) * m).sum()
    return err / energy.clamp_min(1.0)
