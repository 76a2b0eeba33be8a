"""Exponential moving average of a model's weights (the weights every command uses)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from farsight.parallel import gather_values, is_sharded, local


class EMA:
    """Holds a frozen copy of the model whose parameters trail the trained ones.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` over the ``n`` updates so far, so
    early in a short run the average is not dominated by the random initialisation. Buffers
    (e.g. latent statistics) are copied, not averaged.

    Build it before the model is sharded (``farsight.parallel``); once the model is sharded,
    ``track(model)`` makes the average run on this rank's shards only, and ``sync(model)``
    (every rank) gathers it into ``self.model`` before anyone reads that.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.shards: list[Tensor] | None = None

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    def track(self, model: nn.Module) -> None:
        """Average ``model``'s own shards from now on if it is sharded (a no-op otherwise)."""
        if not is_sharded(model):
            return
        # lazy: imported when sharded: torch.distributed's FSDP modules take ~1 s to import.
        from torch.distributed.tensor import distribute_tensor

        self.shards = [
            local(distribute_tensor(e.detach().to(p.device), p.device_mesh, p.placements))
            for e, p in zip(self.model.parameters(), model.parameters(), strict=True)
        ]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        if self.shards is not None:
            ema_params = self.shards
            params = [local(p.detach()) for p in model.parameters()]
        else:
            ema_params = list(self.model.parameters())
            params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - d)
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(local(b))
        self.updates += 1

    @torch.no_grad()
    def sync(self, model: nn.Module) -> None:
        """Bring ``self.model`` up to date from the shards (a collective; no-op unsharded)."""
        if self.shards is None:
            return
        full = gather_values(model, self.shards)
        for e, f in zip(self.model.parameters(), full, strict=True):
            e.copy_(f)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.updates = state["updates"]
        self.model.load_state_dict(state["model"])
