"""The worst-share term both reconstruction losses can add: the mean of the largest errors.

A one-pixel object (Breakout's ball at 64x64, one latent cell of 256) weighs almost nothing in
a mean squared error, so a model can erase it at no cost; once erased, its pixels are among
the frame's worst. Averaging each frame's worst ``share`` of positions puts them beside the
mean wherever they are, with no labels and no statistics of the data.
"""

from __future__ import annotations

from torch import Tensor


def worst_share_mean(per_position: Tensor, share: float) -> Tensor:
    """(..., N) errors per position -> (...): the mean of the largest ``share`` of the N (at
    least one)."""
    k = max(1, round(share * per_position.shape[-1]))
    return per_position.topk(k, dim=-1).values.mean(-1)
