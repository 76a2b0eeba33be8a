"""Train a tiny dynamics model a few steps, under torchrun (DDP or FSDP2) or in one process.

The objective's noise is a function of each clip's identity, not of the rank, so a run of W
ranks with batch B must reach the same parameters (and EMA) as one process with batch W * B.
With SPLIT_AT the run stops at that step and a fresh model resumes it from its checkpoint.
usage: ddp_dynamics.py STORE OUT_PT BATCH_PER_RANK [STRATEGY [SPLIT_AT]]
"""

import sys

import torch
import torch.nn.functional as F

from farsight.data.loader import ClipDataset
from farsight.data.store import EpisodeStore
from farsight.dynamics_config import dynamics_tiny
from farsight.models.dynamics import DynamicsModel
from farsight.objectives.multiframe import head_targets
from farsight.parallel import model_state, parallelize, setup, teardown
from farsight.train.checkpoint import load_checkpoint
from farsight.train.config import ParallelConfig, TrainConfig
from farsight.train.data import step_batches
from farsight.train.loop import seed_everything, train

store_path, out, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
parallel = ParallelConfig(strategy=sys.argv[4] if len(sys.argv) > 4 else "ddp")
split_at = int(sys.argv[5]) if len(sys.argv) > 5 else 0
torch.set_num_threads(1)
info = setup(parallel)
cfg = dynamics_tiny()
heads = cfg.heads
extra = heads.max_offset - 1
dataset = ClipDataset(EpisodeStore(store_path), clip_len=4, extra=extra, split="all")


def objective(model, batch):
    latents, actions = batch["latents"], batch["actions"]
    x0 = latents[:, :4]
    ident = batch["episode"] * 1000 + batch["start"]
    eps = torch.stack(
        [torch.randn(x0.shape[1:], generator=torch.Generator().manual_seed(int(i))) for i in ident]
    )
    tau = torch.linspace(0.2, 0.8, 4).expand(x0.shape[0], 4)
    x = (1 - tau)[..., None, None, None] * x0 + tau[..., None, None, None] * eps
    out = model(x, tau, actions)
    loss = F.mse_loss(out.main, x0)
    for target in head_targets(latents, heads.far_offsets, heads.head_resolutions[1:], 4, None):
        err = (out.far[target.offset] - target.target).pow(2).mean(dim=(2, 3, 4))
        loss = loss + (err * target.mask).sum() / target.mask.sum().clamp_min(1)
    return loss, {}


def run(steps: int, resume: dict | None):
    train_cfg = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        workers=0,
        log_every=0,
        val_every=0,
        ckpt_every=0,
        precision="fp32",
        seed=3,
    )
    train_cfg.optim.warmup_steps = 1
    seed_everything(0)
    model = DynamicsModel(cfg)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    train(
        model,
        objective,
        lambda s: step_batches(dataset, batch_size, s, seed=3, rank=info.rank, world=info.world),
        train_cfg,
        run_dir=out + ".run",
        kind="probe",
        config=train_cfg,
        resume=resume,
        wrap=lambda m: parallelize(m, parallel, info),
        progress=False,
    )
    return initial, model_state(model)  # every rank: gathering shards is a collective


initial, state = run(split_at or 4, None)
if split_at:
    _, state = run(4, load_checkpoint(out + ".run"))
if info.is_main:
    ema = load_checkpoint(out + ".run")["ema"]["model"]
    torch.save({"initial": initial, "final": state, "ema": ema}, out)
teardown()
