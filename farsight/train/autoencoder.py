"""Training the frame autoencoder: run config, recipes, validation, final evaluation, loading.

    farsight train autoencoder [recipe] [key=value ...] --data STORE --out RUN [--resume]

The run folder holds ``checkpoint.pt`` (latest, atomic), ``config.json``, ``metrics.jsonl``
(one line per validation), ``samples/recon_step*.png`` (target row over reconstruction row),
``tb/`` (TensorBoard) and, at the end, ``eval.json`` (EMA weights on the val and test splits).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from farsight.config import RecipeBook, from_dict
from farsight.data.loader import ClipDataset
from farsight.data.store import EpisodeStore
from farsight.errors import UsageError
from farsight.io import atomic_write, atomic_write_json
from farsight.metrics import image_grid, image_metrics
from farsight.models.autoencoder import (
    Autoencoder,
    AutoencoderConfig,
    frames_to_images,
    images_to_frames,
)
from farsight.objectives.autoencoder import AutoencoderLossConfig, ReconstructionObjective
from farsight.parallel import DistInfo
from farsight.precision import autocast, resolve_device, resolve_precision
from farsight.train.checkpoint import load_checkpoint, model_state
from farsight.train.config import TrainConfig
from farsight.train.data import step_batches
from farsight.train.loop import TrainResult, ValContext, seed_everything
from farsight.train.trainer import RunParts, Trainer, run_training

KIND = "autoencoder"


@dataclass
class AutoencoderDataConfig:
    path: str = ""
    """Episode store to train on (``--data``)."""
    val_frames: int = 256
    """Validation frames, spread evenly over the val split."""
    stats_frames: int = 512
    """Training frames used to estimate the latent shift and scale."""
    grid_frames: int = 12
    """Frames shown in each reconstruction grid image."""
    eval_frames: int = 0
    """Frames of each split in the final evaluation; 0: all of them."""


@dataclass
class AutoencoderRunConfig:
    model: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    objective: AutoencoderLossConfig = field(default_factory=AutoencoderLossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: AutoencoderDataConfig = field(default_factory=AutoencoderDataConfig)


AE_RECIPES = RecipeBook(KIND)


@AE_RECIPES.register
def ae_cpu() -> AutoencoderRunConfig:
    """The 20-minute CPU recipe (2 shared cores, fp32): factor 4, 64x64 -> 16x16x8.

    Shaped by what pays on a CPU: a pixel-unshuffle stem (patch 4) runs the whole network at
    the 16x16 latent resolution (a full-resolution first stage costs several times more for
    little gain on pixel-art frames), one ResNet block per side, no bottleneck attention, and
    a linear shortcut around encoder and decoder that makes the first few hundred steps count.
    ~0.55 GFLOP per frame forward, ~1.7 forward + backward.
    """
    cfg = AutoencoderRunConfig()
    cfg.model = AutoencoderConfig(
        latent_channels=8,
        width=96,
        channel_mult=(1,),
        blocks=1,
        patch=4,
        attention=False,
        shortcut=True,
    )
    cfg.objective = AutoencoderLossConfig(l1=1.0, l2=1.0, gradient=0.5)
    # A 20-minute wall-clock budget: the cosine LR ends when the budget does, however busy
    # the shared machine is (steps is only an upper bound here: ~2-5 steps/s on 2 cores).
    cfg.train = TrainConfig(
        steps=20_000, batch_size=16, val_every=600, ckpt_every=300, workers=0, max_minutes=20.0
    )
    cfg.train.optim.lr = 1e-3
    cfg.train.optim.warmup_steps = 100
    cfg.train.ema_decay = 0.995
    return cfg


@AE_RECIPES.register
def ae_atari() -> AutoencoderRunConfig:
    """An ALE game (Breakout by default): the CPU recipe, 16x16x8 latents."""
    return ae_cpu()


@AE_RECIPES.register
def ae_arena() -> AutoencoderRunConfig:
    """The built-in arena with compact 16x16x8 latents (the dynamics default).

    The arena's floor carries a static per-pixel texture (uniform +-17 grey levels, std ~10):
    incompressible noise to an autoencoder (PCA of 4x4 patches needs ~26 components per patch
    for 33 dB). With 8 channels the texture is mostly lost: ~28 dB at full resolution, while
    the 1/4-resolution PSNR (layout and motion) stays above 37 dB. ``ae_arena_hifi`` keeps it.
    """
    return ae_cpu()


@AE_RECIPES.register
def ae_arena_hifi() -> AutoencoderRunConfig:
    """The built-in arena at >= 33 dB: 32 latent channels keep the floor texture."""
    cfg = ae_cpu()
    cfg.model.latent_channels = 32
    return cfg


@AE_RECIPES.register
def ae_fsq() -> AutoencoderRunConfig:
    """FSQ tokens for the Genie path: 16x16 grid of 1000 codes (levels 8, 5, 5, 5)."""
    cfg = ae_cpu()
    cfg.model.kind = "fsq"
    cfg.model.fsq_levels = (8, 5, 5, 5)
    return cfg


@AE_RECIPES.register
def ae_vae() -> AutoencoderRunConfig:
    """Small-KL VAE variant of the CPU recipe (smoother latents for diffusion)."""
    cfg = ae_cpu()
    cfg.model.variational = True
    cfg.objective.kl = 1e-6
    return cfg


@AE_RECIPES.register
def ae_gpu() -> AutoencoderRunConfig:
    """A bigger model for one GPU: full-resolution first stage, bottleneck attention, bf16."""
    cfg = AutoencoderRunConfig()
    cfg.model = AutoencoderConfig(
        latent_channels=8,
        width=128,
        channel_mult=(1, 2, 2),
        blocks=2,
        patch=1,
        attention=True,
        shortcut=True,
    )
    cfg.objective = AutoencoderLossConfig(l1=1.0, l2=1.0, gradient=0.5)
    cfg.train = TrainConfig(steps=50_000, batch_size=64, val_every=2000, ckpt_every=2000)
    cfg.train.optim.lr = 4e-4
    cfg.train.optim.warmup_steps = 1000
    cfg.train.workers = 4
    return cfg


@AE_RECIPES.register
def ae_tiny() -> AutoencoderRunConfig:
    """A few-second model for tests."""
    cfg = AutoencoderRunConfig()
    cfg.model = AutoencoderConfig(
        latent_channels=4, width=8, channel_mult=(1, 2), blocks=1, attention=False, norm_groups=4
    )
    cfg.train = TrainConfig(
        steps=8, batch_size=4, workers=0, log_every=2, val_every=4, ckpt_every=4, precision="fp32"
    )
    cfg.train.optim.warmup_steps = 2
    cfg.data = AutoencoderDataConfig(val_frames=8, stats_frames=16, grid_frames=4, eval_frames=16)
    return cfg


# -- data -------------------------------------------------------------------------------------
def frame_dataset(store: EpisodeStore, split: str) -> ClipDataset:
    """Every frame of a split, as single-frame clips."""
    return ClipDataset(store, clip_len=1, split=split, keys=("frames",))


def spread_frames(store: EpisodeStore, split: str, count: int) -> np.ndarray:
    """``count`` frames (all if 0 or fewer exist) evenly spread over a split: (N, H, W, 3)."""
    episodes = store.split_episodes(split)
    lengths = np.array([store.episodes[e].length for e in episodes], dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros((0, *store.arrays["frames"][0]), dtype=np.uint8)
    picks = np.arange(total) if count <= 0 or count >= total else np.linspace(0, total - 1, count)
    picks = np.unique(picks.astype(np.int64))
    ends = np.cumsum(lengths)
    which = np.searchsorted(ends, picks, side="right")
    out = []
    for ep_index in np.unique(which):
        offsets = picks[which == ep_index] - (ends[ep_index] - lengths[ep_index])
        frames = store.read(episodes[ep_index], keys=("frames",))["frames"]
        out.append(frames[offsets])
    return np.concatenate(out)


# -- evaluation -------------------------------------------------------------------------------
@torch.no_grad()
def reconstruct(
    model: Autoencoder, frames: np.ndarray, device: torch.device, precision: str, batch: int = 128
) -> np.ndarray:
    """uint8 (N, H, W, 3) -> deterministic reconstructions, uint8 (N, H, W, 3)."""
    out = []
    for i in range(0, len(frames), batch):
        images = frames_to_images(torch.from_numpy(frames[i : i + batch])).to(device)
        with autocast(device, precision):
            recon = model(images).recon
        out.append(images_to_frames(recon).cpu().numpy())
    return np.concatenate(out) if out else frames.copy()


@torch.no_grad()
def estimate_latent_stats(
    model: Autoencoder, frames: np.ndarray, device: torch.device, precision: str, batch: int = 256
) -> tuple[float, float]:
    """Shift and scale that bring the deterministic latents to zero mean, unit variance."""
    means = []
    for i in range(0, len(frames), batch):
        images = frames_to_images(torch.from_numpy(frames[i : i + batch])).to(device)
        with autocast(device, precision):
            means.append(model.encode(images)[0].float().cpu())
    z = torch.cat(means).double()
    return float(z.mean()), float(1.0 / z.std().clamp_min(1e-8))


class AutoencoderValidation:
    """The loop's validation hook: metrics of the EMA and raw weights, a grid, latent stats."""

    def __init__(self, cfg: AutoencoderRunConfig, store: EpisodeStore):
        self.cfg = cfg
        self.val = spread_frames(store, "val", cfg.data.val_frames)
        if len(self.val) == 0:
            self.val = spread_frames(store, "train", cfg.data.val_frames)
            print(f"note: store {store.path} has no val split; validating on training frames")
        self.stats = spread_frames(store, "train", cfg.data.stats_frames)

    def __call__(self, ctx: ValContext) -> dict[str, float]:
        if self.cfg.model.kind == "continuous":
            # Estimated on the weights commands use (EMA), stored in both (the EMA copies buffers).
            shift, scale = estimate_latent_stats(ctx.ema, self.stats, ctx.device, ctx.precision)
            for m in (ctx.model, ctx.ema):
                m.set_latent_stats(shift, scale)
        recon = reconstruct(ctx.ema, self.val, ctx.device, ctx.precision)
        metrics = image_metrics(self.val, recon)
        raw = reconstruct(ctx.model, self.val, ctx.device, ctx.precision)
        metrics["psnr_raw"] = image_metrics(self.val, raw, factors=(1,))["psnr"]
        if self.cfg.model.kind == "continuous":
            metrics["latent_scale"] = float(ctx.ema.latent_scale)
        n = min(self.cfg.data.grid_frames, len(self.val))
        if n:
            grid = image_grid([self.val[:n], recon[:n]])
            path = ctx.run_dir / "samples" / f"recon_step{ctx.step:07d}.png"
            atomic_write(path, lambda f: Image.fromarray(grid).save(f, format="PNG"))
            if ctx.writer is not None:
                ctx.writer.add_image("val/reconstruction", grid, ctx.step, dataformats="HWC")
        return metrics


