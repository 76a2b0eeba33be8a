"""FSQ tokens as the dynamics backbone sees them on the MaskGIT path (pure functions).

An FSQ token is a tuple of per-channel digits (channel c in 0..levels[c]-1). The backbone is
the diffusion one unchanged but for its channel counts (``DynamicsConfig.latent_channels`` /
``out_channels``):

    input   (B, T, C + 1, H, W): each channel's code value (digit - L//2) / (L//2) in [-1, 1],
            zeroed where the cell is masked, plus a mask channel (1 = masked). Cells are masked
            whole (all C channels together): a token is a cell.
    output  (B, T, sum(levels), H, W): per cell, one block of levels[c] logits per channel c
            (a factorised softmax over the prod(levels) codes: 23 logits for 1000 codes).

Dimension legend: B batch, T frames, C = len(levels) FSQ channels, H W token grid,
L_c levels of channel c.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from farsight.models.fsq import FSQ


def input_channels(levels: tuple[int, ...]) -> int:
    return len(levels) + 1


def output_channels(levels: tuple[int, ...]) -> int:
    return int(sum(levels))


def _halves(levels: tuple[int, ...], like: Tensor, channel_dim: int) -> Tensor:
    shape = [1] * like.ndim
    shape[channel_dim] = len(levels)
    return torch.tensor([lv // 2 for lv in levels], device=like.device).view(shape)


def fsq_digits(fsq: FSQ, latents: Tensor) -> Tensor:
    """Pre-quantization latents (B, T, C, H, W) -> digits (B, T, C, H, W) int64."""
    b = latents.shape[0]
    codes = fsq(latents.flatten(0, 1).float()).unflatten(0, (b, -1))
    half = _halves(fsq.levels, codes, 2)
    return torch.round(codes * half + half).long()


def digits_to_codes(digits: Tensor, levels: tuple[int, ...]) -> Tensor:
    """Digits (..., C, H, W) -> FSQ code values (same shape, float), what the decoder reads."""
    half = _halves(levels, digits, digits.ndim - 3).float()
    return (digits.float() - half) / half


def digits_to_latents(fsq: FSQ, digits: Tensor) -> Tensor:
    """Digits (B, T, C, H, W) -> pre-quantization latents that ``fsq_digits`` maps back to
    exactly these digits (``FSQ.preimage``): sampled tokens where a batch holds encodings."""
    codes = digits_to_codes(digits, fsq.levels)
    return fsq.preimage(codes.flatten(0, 1)).unflatten(0, digits.shape[:2])


def token_input(digits: Tensor, mask: Tensor, levels: tuple[int, ...]) -> Tensor:
    """Digits (B, T, C, H, W) and mask (B, T, H, W) bool -> backbone input (B, T, C+1, H, W)."""
    m = mask.unsqueeze(2).to(torch.float32)
    codes = digits_to_codes(digits, levels) * (1.0 - m)
    return torch.cat([codes, m], dim=2)


def split_logits(out: Tensor, levels: tuple[int, ...]) -> list[Tensor]:
    """(B, T, sum L, H, W) -> per channel (B, T, L_c, H, W)."""
    if out.shape[2] != sum(levels):
        raise ValueError(
            f"{out.shape[2]} logit channels for FSQ levels {levels} (sum {sum(levels)})"
        )
    return list(out.split(list(levels), dim=2))


def token_nll(out: Tensor, digits: Tensor, levels: tuple[int, ...]) -> Tensor:
    """Cross-entropy of each cell's token, summed over its channels: (B, T, H, W) fp32."""
    total = None
    for c, logits in enumerate(split_logits(out, levels)):
        nll = F.cross_entropy(logits.float().transpose(1, 2), digits[:, :, c], reduction="none")
        total = nll if total is None else total + nll
    return total


def token_correct(out: Tensor, digits: Tensor, levels: tuple[int, ...]) -> Tensor:
    """(B, T, H, W) bool: every channel's most likely digit is right."""
    ok = None
    for c, logits in enumerate(split_logits(out, levels)):
        hit = logits.argmax(2) == digits[:, :, c]
        ok = hit if ok is None else ok & hit
    return ok
