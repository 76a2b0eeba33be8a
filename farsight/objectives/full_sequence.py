"""Full-sequence diffusion (the other baseline of the diffusion forcing slides): one noise
level for the whole clip, every frame denoised. The causal trunk still sees only the past, but
at inference all frames must be denoised together, which is what makes it a poor simulator.
"""

from __future__ import annotations

import torch

from farsight.objectives.multiframe import DenoisingObjective, NoiseLevels


class FullSequenceDiffusion(DenoisingObjective):
    kind = "full_sequence"

    def noise_levels(self, batch_size, frames, device, generator) -> NoiseLevels:
        tau = self.sample_tau((batch_size, 1), device, generator).expand(-1, frames)
        main_mask = torch.ones(batch_size, frames, dtype=torch.bool, device=device)
        return NoiseLevels(tau.contiguous(), main_mask)