def evaluate_splits(
    model: Autoencoder,
    store: EpisodeStore,
    frames_per_split: int,
    device,
    precision,
    splits: tuple[str, ...] = ("val", "test"),
) -> dict[str, dict[str, float]]:
    out = {}
    for split in splits:
        frames = spread_frames(store, split, frames_per_split)
        if len(frames):
            t0 = time.perf_counter()
            recon = reconstruct(model, frames, device, precision)
            out[split] = {"frames": len(frames), **image_metrics(frames, recon)}
            out[split]["seconds"] = round(time.perf_counter() - t0, 2)
    return out


# -- loading ----------------------------------------------------------------------------------
def load_autoencoder(
    path: str | Path, device: str | torch.device = "cpu", weights: str = "ema"
) -> tuple[Autoencoder, AutoencoderRunConfig, dict]:
    """An autoencoder checkpoint (file or run folder) -> (model in eval mode, config, ckpt)."""
    ckpt = load_checkpoint(path, kind=KIND)
    cfg = from_dict(AutoencoderRunConfig, ckpt["config"], source=f"checkpoint {ckpt['path']}")
    model = Autoencoder(cfg.model)
    model.load_state_dict(model_state(ckpt, weights))
    return model.to(device).eval().requires_grad_(False), cfg, ckpt


