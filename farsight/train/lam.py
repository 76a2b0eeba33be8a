"""Training the latent action model (LAM): data, validation, evaluation, loading, the trainer.

    farsight train lam [recipe] [key=value ...] --data STORE --out RUN [--resume]

Trains on frame pairs (x_t, x_{t+1}) of the store's train split; true actions are never read
for training (a store recorded without actions works), only to report agreement.

The run folder holds ``checkpoint.pt``, ``config.json``, ``metrics.jsonl`` (per validation:
EMA prediction error, gain over copying x_t, code usage of the val split (entropy, perplexity,
share of codes used, a ``collapsed`` flag, also printed as a line of its own so a collapse
shows while it happens) and NMI with the true actions on it),
``samples/actions_step*.png`` (rows: x_t, x_{t+1}, the prediction, then x_t decoded under each
latent action 0..K-1) and, at the end, ``eval.json``: agreement of the latent actions with the
true ones on the test split (NMI, MI, purity, contingency table), and ``latent_actions.png``:
what each latent action does to a few val frames, the decoded frame and its change from x_t
(``code_picture``). The run config and its recipes are in ``recipes/lam.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from farsight.config import from_dict
from farsight.data.loader import ClipDataset
from farsight.data.store import EpisodeStore
from farsight.errors import UsageError
from farsight.io import atomic_write, atomic_write_json
from farsight.latent_actions import latent_action_agreement, latent_usage, usage_line
from farsight.metrics import image_grid
from farsight.models.autoencoder import images_to_frames
from farsight.models.lam import LatentActionModel
from farsight.objectives.lam import LAMObjective, pair_images
from farsight.parallel import DistInfo
from farsight.train.checkpoint import load_checkpoint, model_state
from farsight.train.data import frame_store, step_batches
from farsight.train.loop import TrainResult, ValContext, seed_everything
from farsight.train.precision import resolve_device
from farsight.train.recipes.lam import KIND, LAMRunConfig
from farsight.train.trainer import RunParts, Trainer, run_training

PICTURE = "latent_actions.png"
"""The per-code picture of a finished run (``code_picture``), in its run folder."""
USAGE_KEYS = ("usage_entropy", "perplexity", "codes_used", "top_share", "collapsed")


# -- data -------------------------------------------------------------------------------------
def pair_dataset(store: EpisodeStore, split: str, context: int = 0) -> ClipDataset:
    """Every (x_t, x_{t+1}) of a split with the decoder's ``context`` frames before it, as clips
    of context + 2 frames (never across an episode end)."""
    return ClipDataset(store, clip_len=2 + context, split=split, keys=("frames",))


def fixed_pairs(store: EpisodeStore, count: int, context: int = 0) -> np.ndarray:
    """uint8 (N, c + 2, H, W, 3): ``count`` clips spread over the val split (train if empty)."""
    for split in ("val", "train"):
        try:
            pairs = pair_dataset(store, split, context)
        except ValueError:
            continue
        picks = np.unique(np.linspace(0, len(pairs) - 1, min(count, len(pairs))).astype(int))
        return np.stack([pairs[int(i)]["frames"].numpy() for i in picks])
    raise UsageError(f"store {store.path} has no episode of 2 frames")


class LAMValidation:
    def __init__(self, cfg: LAMRunConfig, store: EpisodeStore, progress: bool = True):
        self.cfg, self.store, self.progress = cfg, store, progress
        self.pairs = fixed_pairs(store, cfg.data.val_pairs, cfg.model.context)
        self.objective = LAMObjective(cfg.objective)
        self.split = "val" if store.split_episodes("val") else "train"

    def __call__(self, ctx: ValContext) -> dict[str, float]:
        batch = {"frames": torch.from_numpy(self.pairs).to(ctx.device)}
        _, logs = self.objective(ctx.ema, batch)
        metrics = {k: float(v) for k, v in logs.items()}
        # Usage over the agreement pairs (thousands, not one batch) replaces the batch's.
        args = (ctx.ema, self.store, self.split, ctx.device, self.cfg.data.agreement_pairs)
        if "actions" in self.store.arrays:
            usage = latent_action_agreement(*args)
            metrics.update({k: usage[k] for k in ("nmi", "nmi_chance", "accuracy")})
        else:
            usage = latent_usage(*args)
        metrics.update({k: usage[k] for k in USAGE_KEYS})
        if self.progress:
            tqdm.write(f"step {ctx.step} {self.split}: {usage_line(usage)}")
        self.write_grid(ctx)
        return metrics

    @torch.no_grad()
    def write_grid(self, ctx: ValContext) -> None:
        n = min(self.cfg.data.grid_pairs, len(self.pairs))
        if not n:
            return
        lam = ctx.ema
        x, x_next, past = pair_images(torch.from_numpy(self.pairs[:n]).to(ctx.device), lam.context)
        rows = [self.pairs[:n, -2], self.pairs[:n, -1], images_to_frames(lam(x, x_next, past).pred)]
        for k in range(lam.num_codes):
            code = lam.code_of(torch.full((n,), k, device=ctx.device))
            rows.append(images_to_frames(lam.decode(x, code, past)))
        grid = image_grid([np.asarray(r.cpu() if torch.is_tensor(r) else r) for r in rows])
        path = ctx.run_dir / "samples" / f"actions_step{ctx.step:07d}.png"
        atomic_write(path, lambda f: Image.fromarray(grid).save(f, format="PNG"))


CHANGE_GAIN = 4.0
"""How much ``code_picture`` amplifies a change: one of 0.25 ([-1, 1] units) is full colour."""


@torch.no_grad()
def code_picture(lam: LatentActionModel, pairs: np.ndarray, device) -> np.ndarray:
    """What each latent action does to a few frames, as one uint8 image (``image_grid``).

    ``pairs`` uint8 (N, c + 2, H, W, 3) clips (``fixed_pairs``). Row 0: the N frames x_t, then
    the true change x_{t+1} - x_t of each; row 1 + k: x_t decoded under latent action k, then
    its change from x_t. Changes are amplified ``CHANGE_GAIN`` times around grey (grey: nothing
    changes), so a code that moves the view shows as edges across the frame, one that moves a
    sprite as a pair of edges around it."""
    x, x_next, past = pair_images(torch.from_numpy(pairs).to(device), lam.context)

    def change(a: Tensor) -> np.ndarray:
        return images_to_frames((CHANGE_GAIN * (a - x)).clamp(-1, 1)).cpu().numpy()

    rows = [np.concatenate([pairs[:, -2], change(x_next)])]
    for k in range(lam.num_codes):
        pred = lam.decode(x, lam.code_of(torch.full((len(x),), k, device=device)), past)
        rows.append(np.concatenate([images_to_frames(pred).cpu().numpy(), change(pred)]))
    return image_grid(rows)


# -- loading ----------------------------------------------------------------------------------
def load_lam(
    path: str | Path, device: str | torch.device = "cpu", weights: str = "ema"
) -> tuple[LatentActionModel, LAMRunConfig, dict]:
    """A LAM checkpoint (file or run folder) -> (model in eval mode, config, checkpoint)."""
    ckpt = load_checkpoint(path, kind=KIND)
    cfg = from_dict(LAMRunConfig, ckpt["config"], source=f"checkpoint {ckpt['path']}")
    model = LatentActionModel(cfg.model)
    model.load_state_dict(model_state(ckpt, weights))
    return model.to(device).eval().requires_grad_(False), cfg, ckpt


# -- the run ----------------------------------------------------------------------------------
def evaluate_lam(lam: LatentActionModel, store: EpisodeStore, device) -> dict:
    """Agreement with the true actions (code usage alone in a store without them) on the test
    and val splits."""
    measure = latent_action_agreement if "actions" in store.arrays else latent_usage
    return {
        split: measure(lam, store, split, device)
        for split in ("test", "val")
        if store.split_episodes(split)
    }


class LAMTrainer(Trainer):
    """Frame pairs of a store's train split (its actions unread); evaluated against the true
    actions at the end."""

    kind = KIND
    config_type = LAMRunConfig

    def prepare(
        self, cfg: LAMRunConfig, info: DistInfo, start_step: int, progress: bool
    ) -> RunParts:
        cfg.model.validate()
        cfg.train.validate()
        store = self.store = frame_store(cfg.data.path)  # evaluate reads it again
        dataset = pair_dataset(store, "train", cfg.model.context)
        seed_everything(cfg.train.seed)
        model = LatentActionModel(cfg.model)

        def batches(start_step: int):
            return step_batches(
                dataset, cfg.train.batch_size, start_step, cfg.train.seed, cfg.train.workers
            )

        params = sum(p.numel() for p in model.parameters())
        summary = (
            f"lam: {params / 1e6:.2f}M parameters, {cfg.model.num_codes} latent actions "
            f"({cfg.model.quantizer}); {len(dataset)} training pairs"
        )
        return RunParts(
            model,
            LAMObjective(cfg.objective),
            batches,
            LAMValidation(cfg, store, progress),
            summary,
            extra={"env": store.meta.get("env", {})},
        )

    def evaluate(self, cfg: LAMRunConfig, out: Path, result: TrainResult, progress: bool) -> None:
        """The EMA weights' agreement with the true actions on the test and val splits."""
        device = resolve_device(cfg.train.device)
        lam, _, _ = load_lam(out, device)
        evaluation = evaluate_lam(lam, self.store, device)
        atomic_write_json(out / "eval.json", {"step": result.step, "weights": "ema", **evaluation})
        if cfg.data.grid_pairs:
            pairs = fixed_pairs(self.store, cfg.data.grid_pairs, cfg.model.context)
            picture = code_picture(lam, pairs, device)
            atomic_write(out / PICTURE, lambda f: Image.fromarray(picture).save(f, format="PNG"))
        if progress:
            for split, m in evaluation.items():
                agree = (
                    f"NMI {m['nmi']:.3f} (chance {m['nmi_chance']:.3f})  MI {m['mi_bits']:.3f} "
                    f"bits  purity {m['accuracy']:.3f}  "
                    if "nmi" in m
                    else ""
                )
                print(f"{split}: {m['pairs']} pairs  {agree}{usage_line(m)}")


def train_lam(
    cfg: LAMRunConfig, out: str | Path, resume: bool = False, progress: bool = True
) -> TrainResult:
    return run_training(LAMTrainer(), cfg, out, resume, progress)
