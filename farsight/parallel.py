"""Scale-out, applied from outside the model in one place.

Launched by ``torchrun`` (detected from its environment variables) a run joins the process
group and its model is wrapped here in DDP. Model code stays single-device; the clip loader
partitions data by rank; rank 0 alone logs and writes checkpoints.

FSDP2 is not offered yet: sharded parameters need the optimizer and EMA built after
sharding and checkpoints gathered with torch.distributed.checkpoint, which the training loop
does not do. The models here fit one device comfortably.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from farsight.config import ConfigError

STRATEGIES = ("ddp",)


@dataclass
class ParallelConfig:
    strategy: str = "ddp"
    """How a multi-process run shares the model: ``ddp`` (replicas)."""
    backend: str = "auto"
    """Process-group backend: ``auto`` (nccl on CUDA, gloo on CPU), ``nccl`` or ``gloo``."""


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def setup(cfg: ParallelConfig, device: str = "auto") -> DistInfo:
    """Pick the device and, under torchrun, join the process group."""
    if cfg.strategy not in STRATEGIES:
        raise ConfigError(f"parallel.strategy={cfg.strategy!r}; expected one of {STRATEGIES}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if not launched_by_torchrun():
        return DistInfo(device=dev)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = dev.type == "cuda"
    if use_cuda:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    backend = cfg.backend if cfg.backend != "auto" else ("nccl" if use_cuda else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend, device_id=dev if use_cuda else None)
    return DistInfo(rank, world, local_rank, dev)


def parallelize(model: nn.Module, cfg: ParallelConfig, info: DistInfo) -> nn.Module:
    """Wrap ``model`` for the run; a no-op in a single process.

    Objectives must call the returned module's ``forward`` (DDP synchronises gradients from
    there); ``unwrap`` gives back the plain module for checkpoints and diagnostics.
    """
    if not info.distributed:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def teardown() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
