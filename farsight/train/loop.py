"""The generic training loop: any model, any objective, any batch stream.

    loss, logs = objective(model, batch)        # one small file per objective

Every step: forward under autocast (bf16 or fp32), backward, gradient clipping, AdamW step,
warmup + cosine LR, EMA update. Every ``log_every`` steps: TensorBoard scalars and the progress
bar. Every ``val_every``: the run's validation hook on the EMA (and raw) model. Every
``ckpt_every`` and at the end: an atomic checkpoint. Only rank 0 logs, validates and saves.

Exact resume: the batches are a pure function of the step (``farsight.train.data``), and each
step's torch RNG is seeded from (seed, rank, step), so randomness drawn by an objective (noise,
masks, VAE samples) does not depend on where a run was interrupted. A resumed run therefore
repeats the uninterrupted run's losses exactly (on CPU, deterministic kernels). The one
exception is a wall-clock budget (``train.max_minutes``): the LR then also follows elapsed
time (the cosine ends when the budget does, however busy the machine), so it is not bit-exact.

Scale-out: ``wrap`` (DDP, or FSDP2 sharding in place; ``farsight.parallel``) is applied to the
model in one place; the optimizer, the EMA and the checkpoints keep using the unwrapped module.
Checkpoints always hold whole tensors, gathered on rank 0 when the model is sharded.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from farsight.data.loader import rank_and_world
from farsight.errors import FarsightError
from farsight.extras import require
from farsight.io import atomic_write
from farsight.parallel import (
    full_tensor,
    is_sharded,
    load_optimizer_state,
    model_state,
    optimizer_state,
)
from farsight.precision import autocast, resolve_device, resolve_precision
from farsight.train.checkpoint import CHECKPOINT_NAME, save_checkpoint, set_rng_state
from farsight.train.config import TrainConfig
from farsight.train.ema import EMA
from farsight.train.schedule import lr_factor, make_optimizer, set_lr

ObjectiveFn = Callable[[nn.Module, Any], tuple[Tensor, dict[str, Any]]]
"""(model, batch) -> (loss, logs): what the loop trains with (a reconstruction, LAM or dynamics
objective)."""
Batches = Callable[[int], Iterator[Any]]
"""start step -> an iterator of the batches for steps start, start + 1, ..."""
METRICS_NAME = "metrics.jsonl"


class TrainingError(FarsightError):
    """Training cannot go on (e.g. a non-finite loss); names the step and the last checkpoint."""


@dataclass
class ValContext:
    """What a validation hook gets. It returns {name: float}; it may write files under run_dir."""

    step: int
    model: nn.Module
    ema: nn.Module
    device: torch.device
    precision: str
    run_dir: Path
    writer: Any  # SummaryWriter or None


Validate = Callable[[ValContext], dict[str, float]]


@dataclass
class TrainResult:
    step: int
    losses: list[float] = field(default_factory=list)
    """The loss of every step this call ran (for tests and quick checks)."""
    stopped: str = "done"
    """done (reached train.steps) or time (train.max_minutes)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The last validation's metrics."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_seed(seed: int, rank: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def window_rate(steps: int, seconds: float) -> float | None:
    """Steps per second over a window, None before there is one to measure."""
    return steps / seconds if steps > 0 and seconds > 0 else None


def expected_stop(step: int, steps: int, rate: float | None, seconds_left: float) -> int:
    """The step a run will stop at: ``steps``, or sooner if at ``rate`` steps/s the time budget
    (``seconds_left`` of it) runs out first."""
    if rate is None:
        return steps
    return min(steps, step + max(0, math.ceil(rate * seconds_left)))


def _float(v: Any) -> float:
    return float(v.detach().float().item()) if isinstance(v, Tensor) else float(v)


class MetricsLog:
    """``RUN/metrics.jsonl``: one JSON object per validation, rewritten atomically."""

    def __init__(self, run_dir: Path, resume_step: int):
        self.path = run_dir / METRICS_NAME
        self.rows: list[dict] = []
        if self.path.exists() and resume_step > 0:
            # Drop what an interrupted run logged after its last checkpoint.
            lines = self.path.read_text().splitlines()
            self.rows = [r for r in map(_parse_json_line, lines) if r and r["step"] <= resume_step]

    def append(self, row: dict) -> None:
        self.rows.append(row)
        text = "".join(f"{json.dumps(r)}\n" for r in self.rows)
        atomic_write(self.path, lambda f: f.write(text.encode()))


