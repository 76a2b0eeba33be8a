"""MaskGIT objective (Genie's dynamics) on the diffusion backbone: ``loss, logs = objective(model,
batch)``.

Per frame a mask rate r_t = cos(pi/2 u_t), u_t ~ U(0, 1) (MaskGIT's cosine schedule, drawn
independently per frame as diffusion forcing draws tau): ceil(r_t N) random cells of frame t
are masked (at least one). With ``objective.mask_frames="last"`` only the clip's last input
frame is masked (next-frame MaskGIT: the context whole, as in a rollout). The backbone sees
the token input of ``farsight/models/tokens.py`` and the mask rate as its per-frame level
(tau_t = masked share: the noise embedding turns into a mask-rate embedding, and clean
context, tau = 0, means the same on both paths).

    L = L_1 + sum_k lambda_k L_k
    L_1   cross-entropy of head 1 on the *masked* cells of every input frame (unmasked cells
          are given; scoring them would teach copying)
    L_k   far head k at position t: cross-entropy on every cell of the low-resolution token map
          of frame t + k - 1 (FSQ of the pre-quantization latent average-pooled by r_k, as the
          autoencoder's coarse tokens are made)

Batch keys: ``latents`` (B, Tt, C, H, W) FSQ pre-quantization latents (what an fsq latent
cache holds), ``actions`` (B, Tt), optional ``input_frames``, ``valid`` (as in multiframe.py).
The logits are a factorised softmax over the codes (per FSQ channel) or a joint one
(``objective.token_logits``, see tokens.py); either way L is the token's negative
log-likelihood.

Dimension legend: B batch, Tt clip frames incl. extra targets, T input frames, C FSQ
channels, H W token grid, N = H * W cells, r resolution factor.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from farsight.config import ConfigError
from farsight.dynamics_config import HeadsConfig, ObjectiveConfig
from farsight.models.fsq import FSQ
from farsight.models.tokens import fsq_digits, token_correct, token_input, token_nll
from farsight.objectives.multiframe import (
    LossTerms,
    head_targets,
    input_frames,
    masked_mean,
    unwrap,
)


def mask_counts(rate: Tensor, cells: int) -> Tensor:
    """Mask rates (B, T) in [0, 1] -> masked cells per frame, in 1..cells."""
    return torch.ceil(rate * cells).clamp(1, cells).long()


def random_mask(counts: Tensor, grid: tuple[int, int], generator=None) -> Tensor:
    """(B, T) counts -> (B, T, H, W) bool with exactly ``counts`` random cells per frame."""
    b, t = counts.shape
    scores = torch.rand((b, t, grid[0] * grid[1]), generator=generator, device=counts.device)
    rank = scores.argsort(-1).argsort(-1)
    return (rank < counts.unsqueeze(-1)).view(b, t, *grid)


class MaskGIT:
    kind: ClassVar[str] = "maskgit"

    def __init__(self, cfg: ObjectiveConfig | None = None):
        self.cfg = cfg or ObjectiveConfig(kind=self.kind)
        self.cfg.validate()
        if self.cfg.kind != self.kind:
            raise ConfigError(f"MaskGIT given objective.kind={self.cfg.kind!r}")
        self.levels = tuple(self.cfg.fsq_levels)
        self.joint = self.cfg.token_logits == "joint"
        self.fsq = FSQ(self.levels)

    def __call__(
        self, model: nn.Module, batch: dict, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        terms = self.terms(model, batch, generator)
        return terms.total(), terms.logs()

    def sample_mask(self, shape: tuple[int, int], grid, device, generator) -> Tensor:
        """(B, T) -> mask (B, T, H, W): a cosine-distributed mask rate per frame."""
        u = torch.rand(shape, generator=generator, device=device)
        counts = mask_counts(torch.cos(0.5 * math.pi * u), grid[0] * grid[1])
        return random_mask(counts, grid, generator)

    def terms(
        self, model: nn.Module, batch: dict, generator: torch.Generator | None = None
    ) -> LossTerms:
        heads: HeadsConfig = unwrap(model).cfg.heads
        if heads.multires or heads.aux_weight > 0:
            raise ConfigError(
                "heads.multires and heads.aux_weight are diffusion options; maskgit takes none"
            )
        pre, actions = batch["latents"], batch["actions"]
        valid = batch.get("valid")
        n_in = input_frames(batch, heads.max_offset)
        digits = fsq_digits(self.fsq, pre)  # (B, Tt, C, H, W)
        b, grid = digits.shape[0], tuple(digits.shape[-2:])
        mask = self.sample_mask((b, n_in), grid, pre.device, generator)
        if self.cfg.mask_frames == "last":  # next-frame MaskGIT: the context stays whole
            mask[:, :-1] = False
        tau = mask.flatten(2).float().mean(-1)  # the masked share is the frame's level
        x = token_input(digits[:, :n_in], mask, self.levels)
        clean = token_input(
            digits, torch.zeros_like(digits[:, :, 0], dtype=torch.bool), self.levels
        )
        out = model(x, tau, actions, clean=clean)

        scored = mask if valid is None else mask & valid[:, :n_in, None, None]
        nll = token_nll(out.main, digits[:, :n_in], self.levels, self.joint)
        weight = scored.float()
        main = (nll * weight).sum() / weight.sum().clamp_min(1.0)
        correct = token_correct(out.main.detach(), digits[:, :n_in], self.levels, self.joint)
        values = {"main": main}
        weights = {"main": 1.0}
        diagnostics = {
            "mask/rate": tau.mean(),
            "acc/main": (correct.float() * weight).sum() / weight.sum().clamp_min(1.0),
        }
        far_res = heads.head_resolutions[1:]
        for head, lam in zip(
            head_targets(pre, heads.far_offsets, far_res, n_in, valid),
            heads.far_lambdas,
            strict=True,
        ):
            k = head.offset
            target = fsq_digits(self.fsq, head.target)
            pred = out.far[k]
            per_frame = token_nll(pred, target, self.levels, self.joint).flatten(2).mean(-1)
            values[f"head{k}"] = masked_mean(per_frame, head.mask)
            weights[f"head{k}"] = lam
            hits = token_correct(pred.detach(), target, self.levels, self.joint)
            hits = hits.flatten(2).float().mean(-1)
            diagnostics[f"acc/head{k}"] = masked_mean(hits, head.mask)
            diagnostics[f"mask/head{k}"] = head.mask.float().mean()
        return LossTerms(values, weights, diagnostics)
