"""Diffusion forcing (Chen et al. 2024), the default objective: every frame gets its own
independent noise level, and head 1 denoises every frame given its (differently noisy) past.

Training on all combinations of per-frame levels is what lets one model roll out
autoregressively, in chunks, with a pyramid schedule or with noisy ("stable") context.

Context noise augmentation (``context_level_max`` > 0): one context level c per clip, and every
frame is noised to at least c (``max(tau_t, c)``), with c also passed to the model. A rollout
that noises its context to c then matches a training regime, and the model knows how far to
trust that context.
"""

from __future__ import annotations

import torch

from farsight.objectives.multiframe import DenoisingObjective, NoiseLevels


class DiffusionForcing(DenoisingObjective):
    kind = "diffusion_forcing"

    def noise_levels(self, batch_size, frames, device, generator) -> NoiseLevels:
        tau = self.sample_tau((batch_size, frames), device, generator)
        context_level = self.sample_context_level(batch_size, frames, device, generator)
        if context_level is not None:
            tau = torch.maximum(tau, context_level)
        main_mask = torch.ones(batch_size, frames, dtype=torch.bool, device=device)
        return NoiseLevels(tau, main_mask, context_level)