def _parse_json_line(line: str) -> dict | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def train(
    model: nn.Module,
    objective: ObjectiveFn,
    batches: Batches,
    cfg: TrainConfig,
    *,
    run_dir: str | Path,
    kind: str,
    config: Any,
    validate: Validate | None = None,
    resume: dict | None = None,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    progress: bool = True,
    extra: dict | None = None,
) -> TrainResult:
    """Train ``model`` to ``cfg.steps`` steps (from ``resume``'s step when given).

    ``config`` is the whole run config (stored in every checkpoint with ``kind``), ``resume``
    a loaded checkpoint of this run, ``extra`` more state every checkpoint carries (e.g. the
    autoencoder a dynamics model depends on). Returns the step reached and this call's losses.
    """
    cfg.validate()
    run_dir = Path(run_dir)
    rank, world = rank_and_world()
    is_main = rank == 0
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)

    model.to(device)
    step = 0
    seconds_before = 0.0  # training time of earlier sessions of this run
    # Full weights go in before ``wrap`` may shard the model; the optimizer comes after it.
    if resume is not None:
        model.load_state_dict(resume["model"])
    ema = EMA(model, cfg.ema_decay)
    if resume is not None:
        ema.load_state_dict(resume["ema"])
    trained = wrap(model) if wrap is not None else model
    sharded = is_sharded(model)
    optimizer = make_optimizer(model, cfg.optim)
    ema.track(model)
    if resume is not None:
        load_optimizer_state(model, optimizer, resume["optimizer"])
        set_rng_state(resume["rng"])
        step = int(resume["step"])
        seconds_before = float(resume.get("data", {}).get("train_seconds", 0.0))
        saved_world = resume.get("data", {}).get("world", world)
        if saved_world != world and is_main:
            print(f"note: resuming a run of {saved_world} ranks on {world}: the data order differs")
    replica: list[nn.Module] = []  # sharded runs: rank 0's whole copy of the raw weights

    writer = None
    metrics_log = None
    if is_main:
        # torch's own error without tensorboard does not say which extra has it.
        require("tensorboard", "training (its TensorBoard logs)")
        from torch.utils.tensorboard import SummaryWriter  # lazy: optional (train extra)

        run_dir.mkdir(parents=True, exist_ok=True)
        # purge_step drops the events an interrupted run logged after its last checkpoint:
        # those at steps >= purge_step. The checkpoint's own step was logged before it was
        # saved and is not repeated by the resumed run, so the purge starts one step later.
        writer = SummaryWriter(str(run_dir / "tb"), purge_step=step + 1 if step > 0 else None)
        metrics_log = MetricsLog(run_dir, step)

    def checkpoint(metrics: dict) -> None:
        # Gathering a sharded model's state is a collective: every rank takes part.
        model_dict = model_state(model)
        optimizer_dict = optimizer_state(model, optimizer)
        ema.sync(model)
        if not is_main:
            return
        save_checkpoint(
            run_dir / CHECKPOINT_NAME,
            kind=kind,
            config=config,
            step=step,
            model=model_dict,
            ema=ema,
            optimizer=optimizer_dict,
            data={
                "samples_per_rank": step * cfg.batch_size,
                "world": world,
                "seed": cfg.seed,
                "train_seconds": train_seconds(),
            },
            extra={
                **(extra or {}),
                "metrics": metrics,
                "precision": precision,
                "device": str(device),
            },
        )

    def run_validation() -> dict[str, float]:
        if validate is None:
            return {}
        raw = model
        if sharded:
            # Validation runs on rank 0 alone, so it gets whole (gathered) weights.
            full = model_state(model)
            ema.sync(model)
            if is_main:
                if not replica:
                    replica.append(copy.deepcopy(ema.model))
                raw = replica[0]
                raw.load_state_dict(full)
        if not is_main:
            return {}
        raw.eval()
        # Validation may draw random numbers; fork so training's streams are untouched.
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            metrics = validate(ValContext(step, raw, ema.model, device, precision, run_dir, writer))
        trained.train()
        for k, v in metrics.items():
            writer.add_scalar(f"val/{k}", v, step)
        metrics_log.append({"step": step, **metrics})
        return metrics

    result = TrainResult(step=step)
    data = batches(step)
    budget = cfg.max_minutes * 60.0
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        desc=f"train {kind}" + (f" ({cfg.max_minutes:g} min budget)" if budget > 0 else ""),
        unit="step",
        disable=not (is_main and progress),
        dynamic_ncols=True,
        # The session's average rate: the same rate expected_stop uses, so the ETA shown is
        # the time left to whichever limit stops the run.
        smoothing=0,
    )
    start_time, first_step = time.monotonic(), step

    def train_seconds() -> float:
        return seconds_before + time.monotonic() - start_time

    synced = budget > 0 and world > 1 and torch.distributed.is_initialized()

    def time_fraction() -> float:
        """Elapsed share of the time budget; rank 0's clock on every rank (same LR, same stop)."""
        if budget <= 0:
            return 0.0
        fraction = train_seconds() / budget
        if synced:
            shared = torch.tensor(fraction, dtype=torch.float64, device=device)
            torch.distributed.broadcast(shared, src=0)
            fraction = float(shared.item())
        return fraction

    window_start, window_steps = time.monotonic(), 0
    trained.train()
    try:
        # A resumed run whose time budget is already spent has nothing left to do.
        while step < cfg.steps and not (budget > 0 and seconds_before >= budget):
            torch.manual_seed(step_seed(cfg.seed, rank, step))
            batch = to_device(next(data), device)
            o = cfg.optim
            factor = lr_factor(step, o.warmup_steps, cfg.steps, o.min_lr_ratio, time_fraction())
            lr = set_lr(optimizer, factor)
            with autocast(device, precision):
                loss, logs = objective(trained, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(), cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
            )
            grad_norm = full_tensor(grad_norm)  # a DTensor when sharded: every rank gathers
            loss_value = _float(loss)
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"loss is {loss_value} at step {step + 1}; the last checkpoint is "
                    f"{run_dir / CHECKPOINT_NAME} (lower train.optim.lr or check the data)"
                )
            optimizer.step()
            ema.update(model)
            step += 1
            window_steps += 1
            result.losses.append(loss_value)
            if budget > 0 and not bar.disable:
                # A time budget may stop the run long before train.steps: the bar counts to
                # the step it will stop at, so its ETA is the budget left, not train.steps'.
                rate = window_rate(step - first_step, time.monotonic() - start_time)
                bar.total = expected_stop(step, cfg.steps, rate, budget - train_seconds())
            bar.update(1)  # before the postfix below, whose refresh shows the bar's count

            if is_main and cfg.log_every and step % cfg.log_every == 0:
                elapsed = time.monotonic() - window_start
                writer.add_scalar("train/loss", loss_value, step)
                writer.add_scalar("train/lr", lr, step)
                writer.add_scalar("train/grad_norm", _float(grad_norm), step)
                writer.add_scalar("train/steps_per_s", window_steps / max(elapsed, 1e-9), step)
                for k, v in logs.items():
                    writer.add_scalar(f"train/{k}", _float(v), step)
                bar.set_postfix(loss=f"{loss_value:.4g}", lr=f"{lr:.2g}")
                window_start, window_steps = time.monotonic(), 0

            out_of_time = budget > 0 and time_fraction() >= 1.0
            last = step == cfg.steps or out_of_time
            validating = (cfg.val_every and step % cfg.val_every == 0) or last
            saving = (cfg.ckpt_every and step % cfg.ckpt_every == 0) or last
            if validating:
                result.metrics = run_validation() or result.metrics
                if result.metrics and is_main:
                    summary = "  ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
                    bar.write(f"step {step}: {summary}")
            if saving:
                checkpoint(result.metrics)
            if (validating or saving) and world > 1 and torch.distributed.is_initialized():
                torch.distributed.barrier()  # the other ranks wait for rank 0's files
            if out_of_time:
                result.stopped = "time"
                bar.total = step  # it stopped here: a full bar, not one cut short
                bar.refresh()
                break
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        torch.use_deterministic_algorithms(was_deterministic)
    result.step = step
    return result
