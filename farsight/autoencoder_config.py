"""Configs of the frame autoencoder (``farsight/models/autoencoder.py``) and of its
reconstruction objective (``farsight/objectives/autoencoder.py``).

Kept apart from the modules so that a command can build, override and print a config without
importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from farsight.config import ConfigError

KINDS = ("continuous", "fsq")


@dataclass
class AutoencoderConfig:
    kind: str = "continuous"
    """continuous (diffusion path) or fsq (Genie path)."""
    factor: int = 4
    """Downsampling factor from frame to latent grid: 4 (64x64 -> 16x16) or 8."""
    latent_channels: int = 8
    """C for the continuous kind; the FSQ kind has len(fsq_levels) channels."""
    variational: bool = False
    """Continuous kind: also predict a log variance (small-KL VAE)."""
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)
    width: int = 64
    """Channels of the first stage."""
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    """Width multiplier per stage (full res first); the last entry repeats if too short."""
    blocks: int = 2
    """ResNet blocks per stage (the decoder has the same)."""
    patch: int = 1
    """Pixel-unshuffle stem: 2 starts the network at H/2 (4x fewer positions, same factor)."""
    attention: bool = True
    """Self-attention at the bottleneck (N = h*w tokens)."""
    shortcut: bool = False
    """Linear space-to-channel shortcut around encoder and decoder (as DC-AE's residual
    autoencoding, with a learned 1x1 projection): the latent starts as a linear, PCA-like code
    of each factor x factor patch and the network learns the rest. Pays where frames carry
    dense high-frequency detail (the arena's floor texture)."""
    attention_heads: int = 4
    norm_groups: int = 32
    image_channels: int = 3

    def stage_widths(self) -> list[int]:
        stages = int(math.log2(self.factor // self.patch)) + 1
        mult = list(self.channel_mult)
        return [self.width * mult[min(i, len(mult) - 1)] for i in range(stages)]

    def validate(self) -> AutoencoderConfig:
        if self.kind not in KINDS:
            raise ConfigError(f"model.kind={self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.factor not in (2, 4, 8, 16):
            raise ConfigError(f"model.factor={self.factor}; choose 2, 4, 8 or 16")
        if self.patch not in (1, 2, 4) or self.patch > self.factor:
            raise ConfigError(f"model.patch={self.patch} must be 1, 2 or 4 and <= factor")
        if self.kind == "fsq" and self.variational:
            raise ConfigError("model.variational=true is for the continuous kind, not fsq")
        if self.kind == "fsq" and (not self.fsq_levels or min(self.fsq_levels) < 2):
            raise ConfigError(f"model.fsq_levels={list(self.fsq_levels)}: each must be >= 2")
        if self.latent_channels < 1 or self.width < 1 or self.blocks < 1:
            raise ConfigError("model.latent_channels, model.width and model.blocks must be >= 1")
        return self

    @property
    def channels(self) -> int:
        """Latent channels C actually produced."""
        return len(self.fsq_levels) if self.kind == "fsq" else self.latent_channels


@dataclass
class AutoencoderLossConfig:
    l1: float = 1.0
    l2: float = 1.0
    gradient: float = 0.0
    """Weight of the L1 loss on horizontal and vertical pixel differences."""
    kl: float = 0.0
    """KL weight for model.variational=true (small, e.g. 1e-6 as in latent diffusion)."""
    latent_noise: float = 0.0
    """Std of Gaussian noise added to plain continuous latents (decoder robustness)."""
    latent_l2: float = 0.0
    """Penalty on the squared latent (keeps its scale bounded when latent_noise > 0)."""
    latent_fade: float = 0.0
    """Share of each batch decoded from faded latents (continuous kind): variation shrunk
    along ``latent_fade_directions`` random channel directions by random factors, half of them
    also blended towards a pooled copy, the true frame still the target. The decoder then
    draws a dynamics model's drifting latents as faded frames instead of coloured noise."""
    latent_fade_directions: int = 3
    """Directions per faded latent (at most the latent channels)."""
    worst: float = 0.0
    """Weight of the mean squared error over each frame's worst ``worst_share`` of pixels.
    A one-pixel object (Breakout's ball at 64x64) is ~1/4000 of a frame: erasing it costs the
    mean losses almost nothing, but its pixels are the frame's worst once erased."""
    worst_share: float = 0.005
    """Share of each frame's pixels (H*W, errors summed over colour) the worst term averages."""
