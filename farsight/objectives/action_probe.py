"""A cheap, teacher-forced probe of whether a denoiser uses its actions.

The last input frame of each clip is put at noise level ``tau`` (1: pure noise, so everything
the model knows about it comes from its context and the action leading into it); the earlier
frames are clean. Head 1's one-step clean estimate of that frame is scored (latent MSE) three
ways:

    true      with the clip's actions
    random    with the action leading into the last frame replaced by another, uniformly
    copy      the previous clean frame itself (copy-last-frame, the trivial reference)

``action_gain_db`` = 10 log10(random / true) is a one-step, latent-space cousin of Genie's
Delta-PSNR: 0 for a model that ignores the action. ``copy_gain_db`` = 10 log10(copy / true) is
above 0 when the estimate beats copying. It costs two forward passes, so validation logs it at
every check and its curve against steps tells budget from method long before a rollout would.

Dimension legend: B batch, T input frames, C H W latent.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from farsight import diffusion
from farsight.dynamics_config import ObjectiveConfig
from farsight.objectives.multiframe import frame_mse, input_frames
from farsight.parallel import unwrap


@torch.no_grad()
def clean_estimate(
    model: nn.Module, x: Tensor, levels: Tensor, actions: Tensor, cfg: ObjectiveConfig
) -> Tensor:
    """Head 1's clean estimate (B, T, C, H, W) of every frame of ``x`` (B, T, C, H, W) at
    noise ``levels`` (B, T), its context labelled clean (context level 0)."""
    plain = unwrap(model)
    context_level = torch.zeros_like(levels) if plain.cfg.context_level_embed else None
    out = plain(x, levels, actions, context_level=context_level, heads=False)
    return diffusion.predicted_x0(out.main.float(), x, levels, cfg.prediction, cfg.schedule)


@torch.no_grad()
def action_probe(
    model: nn.Module,
    batch: dict,
    cfg: ObjectiveConfig,
    generator: torch.Generator | None = None,
    tau: float = 1.0,
) -> dict[str, float]:
    """Probe metrics (``probe/...``) of a continuous-latent denoiser on ``batch``
    (``latents`` (B, Tt, C, H, W), ``actions`` (B, Tt))."""
    plain = unwrap(model)
    clean, actions = batch["latents"], batch["actions"]
    n_in = input_frames(batch, plain.cfg.heads.max_offset)
    if n_in < 2:
        raise ValueError("the action probe needs clips of at least 2 input frames")
    x0 = clean[:, :n_in]
    b = x0.shape[0]
    levels = torch.zeros(b, n_in, device=x0.device)
    levels[:, -1] = tau
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x = diffusion.add_noise(x0, eps, levels, cfg.schedule)

    # a_{n_in - 2} leads into the last input frame; its replacement is another action, drawn
    # uniformly from the other A - 1 (a draw equal to the truth would only dilute the gain).
    random_actions = actions.clone()
    true = actions[:, n_in - 2]
    drawn = torch.randint(
        plain.cfg.num_actions - 1, (b,), generator=generator, device=actions.device
    )
    random_actions[:, n_in - 2] = drawn + (drawn >= true).long()
    target = x0[:, -1:].float()
    mse_true = frame_mse(clean_estimate(plain, x, levels, actions, cfg)[:, -1:], target).mean()
    mse_random = frame_mse(
        clean_estimate(plain, x, levels, random_actions, cfg)[:, -1:], target
    ).mean()
    mse_copy = frame_mse(x0[:, -2:-1], target).mean()
    true, rand, copy = float(mse_true), float(mse_random), float(mse_copy)
    return {
        "probe/mse_true": true,
        "probe/mse_random": rand,
        "probe/mse_copy": copy,
        "probe/action_gain_db": 10 * math.log10(max(rand, 1e-12) / max(true, 1e-12)),
        "probe/copy_gain_db": 10 * math.log10(max(copy, 1e-12) / max(true, 1e-12)),
    }
