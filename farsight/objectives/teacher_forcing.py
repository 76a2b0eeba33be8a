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

The context is noised to ``context_tau`` and labelled with it; with context noise
augmentation (``ctx_noise_max`` > 0) to a per-clip tau_ctx instead (GameNGen, DIAMOND), also
passed to the model as ctx_tau. Far heads train at every position of the noisy stream.
"""

from __future__ import annotations

import torch

from farsight.objectives.multiframe import DenoisingObjective, NoiseLevels


class TeacherForcedDiffusion(DenoisingObjective):
    kind = "teacher_forcing"

    def noise_levels(self, batch_size, frames, device, generator) -> NoiseLevels:
        tau = self.sample_tau((batch_size, frames), device, generator)
        ctx_tau = self.sample_ctx_tau(batch_size, frames, device, generator)
        if ctx_tau is not None:
            context = ctx_tau
        else:
            context = torch.full((batch_size, frames), self.cfg.context_tau, device=device)
        main_mask = torch.ones(batch_size, frames, dtype=torch.bool, device=device)
        return NoiseLevels(tau, main_mask, ctx_tau, context=context)
