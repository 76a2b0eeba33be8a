"""What every dynamics objective is: ``loss, logs = objective(model, batch, generator)``.

The diffusion objectives (``DenoisingObjective`` and its kinds) and MaskGIT implement it, so the
dynamics trainer, its validation and the benchmarks hold any of them without asking which.
``terms`` gives the same loss as named parts (per head) with their weights, which validation
reports one by one and the gradient-cosine diagnostic differentiates one by one; ``__call__``
is their weighted total and logs.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from farsight.dynamics_config import ObjectiveConfig
from farsight.objectives.multiframe import LossTerms


@runtime_checkable
class Objective(Protocol):
    """A dynamics objective (see the module docstring)."""

    kind: ClassVar[str]
    """``objective.kind`` of the config it implements."""
    cfg: ObjectiveConfig

    def __call__(
        self, model: nn.Module, batch: dict, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted total loss (with its graph) and detached logs."""
        ...

    def terms(
        self, model: nn.Module, batch: dict, generator: torch.Generator | None = None
    ) -> LossTerms:
        """The loss as named parts and their weights; randomness from ``generator`` if given."""
        ...
