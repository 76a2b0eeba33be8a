"""Exponential moving average of a model's weights (the weights every command uses)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Holds a frozen copy of the model whose parameters trail the trained ones.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` over the ``n`` updates so far, so
    early in a short run the average is not dominated by the random initialisation. Buffers
    (e.g. latent statistics) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        ema_params = list(self.model.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - d)
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.updates = state["updates"]
        self.model.load_state_dict(state["model"])
