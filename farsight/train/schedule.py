"""AdamW with decoupled weight decay on matrices only, and a warmup + cosine LR schedule."""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from farsight.train.config import OptimConfig


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier at ``step`` (0-based): linear warmup to 1, cosine down to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    # Norm gains, biases and embeddings (ndim < 2) are not shrunk towards zero.
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    fn = partial(lr_factor, warmup=cfg.warmup_steps, total=total_steps, min_ratio=cfg.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
