"""Teacher-forced diffusion: every frame of a clip is a denoising target whose past is the
clean(-ish) clip, in one forward pass.

Next-frame diffusion trains one target per clip (the last frame, its context clean); diffusion
forcing trains every frame, but each frame's past is noisy at independent levels, so the
pairs that teach how a clean frame and an action lead to the next frame (the pairs a rollout
meets) are a small share of its samples. Here the model sees the clip twice
(``DynamicsModel.trunk_teacher_forced``): a context stream, noised to the context level as a
rollout's committed frames are, and a noisy stream with an independent tau per frame; noisy
frame t attends to context frames < t and to itself. Every frame is then trained exactly as it
is sampled, at twice the tokens of one pass.

The context is noised to ``context_level`` and labelled with it; with context noise
augmentation (``context_level_max`` > 0) to a context level drawn per clip instead (GameNGen,
DIAMOND), also passed to the model as ``context_level``. Far heads train at every position of
the noisy stream.
"""

from __future__ import annotations

import torch

from farsight.objectives.multiframe import DenoisingObjective, NoiseLevels


class TeacherForcedDiffusion(DenoisingObjective):
    kind = "teacher_forcing"

    def noise_levels(self, batch_size, frames, device, generator) -> NoiseLevels:
        tau = self.sample_tau((batch_size, frames), device, generator)
        context_level = self.sample_context_level(batch_size, frames, device, generator)
        if context_level is not None:
            context = context_level
        else:
            context = torch.full((batch_size, frames), self.cfg.context_level, device=device)
        main_mask = torch.ones(batch_size, frames, dtype=torch.bool, device=device)
        return NoiseLevels(tau, main_mask, context_level, context_levels=context)
