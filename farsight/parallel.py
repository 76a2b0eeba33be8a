"""Scale-out, applied from outside the model in one place.

Launched by ``torchrun`` (detected from its environment variables) a run joins the process
group and its model is prepared here: ``ddp`` wraps it in DistributedDataParallel (a full
replica per rank), ``fsdp`` shards it in place with FSDP2 (``fully_shard``: every block of
every ``nn.ModuleList``, then the root), so each rank holds 1/world of the parameters, their
gradients and the optimizer state. Model code stays single-device; the clip loader partitions
data by rank; rank 0 alone logs and writes checkpoints.

With ``fsdp`` the training loop builds the optimizer after sharding, and everything that needs
whole tensors goes through the functions below: checkpoints hold full (unsharded) state dicts
gathered on rank 0, so a run saved under ``fsdp`` loads anywhere (one process, ``ddp``, or
``fsdp`` with another world size), and a checkpoint of an unsharded run resumes under ``fsdp``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import Tensor, nn

from farsight.config import ConfigError

if TYPE_CHECKING:  # its config lives with the other training configs, which import no torch
    from farsight.train.config import ParallelConfig

# FSDP, DTensor and distributed checkpointing are imported in the functions below that use
# them, and only on a sharded model: they take about a second to import, which a one-process
# run (and every objective, which imports this module) would pay for nothing.

STRATEGIES = ("ddp", "fsdp")


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
    """Prepare ``model`` for the run; a no-op in a single process.

    Objectives must call the returned module's ``forward`` (DDP synchronises gradients from
    there; FSDP gathers each block's parameters there); ``unwrap`` gives back the module whose
    parameters the optimizer steps. ``fsdp`` changes ``model`` in place (its parameters become
    DTensor shards), so build the optimizer afterwards.
    """
    if not info.distributed:
        return model
    if cfg.strategy == "fsdp":
        return shard(model)
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shard(model: nn.Module) -> nn.Module:
    """FSDP2: each element of each ModuleList (the transformer blocks, the far heads) is its
    own unit, gathered just before it runs and freed after; the root holds the rest."""
    # lazy: slow to import (see the note above STRATEGIES)
    from torch.distributed.fsdp import fully_shard

    # Innermost first (a far head's own blocks before the head): a parameter is sharded once.
    for module in reversed(list(model.modules())):
        if isinstance(module, nn.ModuleList):
            for unit in module:
                fully_shard(unit)
    fully_shard(model)
    return model


def is_sharded(model: nn.Module) -> bool:
    # lazy: slow to import (see the note above STRATEGIES)
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def unwrap(model: nn.Module) -> nn.Module:
    """The model under DDP and torch.compile wrappers (FSDP2 shards in place: no wrapper)."""
    while isinstance(model, nn.parallel.DistributedDataParallel) or hasattr(model, "_orig_mod"):
        model = model.module if hasattr(model, "module") else model._orig_mod
    return model


def local(t: Tensor) -> Tensor:
    """This rank's part of a (possibly) sharded tensor."""
    # lazy: slow to import (see the note above STRATEGIES)
    from torch.distributed.tensor import DTensor

    return t.to_local() if isinstance(t, DTensor) else t


def full_tensor(t: Tensor) -> Tensor:
    """The whole of a (possibly) sharded tensor (a collective for a DTensor)."""
    # lazy: slow to import (see the note above STRATEGIES)
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum over ranks, in place (for sums of sharded quantities); identity in one process."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t


def _full_options():
    # lazy: slow to import (see the note above STRATEGIES)
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def model_state(model: nn.Module) -> dict:
    """The full state dict; for a sharded model a collective (call it on every rank): rank 0
    gets the gathered tensors on the CPU, the other ranks an empty dict."""
    if not is_sharded(model):
        return model.state_dict()
    # lazy: slow to import (see the note above STRATEGIES)
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_full_options())


def gather_values(model: nn.Module, values: list[Tensor]) -> list[Tensor]:
    """Full tensors from per-rank shards laid out like ``model``'s parameters (collective)."""
    # lazy: slow to import (see the note above STRATEGIES)
    from torch.distributed.tensor import DTensor

    out = []
    for p, v in zip(model.parameters(), values, strict=True):
        if isinstance(p, DTensor):
            v = DTensor.from_local(v, p.device_mesh, p.placements, shape=p.shape, stride=p.stride())
            v = v.full_tensor()
        out.append(v.cpu())
    return out


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's full state dict (collective when sharded; see ``model_state``).

    Unsharded: the usual ``optimizer.state_dict()`` (parameters by index); sharded: keyed by
    parameter name, as torch.distributed.checkpoint writes it. ``load_optimizer_state`` reads
    both into either kind of model."""
    if not is_sharded(model):
        return optimizer.state_dict()
    # lazy: slow to import (see the note above STRATEGIES)
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_full_options())


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a full optimizer state dict, keyed by index or by name, into either kind of model."""
    by_name = any(isinstance(k, str) for k in state.get("state", {})) or any(
        isinstance(p, str) for g in state.get("param_groups", []) for p in g["params"]
    )
    if not is_sharded(model):
        optimizer.load_state_dict(_name_to_index(model, optimizer, state) if by_name else state)
        return
    if not by_name:
        state = _index_to_name(model, optimizer, state)
    # The loader maps group entries by name, so a key the run added later (``initial_lr``)
    # must exist in the fresh groups too; its saved value is what gets loaded.
    for group, saved in zip(optimizer.param_groups, state["param_groups"], strict=True):
        for key, value in saved.items():
            group.setdefault(key, value)
    # lazy: slow to import (see the note above STRATEGIES)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(
        model, optimizer, state, options=StateDictOptions(full_state_dict=True)
    )


def _name_to_index(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> dict:
    """A name-keyed optimizer state dict (from a sharded run) keyed by index for ``optimizer``."""
    name_of = {id(p): name for name, p in model.named_parameters()}
    index = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            index[name_of[id(p)]] = len(index)
    try:
        return {
            "state": {index[n]: s for n, s in state["state"].items()},
            "param_groups": [
                {**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]
            ],
        }
    except KeyError as e:
        raise ValueError(f"the checkpoint's optimizer state names parameter {e}: unknown") from None


def _index_to_name(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> dict:
    """An index-keyed optimizer state dict keyed by parameter name instead. Indices number the
    parameters group by group; ``optimizer`` (built the same way, e.g. by ``make_optimizer``)
    says which parameter sits at each place."""
    name_of = {id(p): name for name, p in model.named_parameters()}
    saved, current = state["param_groups"], optimizer.param_groups
    if [len(g["params"]) for g in saved] != [len(g["params"]) for g in current]:
        raise ValueError("the checkpoint's optimizer groups do not match this model's")
    names = {
        i: name_of[id(p)]
        for g, cg in zip(saved, current, strict=True)
        for i, p in zip(g["params"], cg["params"], strict=True)
    }
    return {
        "state": {names[i]: s for i, s in state["state"].items()},
        "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in saved],
    }


def teardown() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
