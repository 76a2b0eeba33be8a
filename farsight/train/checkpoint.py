"""Self-describing checkpoints, written atomically.

A checkpoint is one ``torch.save``'d dict holding everything a command needs, so every
command takes only its path:

    format, version        "farsight-checkpoint", 1
    kind                   what was trained ("autoencoder", "dynamics", ...)
    config_class, config   the run config's class name and ``to_dict`` of it
    step                   optimizer steps taken
    model, ema             state dicts (the EMA is what commands use)
    optimizer, scheduler   state dicts (for --resume)
    rng                    python, numpy, torch (and CUDA) generator states
    data                   sampler position: samples drawn per rank, world size, seed
    extra                  anything the run adds (e.g. last validation metrics)

Only tensors, numbers, strings, lists and dicts are stored, so ``torch.load(weights_only=True)``
reads it: loading a checkpoint runs no pickled code.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from farsight.config import from_dict, to_dict
from farsight.errors import FarsightError
from farsight.io import atomic_write

FORMAT = "farsight-checkpoint"
VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(FarsightError):
    """A checkpoint that is missing, unreadable or of the wrong kind; names the file."""


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": _listify(random.getstate()),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["key"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _listify(x: Any) -> Any:
    return [_listify(v) for v in x] if isinstance(x, tuple | list) else x


def config_class_name(config: Any) -> str:
    return f"{type(config).__module__}.{type(config).__qualname__}"


def save_checkpoint(
    path: str | Path,
    *,
    kind: str,
    config: Any,
    step: int,
    model: torch.nn.Module | dict,
    ema: Any = None,
    optimizer: torch.optim.Optimizer | dict | None = None,
    scheduler: Any = None,
    data: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write a checkpoint atomically: a crash leaves the previous file intact.

    ``model`` and ``optimizer`` are modules or their (full, already gathered) state dicts."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "config_class": config_class_name(config),
        "config": to_dict(config),
        "step": int(step),
        "model": model if isinstance(model, dict) else model.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict()
        if isinstance(optimizer, torch.optim.Optimizer)
        else optimizer,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
        "data": data or {},
        "extra": extra or {},
        "torch_version": str(torch.__version__),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = Path(path)
    atomic_write(path, lambda f: torch.save(payload, f))
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder holding ``checkpoint.pt``."""
    path = Path(path)
    if path.is_dir():
        candidate = path / CHECKPOINT_NAME
        if not candidate.is_file():
            raise CheckpointError(f"run folder {path} holds no checkpoint ({CHECKPOINT_NAME})")
        return candidate
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(
    path: str | Path, kind: str | None = None, map_location: str | torch.device = "cpu"
) -> dict:
    """Load and check a checkpoint (file or run folder); ``kind`` refuses other kinds."""
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [repr(e)]
        reason = next((line for line in lines if "error:" in line.lower()), lines[0])
        raise CheckpointError(f"checkpoint {path} cannot be read: {reason}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a farsight checkpoint")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has version {ckpt.get('version')}, this farsight reads {VERSION}"
        )
    if kind is not None and ckpt.get("kind") != kind:
        raise CheckpointError(
            f"checkpoint {path} is a {ckpt.get('kind')!r} checkpoint; this needs a {kind!r} one"
        )
    ckpt["path"] = str(path)
    return ckpt


def model_state(ckpt: dict, weights: str = "ema") -> dict:
    """The model weights to load from ``ckpt``: the EMA copy when asked and present (every
    evaluation, rollout and play uses it), else the trained weights (``weights="model"``)."""
    return ckpt["ema"]["model"] if weights == "ema" and ckpt.get("ema") else ckpt["model"]


def _flat(d: dict, prefix: str = "") -> dict:
    """Nested config dict -> {"a.b": value}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def init_from_checkpoint(
    model: torch.nn.Module, path: str | Path, *, kind: str, config: Any, extra: dict | None = None
) -> dict:
    """Load the EMA weights of checkpoint ``path`` into ``model`` (``train.init_from``) and
    return the checkpoint. ``config`` is the new run's whole config: the checkpoint must be of
    ``kind`` and its model config equal to ``config.model`` (after the stored config is read
    with today's defaults and renames); when both it and ``extra`` carry an ``autoencoder``, the
    two must hold the same weights (latents of another autoencoder mean something else)."""
    where = f"train.init_from={path}"
    try:
        ckpt = load_checkpoint(path, kind=kind)
        source = f"checkpoint {ckpt['path']}"
        stored = from_dict(type(config), ckpt["config"], source=source).model
    except FarsightError as e:
        raise CheckpointError(f"{where}: {e}") from None
    # Every field, even one that shapes no weight (window, residual_output), decides what
    # the weights compute, so any difference is refused rather than trained on.
    theirs, ours = _flat(to_dict(stored)), _flat(to_dict(config.model))
    differ = [k for k in ours if theirs.get(k) != ours[k]]
    if differ:
        shown = ", ".join(f"model.{k} {theirs.get(k)!r} there, {ours[k]!r} here" for k in differ)
        raise CheckpointError(f"{where}: its model differs from this run's: {shown}")
    their_ae = ckpt["extra"].get("autoencoder")
    our_ae = (extra or {}).get("autoencoder")
    if their_ae is not None and our_ae is not None:
        a, b = their_ae["state"], our_ae["state"]
        if a.keys() != b.keys() or any(not torch.equal(a[k], b[k].cpu()) for k in a):
            raise CheckpointError(
                f"{where} was trained on the latents of another autoencoder than this run's "
                "data.autoencoder: its weights would read these latents wrongly"
            )
    model.load_state_dict(model_state(ckpt, "ema"))
    return ckpt
