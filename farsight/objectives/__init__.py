"""Training objectives: ``loss, logs = objective(model, batch)``.

The diffusion objectives differ only in how they pick noise levels; they share the head losses
in ``multiframe.py``. MaskGIT trains the same backbone on FSQ tokens. All of them are an
``Objective`` (``objective.py``); build one from its config with ``make_objective``.
"""

from __future__ import annotations

from farsight.config import ConfigError
from farsight.dynamics_config import ObjectiveConfig
from farsight.objectives.diffusion_forcing import DiffusionForcing
from farsight.objectives.full_sequence import FullSequenceDiffusion
from farsight.objectives.maskgit import MaskGIT
from farsight.objectives.multiframe import DenoisingObjective
from farsight.objectives.next_frame import NextFrameDiffusion
from farsight.objectives.objective import Objective
from farsight.objectives.teacher_forcing import TeacherForcedDiffusion

DYNAMICS_OBJECTIVES: dict[str, type[DenoisingObjective]] = {
    cls.kind: cls
    for cls in (DiffusionForcing, NextFrameDiffusion, TeacherForcedDiffusion, FullSequenceDiffusion)
}
# Objectives over FSQ tokens (the Genie path): same backbone, other input and output channels.
TOKEN_OBJECTIVES: dict[str, type[MaskGIT]] = {MaskGIT.kind: MaskGIT}


def make_objective(cfg: ObjectiveConfig) -> Objective:
    if cfg.kind in TOKEN_OBJECTIVES:
        return TOKEN_OBJECTIVES[cfg.kind](cfg)
    if cfg.kind not in DYNAMICS_OBJECTIVES:
        kinds = [*DYNAMICS_OBJECTIVES, *TOKEN_OBJECTIVES]
        raise ConfigError(f"objective.kind={cfg.kind!r}; expected one of {', '.join(kinds)}")
    return DYNAMICS_OBJECTIVES[cfg.kind](cfg)
