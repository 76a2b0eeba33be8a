"""Training the dynamics model on latent clips (``farsight.world_model`` loads the result).

    farsight train dynamics [recipe] [key=value ...] --data STORE --autoencoder AE --out RUN
    torchrun --nproc_per_node=N -m farsight.cli train dynamics ...      (DDP)

The trainer puts the run together from its rooms: the config and recipes
(``recipes/dynamics.py``), the latent cache it reads (``dynamics_data.py``), the objective it
trains (``dynamics_objective.py``) and the validation (``dynamics_validation.py``). Each clip
carries ``heads.max_offset - 1`` extra frames that only serve as far-head targets.

The run folder holds ``checkpoint.pt`` (config, step, model, EMA, optimizer, RNG, and the
autoencoder that made the latents, so the checkpoint alone is a playable world model),
``config.json``, ``metrics.jsonl`` (validation losses per head), ``samples/`` (decoded
rollouts) and ``tb/``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from farsight.config import to_dict
from farsight.errors import UsageError
from farsight.models.dynamics import DynamicsModel
from farsight.parallel import DistInfo, parallelize, setup, teardown
from farsight.train.autoencoder import load_autoencoder
from farsight.train.data import step_batches
from farsight.train.dynamics_data import (
    fit_object_head,
    fit_to_cache,
    label_run_store,
    open_latents,
    run_actions,
    val_batch,
)
from farsight.train.dynamics_objective import TrainObjective
from farsight.train.dynamics_validation import DynamicsValidation
from farsight.train.loop import TrainResult, seed_everything
from farsight.train.recipes.dynamics import KIND, DynamicsRunConfig
from farsight.train.trainer import RunParts, Trainer, run_training


class DynamicsTrainer(Trainer):
    """Clips of a store's latent cache (its actions: true, latent or none), on one process or
    under torchrun; the checkpoint carries the autoencoder, so it alone is a world model."""

    kind = KIND
    config_type = DynamicsRunConfig
    repointable = ("path", "autoencoder", "cache")

    @contextlib.contextmanager
    def session(self, cfg: DynamicsRunConfig) -> Iterator[DistInfo]:
        info = setup(cfg.parallel, cfg.train.device)
        try:
            yield info
        finally:
            teardown()

    def prepare(
        self, cfg: DynamicsRunConfig, info: DistInfo, start_step: int, progress: bool
    ) -> RunParts:
        if not cfg.data.path or not cfg.data.autoencoder:
            raise UsageError("dynamics training needs --data STORE and --autoencoder AE_RUN")
        if (
            cfg.grad_cosine_every
            and cfg.train.log_every
            and cfg.grad_cosine_every % cfg.train.log_every
        ):
            raise UsageError(
                f"grad_cosine_every={cfg.grad_cosine_every} must be a multiple of "
                f"train.log_every={cfg.train.log_every} (only logged steps are recorded)"
            )
        if info.is_main:
            open_latents(cfg, build=True)  # the cache and the latent action labels: made
            label_run_store(cfg, progress)  # once, by rank 0
        if info.distributed:
            torch.distributed.barrier()  # the other ranks wait for rank 0's cache and labels
        cache = open_latents(cfg, build=False)
        cache.store = run_actions(cfg, cache.store)
        fit_to_cache(cfg, cache.info)
        cfg.model.latent_size = tuple(cache.info.grid)
        cfg.model.num_actions = len(cache.store.meta["env"]["action_meanings"])
        object_cell = fit_object_head(cfg, cache)
        cfg.validate()
        extra = cfg.model.heads.max_offset - 1
        dataset = cache.clips(
            cfg.data.clip_len, extra, cfg.data.stride, cfg.data.start_every, split="train"
        )
        autoencoder, ae_cfg, _ = load_autoencoder(cfg.data.autoencoder)
        seed_everything(cfg.train.seed)
        model = DynamicsModel(cfg.model)
        objective = TrainObjective(cfg, start_step, info.is_main, object_cell)
        validate = DynamicsValidation(
            cfg, val_batch(cache, cfg, extra), autoencoder, cache.store.meta["env"], object_cell
        )

        def batches(start_step: int):
            objective.step = start_step
            return step_batches(
                dataset,
                cfg.train.batch_size,
                start_step,
                cfg.train.seed,
                cfg.train.workers,
                info.rank,
                info.world,
            )

        params = sum(p.numel() for p in model.parameters())
        summary = (
            f"dynamics: {params / 1e6:.2f}M parameters, heads {cfg.model.heads.offsets} at "
            f"1/{cfg.model.heads.resolutions}, {cfg.objective.kind}; {len(dataset)} training "
            f"clips of {cfg.data.clip_len}+{extra} frames; {info.world} process(es) on "
            f"{info.device}"
        )
        return RunParts(
            model,
            objective,
            batches,
            validate,
            summary,
            extra={
                "autoencoder": {"config": to_dict(ae_cfg), "state": autoencoder.state_dict()},
                "env": cache.store.meta["env"],
            },
            wrap=lambda m: parallelize(m, cfg.parallel, info),
        )


def train_dynamics(
    cfg: DynamicsRunConfig, out: str | Path, resume: bool = False, progress: bool = True
) -> TrainResult:
    return run_training(DynamicsTrainer(), cfg, out, resume, progress)
