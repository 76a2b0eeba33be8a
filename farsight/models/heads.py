"""Multi-frame prediction heads (the far heads, offsets k > 1).

Head k at position t predicts frame t + k - 1 from the trunk's hidden state at position t
(taken after block L_b), which has seen frames <= t, frame t itself corrupted. It regresses
the clean latent of that frame, average-pooled by r_k. Head 1 is not here: it is the trunk's
own output layer (see ``dynamics.py``).

Per far head: pool the token grid to the head's grid, add the extra actions a_t .. a_{t+k-2}
(the trunk's conditioning already holds a_{t-1}), run d_k space-time blocks (causal in time,
so position t still sees nothing past its own inputs), project each token to a patch of the
pooled target.

Action modes:
    sum    z = pool(h_t) + sum_{j=0}^{k-2} [E_a(a_{t+j}) + P(j)] + E_head(k)
           (the post's preferred form: cheap, and the head must imagine the intermediate frames)
    frame  z = W_k [RMSNorm(pool(h_t)); RMSNorm(pool(embed(x_{t+k-2})) + E_a(a_{t+k-2}))]
           (DeepSeek-V3 MTP: the true frame just before the target and the action out of it)

In ``frame`` mode head k at position t also reads the true frame t + k - 2: still strictly
before its target, but past t for k > 2 (teacher forcing, as in DeepSeek's MTP modules).

Dimension legend:
    B batch, T positions (input frames), Ta action frames (>= T), N tokens per frame,
    gh gw token grid, D width, C latent channels, k offset, r resolution factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from farsight.dynamics_config import DynamicsConfig
from farsight.models.layers import FinalLayer, RMSNorm, SpaceTimeBlock, pool_tokens, unpatchify


@dataclass(frozen=True)
class HeadGeometry:
    """How a head maps the trunk's token grid to its pooled target.

    The token grid (gh, gw) is pooled by ``pool`` to ``grid``; each head token emits a
    ``patch`` of the target, so grid * patch = latent size / r.
    """

    pool: tuple[int, int]
    grid: tuple[int, int]
    patch: tuple[int, int]


def head_geometry(
    token_grid: tuple[int, int], latent_size: tuple[int, int], resolution: int
) -> HeadGeometry:
    """Prefer pooling tokens by r (same patch as the trunk, r^2 fewer tokens); where the token
    grid does not divide by r (small latents, big patches), use the largest grid dividing both
    the token grid and the target."""
    pool, grid, patch = [], [], []
    for tokens, size in zip(token_grid, latent_size, strict=True):
        target = size // resolution
        g = tokens // resolution if tokens % resolution == 0 else math.gcd(tokens, target)
        pool.append(tokens // g)
        grid.append(g)
        patch.append(target // g)
    return HeadGeometry(tuple(pool), tuple(grid), tuple(patch))


def shifted_indices(length: int, start: int, count: int, limit: int, device) -> Tensor:
    """(length, count) indices t + start + j, clamped to ``limit - 1``. Clamped entries belong
    to positions whose target lies past the clip: the objective masks them out."""
    t = torch.arange(length, device=device).unsqueeze(1)
    j = torch.arange(count, device=device).unsqueeze(0)
    return (t + start + j).clamp(max=limit - 1)


class FarHead(nn.Module):
    def __init__(self, cfg: DynamicsConfig, offset: int, resolution: int, depth: int):
        super().__init__()
        d = cfg.width
        self.offset = offset
        self.token_grid = cfg.token_grid
        self.geometry = head_geometry(cfg.token_grid, cfg.latent_size, resolution)
        self.frame_mode = cfg.heads.action_mode == "frame"
        if self.frame_mode:
            self.norm_hidden = RMSNorm(d)
            self.norm_frame = RMSNorm(d)
            self.merge = nn.Linear(2 * d, d)
        rope = self.geometry.grid if cfg.spatial_rope else None
        self.blocks = nn.ModuleList(
            SpaceTimeBlock(d, cfg.num_heads, cfg.mlp_ratio, cfg.window, cfg.qk_norm, rope)
            for _ in range(depth)
        )
        patch = self.geometry.patch
        self.final = FinalLayer(d, patch[0] * patch[1] * cfg.output_channels)

    def forward(
        self, hidden: Tensor, cond: Tensor, extra: Tensor, frame_tokens: Tensor | None
    ) -> Tensor:
        """hidden (B, T, N, D); cond, extra (B, T, D): per-frame conditioning and this head's
        own embedding (actions + head); frame_tokens (B, T, N, D): true frame t+k-2 embedded
        (frame mode only). Returns the prediction (B, T, C, H / r, W / r)."""
        z = pool_tokens(hidden, self.token_grid, self.geometry.pool)
        if self.frame_mode:
            frame = pool_tokens(frame_tokens, self.token_grid, self.geometry.pool)
            z = self.merge(torch.cat([self.norm_hidden(z), self.norm_frame(frame)], dim=-1))
        z = z + extra.unsqueeze(2)
        cond = cond + extra
        frames = torch.arange(z.shape[1], device=z.device)
        for block in self.blocks:
            z = block(z, cond, frames)
        return unpatchify(self.final(z, cond), self.geometry.grid, self.geometry.patch)


class MultiFrameHeads(nn.Module):
    """All far heads of a model, with the embeddings they share."""

    def __init__(self, cfg: DynamicsConfig):
        super().__init__()
        heads = cfg.heads
        d = cfg.width
        self.offsets = heads.far_offsets
        self.frame_mode = heads.action_mode == "frame"
        # With a null action its row follows the clip start's (unused here), as in the trunk.
        self.action_embed = nn.Embedding(cfg.action_rows if cfg.null_action else cfg.num_actions, d)
        self.head_embed = nn.Embedding(len(self.offsets), d)
        if not self.frame_mode:
            # P(j): place of an extra action within the head's run (makes the sum order-aware).
            self.order_embed = nn.Embedding(heads.max_offset - 1, d)
        self.heads = nn.ModuleList(
            FarHead(cfg, k, r, depth)
            for k, r, depth in zip(
                self.offsets, heads.head_resolutions[1:], heads.far_depths, strict=True
            )
        )

    def forward(
        self,
        hidden: Tensor,
        cond: Tensor,
        actions: Tensor,
        frame_tokens: Tensor | None = None,
    ) -> dict[int, Tensor]:
        """hidden (B, T, N, D) at the branch layer, cond (B, T, D), actions (B, Ta) with a_t
        taken after frame t, frame_tokens (B, Tf, N, D) embedded clean frames (frame mode).
        Returns {k: prediction of frame t+k-1 at each position t, (B, T, C, H/r_k, W/r_k)}."""
        if self.frame_mode and frame_tokens is None:
            raise ValueError("action_mode 'frame' needs the clean frames (pass clean=...)")
        t, ta = hidden.shape[1], actions.shape[1]
        out = {}
        for i, (k, head) in enumerate(zip(self.offsets, self.heads, strict=True)):
            extra = self.head_embed.weight[i].expand(*cond.shape[:2], -1)
            tokens = None
            if self.frame_mode:
                # True frame t+k-2 and the action taken after it (the one leading to the target).
                idx = shifted_indices(t, k - 2, 1, min(ta, frame_tokens.shape[1]), hidden.device)
                idx = idx.squeeze(1)
                tokens = frame_tokens[:, idx] + self.action_embed(actions[:, idx]).unsqueeze(2)
            else:
                idx = shifted_indices(t, 0, k - 1, ta, hidden.device)  # a_t .. a_{t+k-2}
                run = self.action_embed(actions[:, idx]) + self.order_embed.weight[: k - 1]
                extra = extra + run.sum(dim=2)
            out[k] = head(hidden, cond, extra, tokens)
        return out
