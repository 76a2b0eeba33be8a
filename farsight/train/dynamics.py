"""Training the dynamics model on latent clips (``farsight.world_model`` loads the result).

    farsight train dynamics [recipe] [key=value ...] --data STORE --autoencoder AE --out RUN
    torchrun --nproc_per_node=N -m farsight.cli train dynamics ...      (DDP)

The store is encoded once into a latent cache (``RUN_OF_AE/latents/<store>-<path hash>`` unless
``data.cache`` names one; built here if missing), so training never runs the encoder. Each
clip carries ``heads.max_offset - 1`` extra frames that only serve as far-head targets.

The run folder holds ``checkpoint.pt`` (config, step, model, EMA, optimizer, RNG, and the
autoencoder that made the latents, so the checkpoint alone is a playable world model),
``config.json``, ``metrics.jsonl`` (validation losses per head), ``samples/`` (decoded
rollouts) and ``tb/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from farsight.action_source import relabel
from farsight.config import RecipeBook, to_dict
from farsight.data.store import EpisodeStore
from farsight.dynamics_config import (
    DynamicsConfig,
    ObjectiveConfig,
    dynamics_quickstart,
    dynamics_S,
    dynamics_tiny,
)
from farsight.errors import UsageError
from farsight.latents import LatentCache, build_cache, default_cache_path, open_cache
from farsight.models.autoencoder import Autoencoder
from farsight.models.dynamics import DynamicsModel
from farsight.models.tokens import input_channels, output_channels
from farsight.objectives import make_objective
from farsight.objectives.action_probe import action_probe
from farsight.objectives.multiframe import head_gradient_cosines
from farsight.parallel import (
    DistInfo,
    ParallelConfig,
    is_sharded,
    parallelize,
    setup,
    teardown,
    unwrap,
)
from farsight.rollout_video import write_rollout_video
from farsight.sampling.config import SamplingConfig
from farsight.train.autoencoder import load_autoencoder
from farsight.train.config import TrainConfig
from farsight.train.data import step_batches
from farsight.train.loop import TrainResult, ValContext, seed_everything
from farsight.train.rollout_context import RolloutContextConfig, with_generated_context
from farsight.train.trainer import RunParts, Trainer, run_training
from farsight.world_env import WorldModelParts

KIND = "dynamics"


@dataclass
class DynamicsDataConfig:
    path: str = ""
    """Episode store (``--data``)."""
    autoencoder: str = ""
    """Autoencoder checkpoint or run folder (``--autoencoder``)."""
    cache: str = ""
    """Latent cache folder; empty: the autoencoder run's ``latents/<store name>-<path hash>``."""
    clip_len: int = 16
    """Frames the model sees per clip (the far-head target frames come on top)."""
    stride: int = 1
    start_every: int = 1
    val_clips: int = 64
    """Validation clips (fixed, spread over the val split)."""
    sample_frames: int = 48
    """Frames of the decoded rollout written at each validation (0: none)."""
    actions: str = "true"
    """true (the store's), latent (a latent action model's, ``data.lam``) or none (one action
    for all frames: a store without actions, or actions ignored); see action_source.py."""
    lam: str = ""
    """Latent action model checkpoint or run folder, for ``data.actions=latent``."""


