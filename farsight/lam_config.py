"""Configs of the latent action model (``farsight/models/lam.py``) and of its objective
(``farsight/objectives/lam.py``).

Kept apart from the modules so that a command can build, override and print a config without
importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from farsight.config import ConfigError

QUANTIZERS = ("fsq", "vq")


@dataclass
class LAMConfig:
    num_codes: int = 8
    """|A|: size of the latent action vocabulary."""
    quantizer: str = "fsq"
    """fsq or vq."""
    fsq_levels: tuple[int, ...] = (2, 2, 2)
    """fsq: levels per channel; their product must be num_codes."""
    code_dim: int = 16
    """vq: width of the codebook vectors."""
    patch: int = 4
    """Pixel-unshuffle stem: both networks run at H / patch (a CPU-friendly resolution)."""
    width: int = 64
    blocks: int = 2
    """ResNet blocks per stage, in the encoder and in the decoder."""
    down: int = 2
    """Stride-2 stages of the encoder after the stem (16x16 -> 4x4 for 64x64 frames)."""
    residual: bool = True
    """The decoder predicts x_{t+1} - x_t and adds x_t (static frames cost nothing)."""
    motion_radius: int = 3
    """Shifts (dy, dx) in motion_step * [-r, r]^2: the encoder's cost volume (``cost_volume``)
    and the decoder's candidate moves of x_t (``warp``). 0: neither."""
    motion_step: int = 1
    """Pixels between the shifts (1: the arena's 1-2 px camera moves are all on the grid)."""
    warp: bool = True
    """The decoder predicts, per cell, a mixture over the shifts of x_t (which way each part
    of the frame moves) plus a residual, instead of new pixels only. A camera following the
    player is then one choice of shift for the whole frame, which the action can make; a
    convolutional decoder would first have to learn to translate textures."""
    displacement: float = 0.0
    """> 0: the decoder reads the first two channels of the code as a move (dy, dx), starting
    at ``displacement`` pixels per unit of code (a learned 2 x 2 map after that), and the
    action's shift vote (``warp``) also favours the shifts near that move (a Gaussian in
    shift space of learned sharpness). Opposite codes then mean opposite moves from the first
    step, where a learned vote first makes a code mean "along this axis, either way" (a blur
    that serves both). Fits FSQ with 3 levels on those channels ([3, 3]: still, or one step
    either way on each axis). 0: the vote is learned from the code alone. On the arena it pays
    only with the absolute error (``objective.l1``; recipe ``lam_move``): under the squared
    error a blur along the axis is worth as much as the exact move there."""
    move_gate: bool = False
    """With ``displacement``: the decoder scales the code's move per axis by a gate in (0, 2)
    that it reads off its last features (x_t under the code, pooled to 4 x 4 cells), starting
    at 1 (the plain ``displacement``). Where the view cannot follow the actor (a camera held
    at a wall of the level) the frame's move on that axis can go to 0 while the code still
    says which way the actor went, so one code could mean one action whether the view or the
    actor moved. On the sprite store (nothing moves but the sprite) it raised the test NMI
    from 0.91 / 0.87 to 0.99 / 0.93 (two seeds); on the arena (``lam_move``, 30 minutes) it
    did not: 0.336 against 0.358 and 0.327 (two seeds), the codes still the camera's move
    (``docs/results/lam``)."""
    motion_readout: bool = False
    """The encoder's head also reads, per shift s of the cost volume, the spatial mean and max
    of cost(0) - cost(s): how much better s explains x_{t+1} than "nothing moved", over the
    whole frame (a camera move) and at its best cell (a sprite's move). Parameter-free; without
    it the encoder's convolutions must first learn that comparison, and until they do the codes
    carry no motion. On a sprite world, trained on the true actions, an encoder without it still
    named few moves after 300 steps, one with it nearly all after 250, while a decoder given
    the true actions used them within 100: the encoder is the slow half."""
    encoder_frames: bool = True
    """The encoder reads x_t and x_{t+1} themselves, besides their difference and the cost
    volume. false: only the change, so the code cannot start out describing the scene (which
    the decoder sees anyway) instead of what moved. It helped on a sprite world, not on the
    arena (fewer codes in use there)."""
    context: int = 0
    """Past frames x_{t-c..t-1} the decoder also sees (0: x_t alone). Things that move on their
    own (the arena's discs) are then predictable from their last move, so the code's few bits
    are not spent on them. The decoder reads the past frames and, with ``motion_radius`` > 0,
    the cost volume of the last move (x_t against x_{t-1} shifted), which its warp can
    repeat. The encoder stays a function of the pair alone, so labelling a store is unchanged.
    On the arena the decoder then predicts far more, but the codes carry less of the actions:
    the player's move is also predictable from its last one."""
    still_reference: bool = False
    """The encoder's output is taken relative to its output for the still pair (x_t, x_t):
    f(x_t, x_{t+1}) - f(x_t, x_t) + bias, both run in one batch (1.2x the step time). Where
    consecutive frames differ in a few pixels (Breakout: 0.3% of them, the paddle and the
    ball) the plain output varies across pairs by about 1% of its size, the rest being the
    scene, so every pair starts on one code and stays there; relative to the still pair the
    scene cancels exactly, and a pair where nothing changed gets the code the bias names
    (with 3 FSQ levels on a channel, its middle: "no move"). On a synthetic paddle store it
    took the test NMI from 0.000 (one code) to 0.528 in 300 steps; on Breakout from one code
    to codes that tell whether the paddle moved, not which way (``docs/results/lam``)."""
    norm_groups: int = 8
    image_channels: int = 3

    def validate(self) -> LAMConfig:
        if self.quantizer not in QUANTIZERS:
            raise ConfigError(f"model.quantizer={self.quantizer!r}; choose fsq or vq")
        if self.num_codes < 2:
            raise ConfigError(f"model.num_codes={self.num_codes} must be >= 2")
        if self.quantizer == "fsq" and math.prod(self.fsq_levels) != self.num_codes:
            raise ConfigError(
                f"model.fsq_levels={list(self.fsq_levels)} give {math.prod(self.fsq_levels)} "
                f"codes but model.num_codes={self.num_codes}; e.g. 8 = [2,2,2], 6 = [3,2]"
            )
        if self.warp and self.motion_radius < 1:
            raise ConfigError("model.warp=true needs model.motion_radius >= 1 (its shifts)")
        if self.displacement and (not self.warp or self.latent_dim < 2):
            raise ConfigError(
                "model.displacement needs model.warp=true and a code of >= 2 channels"
            )
        if self.move_gate and not self.displacement:
            raise ConfigError("model.move_gate=true needs model.displacement > 0 (its move)")
        if self.context < 0:
            raise ConfigError(f"model.context={self.context} must be >= 0")
        if self.patch not in (1, 2, 4, 8) or self.width < 1 or self.blocks < 1 or self.down < 0:
            raise ConfigError("model.patch must be 1, 2, 4 or 8; width, blocks >= 1; down >= 0")
        return self

    @property
    def motion_shifts(self) -> int:
        return (2 * self.motion_radius + 1) ** 2

    @property
    def latent_dim(self) -> int:
        return len(self.fsq_levels) if self.quantizer == "fsq" else self.code_dim


@dataclass
class LAMLossConfig:
    l2: float = 1.0
    l1: float = 0.0
    commitment: float = 0.25
    """vq: beta, the weight of the commitment loss (VQ-VAE's 0.25)."""
    codebook: float = 1.0
    """vq: weight of the codebook loss."""
    usage: float = 0.05
    """Weight of the code-usage (entropy) loss: mean per-pair entropy of the soft code
    assignment minus the entropy of the batch's average assignment (MAGVIT-2's LFQ entropy
    loss), relative to the copy baseline's error under the reconstruction loss,
    l2 |x_{t+1} - x_t|^2 + l1 |x_{t+1} - x_t|_1 (so its pull is the same
    share of the reconstruction signal whether frames change a lot or a little). Without it
    the codes collapse early: before the decoder reads the action, a code that varies is only
    noise to it, so the encoder sends one code for every pair. Too large, it wins over
    reconstruction and spreads the codes at random (no agreement with the true actions)."""
    temperature: float = 0.1
    """Soft assignment p(k | pair) = softmax(-|soft code - code_k|^2 / temperature)."""
