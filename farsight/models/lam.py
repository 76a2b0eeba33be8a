"""Latent action model (Genie's LAM): a small discrete action vocabulary learned from frame
pairs alone.

    encoder   (x_t, x_{t+1}) -> one pre-quantization vector per pair -> quantized action z_t
    decoder   (x_t, z_t) -> x_{t+1}; with ``context`` c > 0, (x_{t-c..t}, z_t) -> x_{t+1}

Against collapse (all pairs mapped to one code, or the code ignored):
- The decoder never sees x_{t+1}: its only inputs are x_t and the quantized action, a code of
  log2(num_codes) bits (3 for 8 codes). Nothing of the encoder reaches it but that code (no
  skip connections around the bottleneck), so it cannot copy the next frame; the most useful
  thing 3 bits can say about the next frame is how it differs from this one, which in a game
  is mostly what the player did.
- The decoder predicts the *change* x_{t+1} - x_t (``residual``): a static frame costs
  nothing to predict, so the loss is all about motion.
- The objective logs the usage entropy of the codes per batch (``farsight/objectives/lam.py``).

Quantizers (``quantizer``):
    fsq   FSQ over ``fsq_levels`` (default 2 x 2 x 2 = 8 codes: three binary channels, no
          ordinal structure between codes; no codebook, no dead codes)
    vq    a codebook of ``num_codes`` unit vectors, nearest by cosine, straight-through
          gradient; the objective adds the codebook and commitment losses

The module is a pure function of its inputs: no sampling, no losses.

Dimension legend:
    B batch, H W frame size, p patch (pixel-unshuffle factor), h w = H / p, W / p,
    D width, Dz pre-quantization width (len(fsq_levels) or code_dim), K num_codes.
    frames  (B, 3, H, W) float in [-1, 1]
    past    (B, c, 3, H, W) x_{t-c..t-1}, oldest first (``context`` c > 0 only)
    pre     (B, Dz) encoder output
    code    (B, Dz) quantized action (what the decoder sees)
    index   (B,) int64 in [0, K)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from farsight.lam_config import LAMConfig
from farsight.models.autoencoder import ResBlock, groups_for
from farsight.models.fsq import FSQ

GATE_CELLS = 4
"""``move_gate`` reads the decoder's last features average-pooled to GATE_CELLS x GATE_CELLS."""


def shifts(radius: int, step: int) -> list[tuple[int, int]]:
    """The (dy, dx) pixel shifts of the cost volume and the warp, row-major; the middle one is
    (0, 0)."""
    r = range(-radius, radius + 1)
    return [(dy * step, dx * step) for dy in r for dx in r]


@dataclass
class LAMOutput:
    pred: Tensor
    """(B, 3, H, W) predicted x_{t+1} in [-1, 1] (not clamped)."""
    pre: Tensor
    """(B, Dz) encoder output before quantization."""
    code: Tensor
    """(B, Dz) quantized action, straight-through gradient to ``pre``."""
    index: Tensor
    """(B,) int64 latent action."""
    soft: Tensor
    """(B, Dz) the code before rounding / snapping, in the codes' space (FSQ: bounded and
    scaled; VQ: the unit-norm encoder output): the objective's soft code assignments."""
    codeword: Tensor | None = None
    """vq: (B, Dz) the selected codebook vector with its own gradient (codebook loss)."""


