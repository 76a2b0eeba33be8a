"""FSQ tokens as the dynamics backbone sees them on the MaskGIT path (pure functions).

An FSQ token is a tuple of per-channel digits (channel c in 0..levels[c]-1). The backbone is
the diffusion one unchanged but for its channel counts (``DynamicsConfig.latent_channels`` /
``out_channels``):

    input   (B, T, C + 1, H, W): each channel's code value (digit - L//2) / (L//2) in [-1, 1],
            zeroed where the cell is masked, plus a mask channel (1 = masked). Cells are masked
            whole (all C channels together): a token is a cell.
    output  (B, T, K, H, W) logits per cell, in one of two layouts (``objective.token_logits``):
            factorized  K = sum(levels): one block of levels[c] logits per channel c (a
                        factorised softmax over the prod(levels) codes: 23 logits for 1000
                        codes); a draw picks each channel's digit independently, so where a
                        cell might hold either of two tokens a draw can mix their digits.
            joint       K = prod(levels): one logit per code (at the FSQ's own token index), so
                        a draw picks a whole token.

Dimension legend: B batch, T frames, C = len(levels) FSQ channels, H W token grid,
L_c levels of channel c, K logits per cell.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from farsight.models.fsq import FSQ, digits_to_indices, indices_to_digits


def input_channels(levels: tuple[int, ...]) -> int:
    return len(levels) + 1


def output_channels(levels: tuple[int, ...], joint: bool = False) -> int:
    return math.prod(levels) if joint else int(sum(levels))


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


def _check_joint(channels: int, levels: tuple[int, ...]) -> None:
    if channels != math.prod(levels):
        raise ValueError(
            f"{channels} logit channels for joint FSQ levels {levels} (prod {math.prod(levels)})"
        )


def token_nll(out: Tensor, digits: Tensor, levels: tuple[int, ...], joint: bool = False) -> Tensor:
    """Cross-entropy of each cell's token (factorized: summed over its channels): (B, T, H, W)
    fp32. Either way the negative log-likelihood of the whole token."""
    if joint:
        _check_joint(out.shape[2], levels)
        target = digits_to_indices(digits, levels, dim=2)
        return F.cross_entropy(out.float().transpose(1, 2), target, reduction="none")
    total = None
    for c, logits in enumerate(split_logits(out, levels)):
        nll = F.cross_entropy(logits.float().transpose(1, 2), digits[:, :, c], reduction="none")
        total = nll if total is None else total + nll
    return total


def token_correct(
    out: Tensor, digits: Tensor, levels: tuple[int, ...], joint: bool = False
) -> Tensor:
    """(B, T, H, W) bool: the most likely token (factorized: every channel's most likely
    digit) is right."""
    if joint:
        _check_joint(out.shape[2], levels)
        return out.argmax(2) == digits_to_indices(digits, levels, dim=2)
    ok = None
    for c, logits in enumerate(split_logits(out, levels)):
        hit = logits.argmax(2) == digits[:, :, c]
        ok = hit if ok is None else ok & hit
    return ok


def gumbel_noise(shape, generator: torch.Generator | None, device) -> Tensor:
    u = torch.rand(shape, generator=generator, device=device).clamp_(1e-20, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def draw_tokens(
    logits: Tensor,
    levels: tuple[int, ...],
    joint: bool = False,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """One frame's logits (B, K, H, W) -> a token per cell: digits (B, C, H, W) and the
    draw's log-probability (B, H, W) fp32. Temperature 0: the most likely token (factorized:
    each channel's most likely digit); otherwise a Gumbel-max draw at that temperature."""

    def pick(logprob: Tensor) -> Tensor:  # (B, L, H, W) -> (B, H, W)
        if temperature <= 0:
            return logprob.argmax(1)
        noise = gumbel_noise(logprob.shape, generator, logprob.device)
        return (logprob / temperature + noise).argmax(1)

    if joint:
        _check_joint(logits.shape[1], levels)
        logprob = torch.log_softmax(logits.float(), dim=1)
        index = pick(logprob)
        logp = logprob.gather(1, index.unsqueeze(1)).squeeze(1)
        return indices_to_digits(index, levels), logp
    draws, logp = [], None
    for lg in split_logits(logits.unsqueeze(1), levels):  # per channel (B, 1, L_c, H, W)
        logprob = torch.log_softmax(lg[:, 0].float(), dim=1)
        digit = pick(logprob)
        draws.append(digit)
        part = logprob.gather(1, digit.unsqueeze(1)).squeeze(1)
        logp = part if logp is None else logp + part
    return torch.stack(draws, dim=1), logp
