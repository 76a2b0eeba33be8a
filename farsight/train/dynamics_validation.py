"""The dynamics run's validation: losses per head and the action probe on fixed clips, and a
decoded rollout video of a held-out episode."""

from __future__ import annotations

import dataclasses

import torch

from farsight.data.store import EpisodeStore
from farsight.models.autoencoder import Autoencoder
from farsight.objectives import make_objective
from farsight.objectives.action_probe import action_probe
from farsight.objectives.multiframe import DenoisingObjective
from farsight.rollout_video import write_rollout_video
from farsight.train.dynamics_data import run_actions
from farsight.train.dynamics_objective import with_object_maps
from farsight.train.loop import ValContext
from farsight.train.recipes.dynamics import DynamicsRunConfig
from farsight.world_env import WorldModelParts


class DynamicsValidation:
    """Validation losses per head on fixed clips and noise (EMA weights), plus a rollout video."""

    def __init__(
        self,
        cfg: DynamicsRunConfig,
        batch: dict,
        autoencoder: Autoencoder,
        meta: dict,
        object_cell: float = 0.0,
    ):
        """``object_cell``: frame pixels per latent cell, for ``objective.object_maps``."""
        if cfg.objective.object_maps:
            batch = with_object_maps(batch, object_cell, cfg.objective.object_sigma)
        batch = {k: v for k, v in batch.items() if k != "state"}
        self.cfg, self.batch, self.autoencoder, self.meta = cfg, batch, autoencoder, meta
        self.objective = make_objective(cfg.objective)

    def __call__(self, ctx: ValContext) -> dict[str, float]:
        batch = {k: v.to(ctx.device) for k, v in self.batch.items()}
        generator = torch.Generator(ctx.device).manual_seed(1234)
        terms = self.objective.terms(ctx.ema, batch, generator)
        metrics = {f"loss_{k}": float(v) for k, v in terms.values.items()}
        metrics["loss_total"] = float(terms.total())
        if isinstance(self.objective, DenoisingObjective):  # the probe scores a denoiser
            probe = action_probe(ctx.ema, batch, self.cfg.objective, generator)
            metrics.update({k.replace("/", "_"): v for k, v in probe.items()})
        if self.cfg.data.sample_frames > 0:
            self.write_sample(ctx)
        return metrics

    def write_sample(self, ctx: ValContext) -> None:
        """An open-loop rollout of a held-out episode with its true actions, decoded."""
        world_model = WorldModelParts(
            dynamics=ctx.ema,
            autoencoder=self.autoencoder.to(ctx.device),
            objective=self.cfg.objective,
            meta=self.meta,
            context_frames=self.cfg.data.clip_len,
        )
        store = run_actions(self.cfg, EpisodeStore(self.cfg.data.path, verify="size"))
        split = "val" if store.split_episodes("val") else "train"
        path = ctx.run_dir / "samples" / f"rollout_step{ctx.step:07d}.mp4"
        write_rollout_video(
            world_model,
            store,
            path,
            frames=self.cfg.data.sample_frames,
            split=split,
            sampling=dataclasses.replace(self.cfg.sampling),  # the run's own sampling
            progress=False,
        )
