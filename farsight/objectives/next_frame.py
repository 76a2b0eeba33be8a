"""Next-frame diffusion (the teacher-forcing baseline of the diffusion forcing slides): the
context is clean-ish, only the last input frame is noisy, and head 1 is trained on that last
frame only. One denoising target per clip, so it learns less per step than diffusion forcing;
that inefficiency is part of what the comparison measures.

The context is actually noised to ``context_level`` (0.02 by default) and labelled with it;
with context noise augmentation (``context_level_max`` > 0) to a context level drawn per clip
instead (GameNGen, DIAMOND), which is also passed to the model. Far heads train at every
position.
"""

from __future__ import annotations

import torch

from farsight.objectives.multiframe import DenoisingObjective, NoiseLevels


class NextFrameDiffusion(DenoisingObjective):
    kind = "next_frame"

    def noise_levels(self, batch_size, frames, device, generator) -> NoiseLevels:
        last = self.sample_tau((batch_size, 1), device, generator)
        context_level = self.sample_context_level(batch_size, frames, device, generator)
        if context_level is not None:
            context = context_level[:, : frames - 1]
        else:
            context = torch.full((batch_size, frames - 1), self.cfg.context_level, device=device)
        tau = torch.cat([context, last], dim=1)
        main_mask = torch.zeros(batch_size, frames, dtype=torch.bool, device=device)
        main_mask[:, -1] = True
        return NoiseLevels(tau, main_mask, context_level)
