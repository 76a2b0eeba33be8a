"""AdamW with decoupled weight decay on matrices only, and a warmup + cosine LR schedule.

The schedule is a pure function of (step, elapsed fraction of the time budget); the loop sets
the LR from it before every step, so there is no scheduler state to save beyond the step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from farsight.parallel import is_sharded, unwrap
from farsight.train.config import OptimConfig


def lr_factor(
    step: int, warmup: int, total: int, min_ratio: float, time_fraction: float = 0.0
) -> float:
    """LR multiplier at ``step`` (0-based): linear warmup to 1, cosine down to ``min_ratio``.

    The cosine's progress is the larger of the step fraction and ``time_fraction`` (elapsed /
    time budget), so a run with a wall-clock budget anneals fully whichever budget ends first.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(total - warmup, 1)
    progress = min(max(max(step - warmup, 0) / span, time_fraction), 1.0)
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
    # torch's fused AdamW: one kernel per tensor (3.4 against 9.5 ms a step for the
    # quickstart's 3.6M parameters on 2 CPU threads, docs/results/follow_actions/
    # step_profile.py); sharded (DTensor) parameters of an FSDP2 model keep the loop.
    plain = not (torch.distributed.is_available() and is_sharded(unwrap(model)))
    fused = plain and all(p.device.type in ("cpu", "cuda") for p in decay + no_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=fused)


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Set every group's LR to its base LR (``initial_lr``) times ``factor``; returns group 0's."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
        group["lr"] = group["initial_lr"] * factor
    return optimizer.param_groups[0]["lr"]
