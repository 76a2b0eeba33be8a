"""A trained world model: a dynamics run's checkpoint loaded with everything it needs to
generate frames (its trunk, the autoencoder it embeds, its objective, the recorded env's
metadata and its run config). Evaluation, play, benchmarks and ``farsight rollout`` load one
here; none of them imports a trainer.

    world_model = load_world_model("runs/dyn", device="cpu")      # EMA weights
    env = WorldModelEnv(world_model, store="data/arena")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from farsight.config import from_dict
from farsight.models.autoencoder import Autoencoder
from farsight.models.dynamics import DynamicsModel
from farsight.train.checkpoint import CheckpointError, load_checkpoint, model_state
from farsight.train.recipes.autoencoder import AutoencoderRunConfig
from farsight.train.recipes.dynamics import KIND, DynamicsRunConfig
from farsight.world_env import WorldModelParts


@dataclass
class WorldModel(WorldModelParts):
    """What ``load_world_model`` returns: the parts the env runs, plus the run's config and
    the training step the weights are from."""

    config: DynamicsRunConfig
    step: int


def load_world_model(
    path: str | Path, device: str | torch.device = "cpu", weights: str = "ema"
) -> WorldModel:
    """A dynamics checkpoint (file or run folder) -> a WorldModel in eval mode on ``device``
    (``weights="model"`` takes the trained weights instead of their EMA)."""
    ckpt = load_checkpoint(path, kind=KIND)
    source = f"checkpoint {ckpt['path']}"
    cfg = from_dict(DynamicsRunConfig, ckpt["config"], source=source)
    model = DynamicsModel(cfg.model)
    model.load_state_dict(model_state(ckpt, weights))
    stored_ae = ckpt["extra"].get("autoencoder")
    if stored_ae is None:
        raise CheckpointError(f"{source} holds no autoencoder")
    ae_cfg = from_dict(AutoencoderRunConfig, stored_ae["config"], source=f"{source} autoencoder")
    autoencoder = Autoencoder(ae_cfg.model)
    autoencoder.load_state_dict(stored_ae["state"])
    return WorldModel(
        dynamics=model.to(device).eval().requires_grad_(False),
        autoencoder=autoencoder.to(device).eval().requires_grad_(False),
        objective=cfg.objective,
        meta=ckpt["extra"].get("env", {}),
        context_frames=cfg.data.clip_len,
        config=cfg,
        step=int(ckpt["step"]),
    )
