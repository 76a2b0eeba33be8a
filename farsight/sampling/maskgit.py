"""MaskGIT decoding of FSQ token frames, one frame at a time, over the rollout's KV cache.

Each new frame starts fully masked. At step s of S the model predicts every cell (the
backbone's level input is the frame's masked share, as in training); a token is drawn per
masked cell at ``temperature`` (0: the most likely; ``joint``: from the model's joint logits
over the codes, else digit by digit from its per-channel ones, ``models/tokens.py``), and the most
confident draws are kept so that after step s only floor(N cos(pi/2 s/S)) cells remain masked
(MaskGIT's cosine schedule; at least one cell is unmasked per step, none are left after the
last). Confidence is the draw's log-probability plus Gumbel noise of scale temperature x the
share of steps left (MaskGIT's annealed choice randomness). The finished frame is committed,
unmasked, at level 0: its keys and values enter the cache once.

The context goes through ``farsight.sampling.rollout`` (``prime`` / ``commit`` / ``predict``)
under the ``clean`` policy: so the KV cache, the window recompute and the full-history path
are the very ones the diffusion rollout uses, and a cached rollout equals an uncached one.

Randomness comes only from ``state.generator``.

Dimension legend: B batch, G generated frames, C FSQ channels, H W token grid, N = H * W,
L_c levels of channel c.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from farsight.models.dynamics import DynamicsModel
from farsight.models.tokens import draw_tokens, gumbel_noise, token_input
from farsight.sampling.context import ContextPolicy
from farsight.sampling.rollout import RolloutState, commit, predict, prime

CLEAN = ContextPolicy("clean")
"""MaskGIT's context: finished frames, unmasked, at level 0."""


def unmask_schedule(cells: int, steps: int) -> list[int]:
    """Cells still masked after each of ``steps`` steps: cosine, decreasing, ending at 0."""
    if steps < 1:
        raise ValueError(f"maskgit steps={steps} must be >= 1")
    left, out = cells, []
    for s in range(1, steps + 1):
        n = int(math.floor(cells * math.cos(0.5 * math.pi * s / steps)))
        n = max(0, min(n, left - 1))
        out.append(n)
        left = n
    out[-1] = 0
    return out


def clean_input(digits: Tensor, levels: tuple[int, ...]) -> Tensor:
    """Finished frames' digits (B, F, C, H, W) -> the backbone's input, nothing masked."""
    return token_input(digits, torch.zeros_like(digits[:, :, 0], dtype=torch.bool), levels)


def prime_tokens(
    model: DynamicsModel, state: RolloutState, digits: Tensor, actions_in: Tensor, levels
) -> None:
    """Start a rollout from real token frames (B, P, C, H, W) and the actions leading into them."""
    prime(model, state, clean_input(digits, levels), actions_in, CLEAN)


@torch.inference_mode()
def sample_token_frame(
    model: DynamicsModel,
    state: RolloutState,
    action_in: Tensor,
    levels: tuple[int, ...],
    *,
    steps: int = 8,
    temperature: float = 1.0,
    joint: bool = False,
) -> Tensor:
    """One new frame after the committed ones, given the action leading into it (B, 1).
    Returns its digits (B, C, H, W) (already committed to ``state``)."""
    cfg = model.cfg
    b, (h, w) = action_in.shape[0], cfg.latent_size
    device, gen = action_in.device, state.generator
    digits = torch.zeros((b, 1, len(levels), h, w), dtype=torch.long, device=device)
    mask = torch.ones((b, 1, h, w), dtype=torch.bool, device=device)
    remaining = unmask_schedule(h * w, steps)
    for s, left in enumerate(remaining):
        x = token_input(digits, mask, levels)
        tau = mask.flatten(2).float().mean(-1)
        logits = predict(model, state, x, tau, action_in, 0.0, CLEAN)
        drawn, logp = draw_tokens(logits[:, 0], levels, joint, temperature, gen)
        sampled = drawn.unsqueeze(1)  # (B, 1, C, H, W)
        confidence = logp
        if temperature > 0:
            anneal = temperature * (1.0 - (s + 1) / len(remaining))
            confidence = confidence + anneal * gumbel_noise(logp.shape, gen, device)
        confidence = confidence.masked_fill(~mask[:, 0], -math.inf).flatten(1)
        reveal = int(mask[0].sum()) - left  # every row has the same masked count
        chosen = confidence.topk(reveal, dim=1).indices
        newly = torch.zeros_like(confidence, dtype=torch.bool).scatter_(1, chosen, True)
        newly = newly.view(b, 1, h, w)
        digits = torch.where(newly.unsqueeze(2), sampled, digits)
        mask = mask & ~newly
    commit(model, state, clean_input(digits, levels), action_in, CLEAN)
    return digits[:, 0]


@torch.inference_mode()
def generate_tokens(
    model: DynamicsModel,
    state: RolloutState,
    actions_in: Tensor,
    levels: tuple[int, ...],
    *,
    steps: int = 8,
    temperature: float = 1.0,
    joint: bool = False,
    on_frame: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """G new frames' digits (B, G, C, H, W) after the committed ones, given the actions leading
    into them (B, G). ``on_frame(index, digits (B, C, H, W))`` sees each finished frame."""
    out = []
    for g in range(actions_in.shape[1]):
        index = state.next_frame
        frame = sample_token_frame(
            model,
            state,
            actions_in[:, g : g + 1],
            levels,
            steps=steps,
            temperature=temperature,
            joint=joint,
        )
        if on_frame is not None:
            on_frame(index, frame)
        out.append(frame)
    return torch.stack(out, dim=1)