# -- the run ----------------------------------------------------------------------------------
class AutoencoderTrainer(Trainer):
    """Single frames of a store's train split, reconstructed; evaluated on the val and test
    splits at the end."""

    kind = KIND
    config_type = AutoencoderRunConfig

    def prepare(
        self, cfg: AutoencoderRunConfig, info: DistInfo, start_step: int, progress: bool
    ) -> RunParts:
        cfg.model.validate()
        cfg.train.validate()
        if not cfg.data.path:
            raise UsageError("no training data: give --data STORE")
        store = self.store = EpisodeStore(cfg.data.path)  # evaluate reads it again
        if "frames" not in store.arrays:
            raise UsageError(f"store {store.path} holds no 'frames' array (a latent cache?)")
        dataset = frame_dataset(store, "train")
        seed_everything(cfg.train.seed)
        model = Autoencoder(cfg.model)
        objective = ReconstructionObjective(cfg.objective)
        validate = AutoencoderValidation(cfg, store)

        def batches(start_step: int):
            return step_batches(
                dataset, cfg.train.batch_size, start_step, cfg.train.seed, cfg.train.workers
            )

        params = sum(p.numel() for p in model.parameters())
        h, w, _ = store.arrays["frames"][0]
        c, lh, lw = model.latent_shape(h, w)
        device = resolve_device(cfg.train.device)
        summary = (
            f"autoencoder {cfg.model.kind}: {params / 1e6:.2f}M parameters, {h}x{w}x3 -> "
            f"{lh}x{lw}x{c}; {len(dataset)} training frames; {device}, "
            f"{resolve_precision(cfg.train.precision, device)}"
        )
        return RunParts(model, objective, batches, validate, summary)

    def evaluate(
        self, cfg: AutoencoderRunConfig, out: Path, result: TrainResult, progress: bool
    ) -> None:
        """The EMA weights on ``data.eval_frames`` frames of the val and test splits."""
        device = resolve_device(cfg.train.device)
        ema, _, _ = load_autoencoder(out, device)
        precision = resolve_precision(cfg.train.precision, device)
        evaluation = evaluate_splits(ema, self.store, cfg.data.eval_frames, device, precision)
        atomic_write_json(out / "eval.json", {"step": result.step, "weights": "ema", **evaluation})
        if progress:
            for split, m in evaluation.items():
                print(
                    f"{split}: {m['frames']} frames  PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.4f}"
                    f"  (1/4 res: PSNR {m['psnr_r4']:.2f} dB  SSIM {m['ssim_r4']:.4f})"
                )


def train_autoencoder(
    cfg: AutoencoderRunConfig, out: str | Path, resume: bool = False, progress: bool = True
) -> TrainResult:
    return run_training(AutoencoderTrainer(), cfg, out, resume, progress)
