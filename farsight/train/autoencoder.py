"""Training the frame autoencoder: data, validation, final evaluation, loading, the trainer.

    farsight train autoencoder [recipe] [key=value ...] --data STORE --out RUN [--resume]

The run folder holds ``checkpoint.pt`` (latest, atomic), ``config.json``, ``metrics.jsonl``
(one line per validation), ``samples/recon_step*.png`` (target row over reconstruction row),
``tb/`` (TensorBoard) and, at the end, ``eval.json`` (EMA weights on the val and test splits).
The run config and its recipes are in ``recipes/autoencoder.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from farsight.config import from_dict
from farsight.data.loader import ClipDataset
from farsight.data.store import EpisodeStore
from farsight.io import atomic_write, atomic_write_json
from farsight.metrics import image_grid, image_metrics
from farsight.models.autoencoder import (
    Autoencoder,
    frames_to_images,
    images_to_frames,
)
from farsight.objectives.autoencoder import ReconstructionObjective
from farsight.parallel import DistInfo
from farsight.precision import autocast, resolve_device, resolve_precision
from farsight.train.checkpoint import load_checkpoint, model_state
from farsight.train.data import frame_store, step_batches
from farsight.train.loop import TrainResult, ValContext, seed_everything
from farsight.train.recipes.autoencoder import KIND, AutoencoderRunConfig
from farsight.train.trainer import RunParts, Trainer, run_training


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
        store = self.store = frame_store(cfg.data.path)  # evaluate reads it again
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
