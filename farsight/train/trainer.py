"""One skeleton for every trainer: what a run folder holds, how a run resumes and when it is
evaluated are the same for every model, so they are written once, here.

    run_training(trainer, cfg, out, resume=False, progress=True) -> TrainResult

1. A new run refuses a run folder that already holds a checkpoint (``--resume`` continues it,
   another ``--out`` starts afresh). A resumed run continues with the config stored in its
   checkpoint (only the data paths may be re-pointed, for data that moved), and returns at
   once when all its steps are done or its time budget is spent.
2. The trainer builds what it trains (``Trainer.prepare``): data, model, objective and
   validation, and whatever else every checkpoint carries.
3. A new run writes ``config.json`` (the config as trained: after ``prepare``, which may fill
   in what it reads from the data), then the generic loop (``farsight.train.loop``) trains.
4. A run that ended, all its steps done or its time budget spent, is evaluated
   (``Trainer.evaluate``; an interrupted run raises before it).

A trainer for another model subclasses ``Trainer``; ``autoencoder.py`` is the smallest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from farsight.config import from_dict, to_dict
from farsight.errors import UsageError
from farsight.io import atomic_write_json
from farsight.parallel import DistInfo
from farsight.train.checkpoint import CHECKPOINT_NAME, init_from_checkpoint, load_checkpoint
from farsight.train.config import TrainConfig
from farsight.train.loop import Batches, ObjectiveFn, TrainResult, Validate, train


@dataclass
class RunParts:
    """What a trainer builds for one run; ``run_training`` hands it to the loop."""

    model: nn.Module
    objective: ObjectiveFn
    batches: Batches
    validate: Validate | None
    summary: str
    """The line printed before training: model size, data, device."""
    extra: dict | None = None
    """More state every checkpoint carries (e.g. the autoencoder a dynamics model reads)."""
    wrap: Callable[[nn.Module], nn.Module] | None = None
    """DDP or FSDP2 wrapping of the model (``farsight.parallel``); None: trained as it is."""


class Trainer:
    """A model's trainer: what it reads, builds and measures. A subclass sets ``kind`` and
    ``config_type`` and writes ``prepare``; ``session`` and ``evaluate`` have defaults."""

    kind: str
    """What is trained, stored in every checkpoint: a resume refuses another kind's."""
    config_type: type
    """The run config dataclass: ``model``, ``train`` (a ``TrainConfig``), ``data``, ..."""
    repointable: tuple[str, ...] = ("path",)
    """``data.*`` paths a resumed run takes from the command line when given (moved data)."""

    def session(self, cfg: Any) -> AbstractContextManager[DistInfo]:
        """The processes the run trains on: this one alone, unless the trainer joins torchrun's
        process group here (and leaves it when training ends, however it ends)."""
        return contextlib.nullcontext(DistInfo())

    def prepare(self, cfg: Any, info: DistInfo, start_step: int, progress: bool) -> RunParts:
        """Check ``cfg``, open the data and build the run from step ``start_step`` on.

        May fill in ``cfg`` from the data (the config file is written after it)."""
        raise NotImplementedError

    def evaluate(self, cfg: Any, out: Path, result: TrainResult, progress: bool) -> None:
        """Measure the trained run (e.g. into ``out / "eval.json"``); by default nothing."""


def finished(ckpt: dict, cfg: TrainConfig) -> str | None:
    """Why a run resumed from ``ckpt`` has nothing left to do, or None if it has."""
    budget = cfg.max_minutes * 60
    if budget > 0 and ckpt["data"].get("train_seconds", 0.0) >= budget:
        return "its time budget is spent"
    if ckpt["step"] >= cfg.steps:
        return "all steps done"
    return None


def stored_config(trainer: Trainer, ckpt: dict, given: Any) -> Any:
    """The config a resumed run continues with: its checkpoint's, with the data paths of
    ``given`` (the command line's) where it names them."""
    cfg = from_dict(trainer.config_type, ckpt["config"], source=f"checkpoint {ckpt['path']}")
    for key in trainer.repointable:
        setattr(cfg.data, key, getattr(given.data, key) or getattr(cfg.data, key))
    return cfg


def run_training(
    trainer: Trainer, cfg: Any, out: str | Path, resume: bool = False, progress: bool = True
) -> TrainResult:
    """Train ``cfg`` into the run folder ``out``, or continue the run there (``resume``)."""
    out = Path(out)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(out, kind=trainer.kind)
        cfg = stored_config(trainer, ckpt, cfg)
        why = finished(ckpt, cfg.train)
        if why:
            if progress:
                print(f"run {out} is complete ({why}): step {ckpt['step']}")
            return TrainResult(step=ckpt["step"], metrics=ckpt["extra"].get("metrics", {}))
    elif (out / CHECKPOINT_NAME).exists():
        raise UsageError(
            f"run folder {out} already holds a checkpoint; continue it with --resume "
            "or choose another --out"
        )
    with trainer.session(cfg) as info:
        parts = trainer.prepare(cfg, info, ckpt["step"] if ckpt else 0, progress)
        if ckpt is None and cfg.train.init_from:
            # Full weights go in on every rank, before the loop may wrap or shard the model.
            init_from_checkpoint(
                parts.model, cfg.train.init_from, kind=trainer.kind, config=cfg, extra=parts.extra
            )
            parts.summary += f"; starts from {cfg.train.init_from}"
        if not resume and info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(out / "config.json", {"kind": trainer.kind, "config": to_dict(cfg)})
        if progress and info.is_main:
            print(parts.summary)
        result = train(
            parts.model,
            parts.objective,
            parts.batches,
            cfg.train,
            run_dir=out,
            kind=trainer.kind,
            config=cfg,
            validate=parts.validate,
            resume=ckpt,
            wrap=parts.wrap,
            progress=progress,
            extra=parts.extra,
        )
    if info.is_main:
        trainer.evaluate(cfg, out, result, progress)
    return result
