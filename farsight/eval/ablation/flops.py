"""The cost of an ablation cell: FLOPs of one training step, counted by torch."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from farsight.models.dynamics import DynamicsModel
from farsight.objectives import make_objective
from farsight.train.recipes.dynamics import DynamicsRunConfig


def step_flops(cfg: DynamicsRunConfig) -> dict[str, float]:
    """FLOPs of one training step (forward + backward of the objective, FlopCounterMode) and
    the parameter count, for a run config whose latent geometry is filled in (config.json)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = DynamicsModel(cfg.model)
        objective = make_objective(cfg.objective)
        m = cfg.model
        frames = cfg.data.clip_len + m.heads.max_offset - 1
        b = cfg.train.batch_size
        # MaskGIT batches hold the FSQ pre-quantization latents, not the backbone's input.
        channels = len(cfg.objective.fsq_levels) or m.latent_channels
        batch = {
            "latents": torch.randn(b, frames, channels, *m.latent_size),
            "actions": torch.randint(0, m.num_actions, (b, frames)),
        }
        counter = FlopCounterMode(display=False)
        with counter:
            loss, _ = objective(model, batch)
            loss.backward()
    return {
        "flops_per_step": float(counter.get_total_flops()),
        "params": float(sum(p.numel() for p in model.parameters())),
        "batch_size": b,
        "clip_len": cfg.data.clip_len,
    }