@dataclass
class DynamicsRunConfig:
    model: DynamicsConfig = field(default_factory=dynamics_quickstart)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DynamicsDataConfig = field(default_factory=DynamicsDataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """How this model's rollouts sample unless told otherwise (rollout, play, eval, the
    validation videos); ``--sampling.<field>`` flags override it."""
    rollout_context: RolloutContextConfig = field(default_factory=RolloutContextConfig)
    """Train on contexts the model generated itself (``train/rollout_context.py``)."""
    grad_cosine_every: int = 0
    """Log the cosine between per-head gradients on the shared trunk every N steps (0: off;
    costs one extra forward and one backward per head; a multiple of train.log_every)."""


DYNAMICS_RECIPES = RecipeBook(KIND)


def follows_actions(model: DynamicsConfig) -> DynamicsConfig:
    """The input options that let a small trunk learn its actions within CPU minutes
    (``docs/results/follow_actions/``): the previous frame's 3 x 3-token neighbourhood on
    every token's input, through a matrix per action; the action also as a per-token input;
    action embeddings at unit scale (at DiT's 0.02 the noise-level embedding drowns them);
    2D RoPE in the spatial attention."""
    model.prev_frame_input = True
    model.prev_frame_kernel = 3
    model.prev_frame_per_action = True
    model.action_input = True
    model.action_embed_std = 1.0
    model.spatial_rope = True
    return model


@DYNAMICS_RECIPES.register
def dyn_quickstart() -> DynamicsRunConfig:
    """CPU recipe: learns to follow the built-in arena's actions in 15 minutes on 2 cores.

    Shaped by what a CPU minute buys (``docs/results/follow_actions/``): a small trunk
    (``dynamics_quickstart``) with the ``follows_actions`` inputs, next-frame diffusion
    (every clip's last frame denoised given its clean-ish past: the pairs a rollout meets, at
    one stream's cost), clips of 8 frames (the window), and context noise augmentation up to
    0.5 with the level embedded (at 0.1, the earlier setting, rollouts blew up into noise
    within 8 frames), and half of each batch's clips with a context the model generated
    itself (``rollout_context``): without it rollouts drifted off the latent distribution and
    broke into coloured noise after about 30 frames, below copy-last-frame from h=16 on. The LR
    follows the wall-clock budget (``train.max_minutes``); ``steps`` is only an upper bound.

    Its rollouts sample with 2 DDIM steps and the context noised to 0.1 (0.3 measured worse:
    Delta-PSNR at h=4 0.64 against 0.90 dB)."""
    cfg = DynamicsRunConfig(model=follows_actions(dynamics_quickstart()))
    cfg.model.ctx_noise_embed = True
    cfg.data.clip_len = 8
    cfg.objective.kind = "next_frame"
    cfg.objective.ctx_noise_max = 0.5
    cfg.rollout_context.fraction = 0.5
    cfg.sampling = SamplingConfig(steps=2, context_level=0.1)
    cfg.train = TrainConfig(
        steps=5000,
        batch_size=8,
        workers=1,
        log_every=20,
        val_every=300,
        ckpt_every=300,
        max_minutes=18.0,
        precision="auto",
    )
    cfg.train.optim.lr = 1e-3
    cfg.train.optim.warmup_steps = 100
    cfg.train.optim.weight_decay = 0.01
    cfg.train.ema_decay = 0.995
    cfg.grad_cosine_every = 100
    return cfg


@DYNAMICS_RECIPES.register
def abl_cpu() -> DynamicsRunConfig:
    """The CPU ablation grid's runs (``farsight ablate``): small enough that 8 variants x 3
    seeds train and evaluate in about 35 minutes on one core (fp32, one thread, one process).
    Its own size, so retuning the quickstart never changes a committed ablation."""
    cfg = DynamicsRunConfig(
        model=DynamicsConfig(depth=3, width=128, num_heads=4, patch=4, window=8)
    )
    cfg.data = DynamicsDataConfig(clip_len=8, val_clips=16, sample_frames=0)
    cfg.train = TrainConfig(
        steps=200,
        batch_size=8,
        workers=0,
        log_every=10,
        val_every=200,
        ckpt_every=50,
        precision="fp32",
        threads=1,
    )
    cfg.train.optim.lr = 2e-3
    cfg.train.optim.warmup_steps = 20
    cfg.train.optim.weight_decay = 0.01
    cfg.train.ema_decay = 0.98
    cfg.grad_cosine_every = 50
    return cfg


@DYNAMICS_RECIPES.register
def dyn_tiny() -> DynamicsRunConfig:
    """For tests: seconds on a CPU."""
    cfg = DynamicsRunConfig(model=dynamics_tiny())
    cfg.model.heads.depths = (0, 0, 0)
    cfg.data = DynamicsDataConfig(clip_len=4, val_clips=4, sample_frames=6)
    cfg.train = TrainConfig(
        steps=6,
        batch_size=2,
        workers=0,
        log_every=2,
        val_every=3,
        ckpt_every=3,
        precision="fp32",
    )
    cfg.train.optim.warmup_steps = 2
    return cfg


@DYNAMICS_RECIPES.register
def dyn_maskgit() -> DynamicsRunConfig:
    """The Genie path on CPU: MaskGIT over an FSQ autoencoder's tokens (``ae_fsq``), the
    quickstart's backbone and heads; add ``data.actions=latent data.lam=LAM_RUN`` for latent
    actions. Rollouts use 8 MaskGIT steps per frame and the most likely token (temperature 0):
    on the arena's val split (8 clips x 32 frames, a 12-minute run) temperature 0 had the
    best PSNR at horizons 1 and 4 (21.1 / 19.9 dB against 21.0 / 19.7 at 0.5 and 20.8 / 19.6
    at 1.0) and the best SSIM at every horizon; ``--sampling.temperature 1`` samples."""
    cfg = dyn_quickstart()
    # The trunk its committed results were measured with (the quickstart's inputs are not
    # yet measured on tokens).
    cfg.model = dynamics_quickstart()
    cfg.objective = ObjectiveConfig(kind="maskgit")
    cfg.sampling = SamplingConfig(steps=8, temperature=0.0)
    cfg.train.max_minutes = 12.0
    return cfg


@DYNAMICS_RECIPES.register
def dyn_maskgit_tiny() -> DynamicsRunConfig:
    """For tests: the tiny recipe with the MaskGIT objective (needs an fsq autoencoder)."""
    cfg = dyn_tiny()
    cfg.objective = ObjectiveConfig(kind="maskgit")
    return cfg


@DYNAMICS_RECIPES.register
def dyn_gpu_S() -> DynamicsRunConfig:  # noqa: N802 (DiT's size names)
    """A GPU preset: DiT-S-sized trunk, bf16, bigger batches and longer windows."""
    cfg = DynamicsRunConfig(model=dynamics_S())
    cfg.data.clip_len = 32
    cfg.train = TrainConfig(
        steps=100_000,
        batch_size=32,
        workers=6,
        log_every=50,
        val_every=2000,
        ckpt_every=2000,
        precision="auto",
    )
    cfg.train.optim.lr = 3e-4
    cfg.train.optim.warmup_steps = 2000
    cfg.train.optim.weight_decay = 0.01
    cfg.grad_cosine_every = 1000
    return cfg


# -- data -------------------------------------------------------------------------------------
def open_latents(cfg: DynamicsRunConfig, build: bool):
    """The run's latent cache, checked against its store and autoencoder (built if asked)."""
    data, ae = cfg.data.path, cfg.data.autoencoder
    path = Path(cfg.data.cache) if cfg.data.cache else default_cache_path(ae, data)
    if build and not (path / "manifest.json").exists():
        print(f"no latent cache at {path} yet: encoding {data} once")
        build_cache(ae, data, path)
    if not (path / "manifest.json").exists():
        return LatentCache(path)  # raises: not found
    return open_cache(path, store=data, autoencoder=ae)


def val_batch(cache, cfg: DynamicsRunConfig, extra: int) -> dict:
    """A fixed batch of validation clips (training clips if the store has no val split)."""
    for split in ("val", "train"):
        try:
            clips = cache.clips(cfg.data.clip_len, extra, cfg.data.stride, split=split)
        except ValueError:
            continue
        picks = np.linspace(0, len(clips) - 1, min(cfg.data.val_clips, len(clips))).astype(int)
        items = [clips[int(i)] for i in np.unique(picks)]
        return {k: torch.stack([it[k] for it in items]) for k in ("latents", "actions")}
    raise UsageError(f"latent cache {cache.path} has no clip of {cfg.data.clip_len + extra} frames")


class DynamicsValidation:
    """Validation losses per head on fixed clips and noise (EMA weights), plus a rollout video."""

    def __init__(self, cfg: DynamicsRunConfig, batch: dict, autoencoder: Autoencoder, meta: dict):
        self.cfg, self.batch, self.autoencoder, self.meta = cfg, batch, autoencoder, meta
        self.objective = make_objective(cfg.objective)

    def __call__(self, ctx: ValContext) -> dict[str, float]:
        batch = {k: v.to(ctx.device) for k, v in self.batch.items()}
        generator = torch.Generator(ctx.device).manual_seed(1234)
        terms = self.objective.terms(ctx.ema, batch, generator)
        metrics = {f"loss_{k}": float(v) for k, v in terms.values.items()}
        metrics["loss_total"] = float(terms.total())
        if self.cfg.objective.kind != "maskgit":
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
        store = run_actions(self.cfg, EpisodeStore(self.cfg.data.path, verify="size"), False)
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


def own_context(model: nn.Module, batch: dict, cfg: DynamicsRunConfig) -> dict:
    """``batch`` with the run's share of contexts generated by ``model`` itself, sampled as the
    run's rollouts are (``rollout_context``)."""
    return with_generated_context(
        model,
        batch,
        cfg.rollout_context,
        cfg.sampling,
        cfg.data.clip_len,
        prediction=cfg.objective.prediction,
        schedule=cfg.objective.schedule,
        context_tau=cfg.objective.context_tau,
    )


class TrainObjective:
    """The run's objective, plus the per-head gradient-cosine diagnostic every N steps.

    The diagnostic runs its own forward on the unwrapped model (DDP must not see it) inside
    a forked RNG, so it never changes what training draws.
    """

    def __init__(self, cfg: DynamicsRunConfig, start_step: int, is_main: bool):
        self.cfg = cfg
        self.objective = make_objective(cfg.objective)
        self.every = cfg.grad_cosine_every
        self.is_main = is_main
        self.step = start_step

    def __call__(self, model: nn.Module, batch: dict):
        self.step += 1
        rollout_context = self.cfg.rollout_context
        if rollout_context.fraction and self.step > rollout_context.start_step:
            batch = own_context(model, batch, self.cfg)
        loss, logs = self.objective(model, batch)
        # Rank 0 alone measures, except on a sharded model: there every rank holds a part.
        if (
            self.every
            and self.step % self.every == 0
            and (self.is_main or is_sharded(unwrap(model)))
        ):
            with torch.random.fork_rng(devices=[]):
                plain = unwrap(model)
                terms = self.objective.terms(plain, batch)
                logs = {**logs, **head_gradient_cosines(plain, terms)}
                plain.zero_grad(set_to_none=True)
        return loss, logs


def run_actions(cfg: DynamicsRunConfig, store, progress: bool = True):
    """``store`` (frames or latent cache) with the run's actions (``data.actions``)."""
    frames = None
    if cfg.data.actions == "latent":
        frames = EpisodeStore(cfg.data.path, verify="size")
    return relabel(
        store, cfg.data.actions, lam=cfg.data.lam, frames_store=frames, progress=progress
    )


def fit_to_cache(cfg: DynamicsRunConfig, info) -> None:
    """Latent geometry from the cache: continuous latents for diffusion, FSQ tokens (code
    values + a mask flag in, per-channel level logits out) for MaskGIT."""
    token_path = cfg.objective.kind == "maskgit"
    wanted = "fsq" if token_path else "continuous"
    if info.kind != wanted:
        raise UsageError(
            f"objective.kind={cfg.objective.kind} needs a {wanted} autoencoder's latents; "
            f"the latent cache holds {info.kind} latents"
        )
    cfg.model.latent_size = tuple(info.grid)
    if token_path:
        levels = tuple(info.fsq_levels)
        cfg.objective.fsq_levels = levels
        cfg.model.latent_channels = input_channels(levels)
        cfg.model.out_channels = output_channels(levels)
    else:
        cfg.model.latent_channels = info.channels


# -- the run ----------------------------------------------------------------------------------
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
            cache = open_latents(cfg, build=True)
            run_actions(cfg, cache.store, progress)  # latent labels: made once, by rank 0
        if info.distributed:
            torch.distributed.barrier()  # the other ranks wait for rank 0's cache
        cache = open_latents(cfg, build=False)
        cache.store = run_actions(cfg, cache.store, progress=False)
        fit_to_cache(cfg, cache.info)
        cfg.model.latent_size = tuple(cache.info.grid)
        cfg.model.num_actions = len(cache.store.meta["env"]["action_meanings"])
        cfg.model.validate()
        cfg.objective.validate()
        cfg.train.validate()
        cfg.rollout_context.validate(cfg.objective.kind, cfg.data.clip_len)
        extra = cfg.model.heads.max_offset - 1
        dataset = cache.clips(
            cfg.data.clip_len, extra, cfg.data.stride, cfg.data.start_every, split="train"
        )
        autoencoder, ae_cfg, _ = load_autoencoder(cfg.data.autoencoder)
        seed_everything(cfg.train.seed)
        model = DynamicsModel(cfg.model)
        objective = TrainObjective(cfg, start_step, info.is_main)
        validate = DynamicsValidation(
            cfg, val_batch(cache, cfg, extra), autoencoder, cache.store.meta["env"]
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
