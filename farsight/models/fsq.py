"""Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made
Simple"): each latent channel is bounded and rounded to one of ``levels[c]`` values; the code of
a position is the tuple of its channel values, its index a mixed-radix number.

No codebook, no commitment loss, no dead codes: the gradient passes the rounding straight
through. The codebook size is ``prod(levels)``, e.g. (8, 5, 5, 5) -> 1000 codes.

Dimensions (legend):
    B batch, C = len(levels) latent channels, H W latent grid.
    codes   (B, C, H, W) float in [-1, 1], channel c on a grid of levels[c] values
    indices (B, H, W) int64 in [0, prod(levels))
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn


def _along(values: list[int], dim: int, ndim: int, like: Tensor) -> Tensor:
    """``values`` as an int64 tensor laid along ``dim`` of an ``ndim``-dimensional tensor."""
    shape = [1] * ndim
    shape[dim] = len(values)
    return torch.tensor(values, dtype=torch.int64, device=like.device).view(shape)


def digits_to_indices(digits: Tensor, levels: tuple[int, ...], dim: int = 1) -> Tensor:
    """Per-channel digits along ``dim`` -> mixed-radix indices (that dim removed), channel 0
    least significant: index = sum_c digit_c * prod(levels[:c])."""
    places = _along([math.prod(levels[:c]) for c in range(len(levels))], dim, digits.ndim, digits)
    return (digits.long() * places).sum(dim=dim)


def indices_to_digits(indices: Tensor, levels: tuple[int, ...], dim: int = 1) -> Tensor:
    """The inverse of ``digits_to_indices``: indices -> digits along a new ``dim``."""
    indices = indices.long().unsqueeze(dim)
    places = _along([math.prod(levels[:c]) for c in range(len(levels))], dim, indices.ndim, indices)
    return (indices // places) % _along(list(levels), dim, indices.ndim, indices)


class FSQ(nn.Module):
    def __init__(self, levels: tuple[int, ...] | list[int], eps: float = 1e-3):
        super().__init__()
        levels = tuple(int(v) for v in levels)
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels must all be >= 2, got {levels}")
        self.levels = levels
        self.codebook_size = math.prod(levels)
        self.eps = eps
        level = torch.tensor(levels, dtype=torch.float32)
        self.register_buffer("_levels", level, persistent=False)

    @property
    def dim(self) -> int:
        return len(self.levels)

    def _per_channel(self, t: Tensor, like: Tensor) -> Tensor:
        return t.to(like.device, like.dtype if like.is_floating_point() else t.dtype).view(
            1, -1, *([1] * (like.ndim - 2))
        )

    def _bound_terms(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-channel (half, offset, shift) of ``bound``: tanh(z + shift) * half - offset."""
        levels = self._per_channel(self._levels, like)
        half = (levels - 1) * (1 - self.eps) / 2
        # Even level counts have no integer at 0: shift by half a step so the grid is symmetric.
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)
        # tan, as in the reference implementation (atanh is undefined for 2 levels; for more
        # levels the two agree to 1e-3): keeps indices compatible with other FSQ code.
        return half, offset, torch.tan(offset / half)

    def bound(self, z: Tensor) -> Tensor:
        """Squash channel c into an interval that rounds to exactly levels[c] integers."""
        half, offset, shift = self._bound_terms(z)
        return torch.tanh(z + shift) * half - offset

    def forward(self, z: Tensor) -> Tensor:
        """Pre-quantization latent (B, C, ...) -> codes in [-1, 1], straight-through gradient."""
        if z.shape[1] != self.dim:
            raise ValueError(f"FSQ with {self.dim} levels got {z.shape[1]} channels")
        z = z.float()  # rounding in bf16 would put values on the wrong side of .5
        bounded = self.bound(z)
        rounded = bounded + (torch.round(bounded) - bounded).detach()
        return rounded / self._per_channel(self._levels // 2, z)

    def preimage(self, codes: Tensor) -> Tensor:
        """Codes (B, C, ...) -> a pre-quantization latent that ``forward`` maps back to exactly
        these codes: ``bound`` inverted at each code's grid value drawn 2 eps towards the
        centre (the grid's end values are the bound's open limits). For putting tokens that
        were sampled, not encoded, where pre-quantization latents are read."""
        if codes.shape[1] != self.dim:
            raise ValueError(f"FSQ with {self.dim} levels got {codes.shape[1]} channels")
        codes = codes.float()
        half, offset, shift = self._bound_terms(codes)
        rounded = codes * self._per_channel(self._levels // 2, codes)
        inside = (rounded + offset) * (1 - 2 * self.eps) / half  # in (-1, 1)
        return torch.atanh(inside) - shift

    def codes_to_indices(self, codes: Tensor) -> Tensor:
        """(B, C, H, W) codes -> (B, H, W) int64 indices."""
        half = self._per_channel(self._levels // 2, codes)
        return digits_to_indices(torch.round(codes.float() * half + half).long(), self.levels)

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """(B, H, W) integer indices -> (B, C, H, W) float codes."""
        digits = indices_to_digits(indices, self.levels)
        half = self._per_channel(self._levels // 2, digits.float())
        return (digits.float() - half) / half

    def tokens(self, z: Tensor) -> Tensor:
        """Pre-quantization latent -> indices (no gradient)."""
        with torch.no_grad():
            return self.codes_to_indices(self(z))

    def tokens_pooled(self, z: Tensor, factor: int) -> Tensor:
        """Low-resolution tokens: FSQ of the ``factor`` x ``factor`` average-pooled latent.

        Pooling before quantizing keeps the coarse token a summary of the fine latents rather
        than a vote over already-rounded codes.
        """
        if factor == 1:
            return self.tokens(z)
        pooled = rearrange(z.float(), "b c (h p) (w q) -> b c h w (p q)", p=factor, q=factor)
        return self.tokens(pooled.mean(-1))