class VectorQuantizer(nn.Module):
    """Nearest of K unit-norm codebook vectors by cosine (normalised lookups keep every code
    in reach of the encoder: fewer dead codes than Euclidean VQ)."""

    def __init__(self, num_codes: int, dim: int):
        super().__init__()
        self.codebook = nn.Parameter(torch.randn(num_codes, dim))

    def vectors(self) -> Tensor:
        return F.normalize(self.codebook, dim=-1)

    def forward(self, pre: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """pre (B, Dz) -> (code with straight-through gradient, codeword, index)."""
        z = F.normalize(pre.float(), dim=-1)
        book = self.vectors()
        index = (z @ book.t()).argmax(dim=-1)
        codeword = book[index]
        return z + (codeword - z).detach(), codeword, index

    def lookup(self, index: Tensor) -> Tensor:
        return self.vectors()[index]


def cost_volume(frames: Tensor, next_frames: Tensor, radius: int, step: int, patch: int) -> Tensor:
    """Local matching costs, as optical-flow networks' correlation layers: for each shift s in
    step * [-radius, radius]^2, |x_{t+1} - x_t shifted by s| averaged over colour and over each
    patch x patch cell -> (B, S, H / patch, W / patch). Where the content moved by s the cost
    drops to ~0, so a translation of the whole view (a camera following the player) or of one
    sprite (a paddle) becomes readable by a linear layer instead of having to be learned as
    a correlation of two textures. A fixed, parameter-free feature of the pair."""
    costs = []
    for dy, dx in shifts(radius, step):
        moved = torch.roll(frames, shifts=(dy, dx), dims=(2, 3))
        costs.append((next_frames - moved).abs().mean(1, keepdim=True))
    volume = torch.cat(costs, dim=1)
    return F.avg_pool2d(volume, patch) if patch > 1 else volume


class LAMEncoder(nn.Module):
    """(x_t, x_{t+1}, x_{t+1} - x_t, cost volume) -> (B, Dz). The explicit difference and the
    matching costs make motion the easiest thing to read off. With ``still_reference`` the
    output is taken relative to the still pair (x_t, x_t)."""

    def __init__(self, cfg: LAMConfig):
        super().__init__()
        d, g, p = cfg.width, cfg.norm_groups, cfg.patch
        self.patch = p
        self.radius, self.step = cfg.motion_radius, cfg.motion_step
        self.frames = cfg.encoder_frames
        images = 3 if self.frames else 1
        stem_in = images * cfg.image_channels * p * p + (cfg.motion_shifts if self.radius else 0)
        layers: list[nn.Module] = [nn.Conv2d(stem_in, d, 3, padding=1)]
        for i in range(cfg.down + 1):
            layers += [ResBlock(d, d, g) for _ in range(cfg.blocks)]
            if i < cfg.down:
                layers.append(nn.Conv2d(d, d, 3, stride=2, padding=1))
        self.body = nn.Sequential(*layers)
        self.norm = nn.GroupNorm(groups_for(d, g), d)
        self.readout = cfg.motion_readout and self.radius > 0
        readout = 2 * cfg.motion_shifts if self.readout else 0
        self.head = nn.Sequential(nn.Linear(2 * d + readout, d), nn.SiLU())
        self.out = nn.Linear(d, cfg.latent_dim)
        self.still_reference = cfg.still_reference

    def forward(self, frames: Tensor, next_frames: Tensor) -> Tensor:
        if not self.still_reference:
            return self.out(self.features(frames, next_frames))
        # The pair's features less those of (x_t, x_t), in one batch: what the scene alone
        # puts into the output cancels, and a pair where nothing changed gets the bias.
        both = self.features(torch.cat([frames, frames]), torch.cat([next_frames, frames]))
        pair, still = both.chunk(2)
        return F.linear(pair - still, self.out.weight) + self.out.bias

    def features(self, frames: Tensor, next_frames: Tensor) -> Tensor:
        """(B, D) the head's features of each pair, before the output layer."""
        x = next_frames - frames
        if self.frames:
            x = torch.cat([frames, next_frames, x], dim=1)
        x = F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x
        if self.radius:
            costs = cost_volume(frames, next_frames, self.radius, self.step, self.patch)
            x = torch.cat([x, costs], dim=1)
        h = F.silu(self.norm(self.body(x)))
        # One action per pair: pool over space, mean and max. The mean reads motion of the
        # whole frame (a camera following the player), the max a small sprite's (a paddle),
        # which a mean alone dilutes until every pair looks the same.
        pooled = [h.mean(dim=(2, 3)), h.amax(dim=(2, 3))]
        if self.readout:
            middle = costs.shape[1] // 2  # the (0, 0) shift
            better = costs[:, middle : middle + 1] - costs
            pooled += [better.mean(dim=(2, 3)), better.amax(dim=(2, 3))]
        return self.head(torch.cat(pooled, dim=1).to(h.dtype))


class FiLMResBlock(nn.Module):
    """ResBlock whose second norm is scaled and shifted by the action (FiLM)."""

    def __init__(self, dim: int, cond_dim: int, groups: int):
        super().__init__()
        self.block = ResBlock(dim, dim, groups)
        # Default (random) init, not zero: a decoder that starts blind to the action sends the
        # encoder no gradient through the code, and the codes never start to differ.
        self.film = nn.Linear(cond_dim, 2 * dim)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        b = self.block
        h = b.conv1(F.silu(b.norm1(x)))
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = b.conv2(F.silu(b.norm2(h) * (1 + scale) + shift))
        return x + h


class LAMDecoder(nn.Module):
    """(x_t, code[, past frames]) -> x_{t+1}. Sees nothing of x_{t+1} but the code."""

    def __init__(self, cfg: LAMConfig):
        super().__init__()
        d, g, p = cfg.width, cfg.norm_groups, cfg.patch
        self.patch, self.residual, self.context = p, cfg.residual, cfg.context
        self.radius, self.step = cfg.motion_radius, cfg.motion_step
        self.cond = nn.Sequential(nn.Linear(cfg.latent_dim, d), nn.SiLU(), nn.Linear(d, d))
        stem_in = (1 + cfg.context) * cfg.image_channels * p * p
        if cfg.context and cfg.motion_radius:
            stem_in += cfg.motion_shifts  # the last move's cost volume
        self.stem = nn.Conv2d(stem_in, d, 3, padding=1)
        # Twice the encoder's blocks at one resolution: the decoder must move content by the
        # action (a camera shift is a translation of the whole frame).
        self.blocks = nn.ModuleList(FiLMResBlock(d, d, g) for _ in range(2 * cfg.blocks))
        self.norm = nn.GroupNorm(groups_for(d, g), d)
        self.out = nn.Conv2d(d, cfg.image_channels * p * p, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # starts as "nothing changes" (residual) / grey
        nn.init.zeros_(self.out.bias)
        self.shifts = shifts(cfg.motion_radius, cfg.motion_step) if cfg.warp else []
        if self.shifts:
            self.warp = nn.Conv2d(d, len(self.shifts), 3, padding=1)
            # The action also votes for shifts directly, everywhere in the frame: the short
            # path from the code to "the view moves left". Without it the decoder finds the
            # action-blind optimum first (blur x_t by mixing all shifts) and ignores the code.
            self.warp_action = nn.Linear(d, len(self.shifts))
            nn.init.zeros_(self.warp_action.weight)
            nn.init.zeros_(self.warp_action.bias)
            self.displacement = cfg.displacement
            if self.displacement:
                # code channels 0, 1 -> a move in pixels; its vote -sharpness |s - move|^2 / step^2
                self.move = nn.Parameter(cfg.displacement * torch.eye(2, cfg.latent_dim))
                self.sharpness = nn.Parameter(torch.tensor(1.0))
                self.register_buffer(
                    "shift_grid", torch.tensor(self.shifts, dtype=torch.float32), persistent=False
                )
                self.move_gate = None
                if cfg.move_gate:
                    # (dy, dx) gate logits from the decoder's last features on a 4 x 4 grid of
                    # cells (where in the view the walls and the actor are, and the code: at a
                    # wall, which way the actor goes decides whether the view follows); zero
                    # init: a gate of 1.
                    self.move_gate = nn.Linear(d * GATE_CELLS**2, 2)
                    nn.init.zeros_(self.move_gate.weight)
                    nn.init.zeros_(self.move_gate.bias)
            nn.init.zeros_(self.warp.weight)
            with torch.no_grad():  # start as a copy of x_t: all weight on the (0, 0) shift
                self.warp.bias.zero_()
                self.warp.bias[len(self.shifts) // 2] = 4.0  # p ~ 0.5: others still learn

    def forward(self, frames: Tensor, code: Tensor, past: Tensor | None = None) -> Tensor:
        cond = self.cond(code.to(self.stem.weight.dtype))
        x = frames
        if self.context:
            if past is None or past.shape[1] != self.context:
                got = None if past is None else past.shape[1]
                raise ValueError(f"the decoder reads {self.context} past frames, got {got}")
            x = torch.cat([past.flatten(1, 2), frames], dim=1)
        x = F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x
        if self.context and self.radius:
            last = cost_volume(past[:, -1], frames, self.radius, self.step, self.patch)
            x = torch.cat([x, last], dim=1)
        h = self.stem(x)
        for block in self.blocks:
            h = block(h, cond)
        h = F.silu(self.norm(h))
        out = self.out(h)
        out = F.pixel_shuffle(out, self.patch) if self.patch > 1 else out
        if self.shifts:
            # (B, S, h, w) mixture weights per cell, to pixels; frames moved by each shift.
            vote = self.warp_action(cond)
            if self.displacement:
                move = code.float() @ self.move.t()  # (B, 2) pixels
                if self.move_gate is not None:
                    cells = rearrange(F.adaptive_avg_pool2d(h, GATE_CELLS), "b d h w -> b (d h w)")
                    move = move * 2 * torch.sigmoid(self.move_gate(cells).float())
                gap = (self.shift_grid[None] - move[:, None]).pow(2).sum(-1)  # (B, S)
                vote = vote + (-self.sharpness * gap / self.step**2).to(vote.dtype)
            logits = self.warp(h) + vote[:, :, None, None]
            weights = torch.softmax(logits.float(), dim=1)
            weights = F.interpolate(weights, scale_factor=float(self.patch), mode="nearest")
            moved = torch.stack(
                [torch.roll(frames, shifts=s, dims=(2, 3)) for s in self.shifts], dim=1
            )
            base = torch.einsum("bshw,bschw->bchw", weights, moved.float())
            return base.to(out.dtype) + out
        return frames + out if self.residual else out


def _fsq_threshold(levels: int, eps: float) -> float:
    """The z where FSQ's bound crosses its middle rounding boundary (0 for odd level counts)."""
    if levels % 2:
        return 0.0
    half = (levels - 1) * (1 - eps) / 2
    return -math.tan(0.5 / half)


class LatentActionModel(nn.Module):
    def __init__(self, cfg: LAMConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.encoder = LAMEncoder(cfg)
        self.decoder = LAMDecoder(cfg)
        self.fsq = FSQ(cfg.fsq_levels) if cfg.quantizer == "fsq" else None
        self.vq = VectorQuantizer(cfg.num_codes, cfg.code_dim) if cfg.quantizer == "vq" else None
        if self.fsq is not None:
            # FSQ shifts even level counts by atan-like offsets: for 2 levels the rounding
            # threshold sits at z = -tan(1) ~ -1.56, so an encoder starting near 0 gives every
            # pair the same code. Start the encoder's output on the thresholds instead.
            with torch.no_grad():
                thresholds = [_fsq_threshold(level, self.fsq.eps) for level in cfg.fsq_levels]
                self.encoder.out.bias.copy_(torch.tensor(thresholds))

    @property
    def num_codes(self) -> int:
        return self.cfg.num_codes

    def quantize(self, pre: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """pre (B, Dz) -> code (B, Dz), index (B,), codeword (vq) or None."""
        if self.fsq is not None:
            code = self.fsq(pre)
            return code, self.fsq.codes_to_indices(code), None
        code, codeword, index = self.vq(pre)
        return code, index, codeword

    def soft_code(self, pre: Tensor) -> Tensor:
        """pre (B, Dz) -> the unrounded code in the codes' space (same scale as ``code_of``)."""
        if self.fsq is not None:
            half = self.fsq._per_channel(self.fsq._levels // 2, pre)
            return self.fsq.bound(pre.float()) / half
        return F.normalize(pre.float(), dim=-1)

    def codes(self) -> Tensor:
        """Every code of the vocabulary, (K, Dz)."""
        return self.code_of(torch.arange(self.num_codes, device=self.encoder.out.weight.device))

    def code_of(self, index: Tensor) -> Tensor:
        """Latent action indices (B,) -> codes (B, Dz): drive the decoder with a chosen action."""
        if self.fsq is not None:
            return self.fsq.indices_to_codes(index)
        return self.vq.lookup(index)

    def index_of(self, code: Tensor) -> Tensor:
        """Quantized codes (B, Dz) -> indices (B,): the inverse of ``code_of``."""
        if self.fsq is not None:
            return self.fsq.codes_to_indices(code)
        return self.vq(code)[2]

    @property
    def context(self) -> int:
        return self.cfg.context

    def decode(self, frames: Tensor, code: Tensor, past: Tensor | None = None) -> Tensor:
        return self.decoder(frames, code, past)

    def forward(self, frames: Tensor, next_frames: Tensor, past: Tensor | None = None) -> LAMOutput:
        """frames, next_frames (B, 3, H, W) in [-1, 1] (and ``past`` (B, c, 3, H, W) with
        ``context`` c) -> the action and the predicted x_{t+1}."""
        pre = self.encoder(frames, next_frames)
        code, index, codeword = self.quantize(pre)
        pred = self.decode(frames, code, past)
        return LAMOutput(pred, pre, code, index, self.soft_code(pre), codeword)

    @torch.no_grad()
    def infer(self, frames: Tensor, next_frames: Tensor) -> Tensor:
        """The latent action of each pair, (B,) int64 (no decoder run)."""
        return self.quantize(self.encoder(frames, next_frames))[1]
