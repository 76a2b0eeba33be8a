"""Training objectives: ``loss, logs = objective(model, batch)``.

The dynamics objectives differ only in how they pick noise levels; they share the head losses
in ``multiframe.py``. Build one from its config with ``make_objective``.
"""

from __future__ import annotations

from farsight.config import ConfigError
from farsight.dynamics_config import ObjectiveConfig
from farsight.objectives.diffusion_forcing import DiffusionForcing
from farsight.objectives.full_sequence import FullSequenceDiffusion
from farsight.objectives.multiframe import DenoisingObjective
from farsight.objectives.next_frame import NextFrameDiffusion

DYNAMICS_OBJECTIVES: dict[str, type[DenoisingObjective]] = {
    cls.kind: cls for cls in (DiffusionForcing, NextFrameDiffusion, FullSequenceDiffusion)
}


def make_objective(cfg: ObjectiveConfig) -> DenoisingObjective:
    if cfg.kind not in DYNAMICS_OBJECTIVES:
        raise ConfigError(
            f"objective.kind={cfg.kind!r}; expected one of {', '.join(DYNAMICS_OBJECTIVES)}"
        )
    return DYNAMICS_OBJECTIVES[cfg.kind](cfg)
