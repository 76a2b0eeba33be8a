"""Convolutional frame autoencoder: a frame -> a spatial latent grid -> the frame.

Two latent kinds share one network:
- ``continuous`` (diffusion path): the encoder gives a mean (and, for a small-KL VAE, a log
  variance); the objective supplies any noise (``eps``) or fade (``LatentFade``), the module
  only applies it.
- ``fsq`` (Genie path): the encoder gives a pre-quantization latent with one channel per FSQ
  level; FSQ bounds and rounds it to codes; indices <-> codes both ways.

The network: optional pixel-unshuffle stem (space-to-depth by ``patch``: the cheap way to start
at lower resolution on a CPU; patch = factor runs everything at the latent resolution), ResNet
blocks with GroupNorm at each resolution, stride-2 convolutions between them, optional
self-attention at the bottleneck, a mirrored decoder with nearest-neighbour upsampling, and an
optional linear space-to-channel shortcut around both (``shortcut``).

The latent statistics (``latent_shift``, ``latent_scale``: buffers, saved with the weights)
are estimated from data after training; ``normalize`` maps raw latents to roughly unit
variance, which is what the latent cache holds and what diffusion models want.

Dimensions (legend):
    B batch, H W frame size, h w latent grid (H / factor), C latent channels,
    D width of a stage, N = h * w tokens at the bottleneck, k faded directions.
    frames  (B, H, W, 3) uint8 (the store's layout)
    images  (B, 3, H, W) float in [-1, 1] (what the network sees)
    latents (B, C, h, w) float
    indices (B, h, w) int64 (FSQ only)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from farsight.autoencoder_config import AutoencoderConfig
from farsight.models.fsq import FSQ


@dataclass
class LatentFade:
    """A fade of each latent, drawn by the objective (see ``fade_latents``)."""

    directions: Tensor
    """(B, C, k) orthonormal directions in channel space."""
    keep: Tensor
    """(B, k) share of the latent's spatial variation along each direction that is kept."""
    blur: Tensor
    """(B,) weight of a 2 x 2 average-pooled copy blended in."""


def fade_latents(latents: Tensor, fade: LatentFade) -> Tensor:
    """latents (B, C, h, w) faded: each one's variation about its spatial mean shrunk along
    ``fade.directions``, then blended towards a 2 x 2 average-pooled copy of itself.

    A dynamics model's rollouts drift to latents like these: they lose some components of the
    variation (the parts of the next frame it cannot predict average away) and detail, in
    combinations the encoder never produces. A decoder trained only on encoder outputs may
    render them as coloured noise; trained on faded latents with the true frame as the target,
    it renders a faded, blurred frame instead."""
    h, w = latents.shape[-2:]
    centre = latents.mean(dim=(2, 3), keepdim=True)
    dev = rearrange(latents - centre, "b c h w -> b (h w) c")
    along = dev @ fade.directions  # (B, N, k)
    dev = dev - (along * (1 - fade.keep).unsqueeze(1)) @ fade.directions.transpose(1, 2)
    faded = rearrange(dev, "b (h w) c -> b c h w", h=h) + centre
    pooled = F.interpolate(F.avg_pool2d(faded, 2, ceil_mode=True), size=(h, w), mode="nearest")
    blur = fade.blur.view(-1, 1, 1, 1).to(faded.dtype)
    return (1 - blur) * faded + blur * pooled


@dataclass
class AutoencoderOutput:
    recon: Tensor
    """(B, 3, H, W) reconstruction in [-1, 1] (not clamped)."""
    mean: Tensor
    """(B, C, h, w) encoder output: the continuous mean or the FSQ pre-quantization latent."""
    latent: Tensor
    """(B, C, h, w) what the decoder saw: mean (+ noise) or FSQ codes."""
    logvar: Tensor | None = field(default=None)
    """(B, C, h, w) for the VAE."""


def groups_for(channels: int, groups: int) -> int:
    """The largest group count <= ``groups`` that divides ``channels`` (tiny test models)."""
    return math.gcd(channels, groups)


class ResBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups_for(dim_in, groups), dim_in)
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups_for(dim_out, groups), dim_out)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, padding=1)
        self.skip = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Global self-attention over the bottleneck grid: lets distant objects share context."""

    def __init__(self, dim: int, heads: int, groups: int):
        super().__init__()
        self.heads = math.gcd(heads, dim)
        self.norm = nn.GroupNorm(groups_for(dim, groups), dim)
        self.qkv = nn.Conv2d(dim, 3 * dim, 1)
        self.out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        _, _, h, w = x.shape
        qkv = rearrange(self.qkv(self.norm(x)), "b (s k d) h w -> s b k (h w) d", s=3, k=self.heads)
        attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return x + self.out(rearrange(attended, "b k (h w) d -> b (k d) h w", h=h, w=w))


class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig, out_channels: int):
        super().__init__()
        widths, g = cfg.stage_widths(), cfg.norm_groups
        self.patch = cfg.patch
        self.stem = nn.Conv2d(cfg.image_channels * cfg.patch**2, widths[0], 3, padding=1)
        stages: list[nn.Module] = []
        dim = widths[0]
        for i, width in enumerate(widths):
            for _ in range(cfg.blocks):
                stages.append(ResBlock(dim, width, g))
                dim = width
            if i < len(widths) - 1:
                stages.append(nn.Conv2d(dim, dim, 3, stride=2, padding=1))
        self.stages = nn.Sequential(*stages)
        self.mid = nn.Sequential(
            ResBlock(dim, dim, g),
            Attention(dim, cfg.attention_heads, g) if cfg.attention else nn.Identity(),
            ResBlock(dim, dim, g),
        )
        self.norm_out = nn.GroupNorm(groups_for(dim, g), dim)
        self.conv_out = nn.Conv2d(dim, out_channels, 3, padding=1)
        self.factor = cfg.factor
        self.shortcut = (
            nn.Conv2d(cfg.image_channels * cfg.factor**2, out_channels, 1) if cfg.shortcut else None
        )

    def forward(self, images: Tensor) -> Tensor:
        x = F.pixel_unshuffle(images, self.patch) if self.patch > 1 else images
        x = self.mid(self.stages(self.stem(x)))
        latent = self.conv_out(F.silu(self.norm_out(x)))
        if self.shortcut is not None:
            latent = latent + self.shortcut(F.pixel_unshuffle(images, self.factor))
        return latent


class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        widths, g = cfg.stage_widths()[::-1], cfg.norm_groups
        self.patch = cfg.patch
        dim = widths[0]
        self.stem = nn.Conv2d(cfg.channels, dim, 3, padding=1)
        self.mid = nn.Sequential(
            ResBlock(dim, dim, g),
            Attention(dim, cfg.attention_heads, g) if cfg.attention else nn.Identity(),
            ResBlock(dim, dim, g),
        )
        stages: list[nn.Module] = []
        for i, width in enumerate(widths):
            for _ in range(cfg.blocks):
                stages.append(ResBlock(dim, width, g))
                dim = width
            if i < len(widths) - 1:
                # Narrow to the next stage's width in the upsampling conv: at twice the
                # resolution a conv at the current width would cost 4x, the largest single
                # cost of the decoder on a CPU.
                stages += [
                    nn.Upsample(scale_factor=2.0, mode="nearest"),
                    nn.Conv2d(dim, widths[i + 1], 3, padding=1),
                ]
                dim = widths[i + 1]
        self.stages = nn.Sequential(*stages)
        self.norm_out = nn.GroupNorm(groups_for(dim, g), dim)
        self.conv_out = nn.Conv2d(dim, cfg.image_channels * cfg.patch**2, 3, padding=1)
        self.factor = cfg.factor
        self.shortcut = (
            nn.Conv2d(cfg.channels, cfg.image_channels * cfg.factor**2, 1) if cfg.shortcut else None
        )

    def forward(self, latents: Tensor) -> Tensor:
        x = self.stages(self.mid(self.stem(latents)))
        x = self.conv_out(F.silu(self.norm_out(x)))
        images = F.pixel_shuffle(x, self.patch) if self.patch > 1 else x
        if self.shortcut is not None:
            images = images + F.pixel_shuffle(self.shortcut(latents), self.factor)
        return images


class Autoencoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.cfg = cfg.validate()
        moments = 2 if cfg.variational else 1
        self.encoder = Encoder(cfg, cfg.channels * moments)
        self.decoder = Decoder(cfg)
        self.fsq = FSQ(cfg.fsq_levels) if cfg.kind == "fsq" else None
        # Raw latent -> unit scale: (z - shift) * scale. Identity until estimated from data.
        self.register_buffer("latent_shift", torch.zeros(()))
        self.register_buffer("latent_scale", torch.ones(()))

    # -- shapes --------------------------------------------------------------------------------
    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        f = self.cfg.factor
        if height % f or width % f:
            raise ValueError(f"frame {height}x{width} is not divisible by factor {f}")
        return (self.cfg.channels, height // f, width // f)

    # -- the pieces ----------------------------------------------------------------------------
    def encode(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """(B, 3, H, W) -> mean (B, C, h, w) and log variance (VAE) or None."""
        moments = self.encoder(images)
        if self.cfg.variational:
            mean, logvar = moments.chunk(2, dim=1)
            # Clamped as in LDM's DiagonalGaussian: keeps exp() finite early in training.
            return mean, logvar.clamp(-30.0, 20.0)
        return moments, None

    def quantize(self, mean: Tensor) -> Tensor:
        """Deterministic decoder input: FSQ codes, or the continuous mean itself."""
        return self.fsq(mean) if self.fsq is not None else mean

    def decode(self, latents: Tensor) -> Tensor:
        """(B, C, h, w) raw latents or FSQ codes -> (B, 3, H, W) images (not clamped)."""
        return self.decoder(latents)

    def forward(
        self, images: Tensor, eps: Tensor | None = None, fade: LatentFade | None = None
    ) -> AutoencoderOutput:
        """Reconstruct. ``eps`` (B, C, h, w), sampled by the objective, perturbs a continuous
        latent: the VAE uses it as its reparameterisation sample, the plain AE adds it as is;
        ``fade`` then fades it (``fade_latents``)."""
        mean, logvar = self.encode(images)
        if self.fsq is not None:
            if eps is not None or fade is not None:
                raise ValueError("the fsq autoencoder takes no latent noise or fade")
            latent = self.fsq(mean)
        elif eps is None:
            latent = mean
        elif logvar is not None:
            latent = mean + torch.exp(0.5 * logvar) * eps
        else:
            latent = mean + eps
        if fade is not None:
            latent = fade_latents(latent, fade)
        return AutoencoderOutput(self.decode(latent), mean, latent, logvar)

    # -- the latent cache's view ---------------------------------------------------------------
    def normalize(self, latents: Tensor) -> Tensor:
        return (latents - self.latent_shift) * self.latent_scale

    def denormalize(self, latents: Tensor) -> Tensor:
        return latents / self.latent_scale + self.latent_shift

    def encode_normalized(self, images: Tensor) -> Tensor:
        """Deterministic latents at unit scale: what the continuous latent cache holds."""
        return self.normalize(self.encode(images)[0])

    def decode_normalized(self, latents: Tensor) -> Tensor:
        """Inverse of ``encode_normalized`` up to reconstruction error (continuous kind)."""
        return self.decode(self.denormalize(latents))

    def decode_indices(self, indices: Tensor) -> Tensor:
        """(B, h, w) FSQ indices -> (B, 3, H, W) images."""
        if self.fsq is None:
            raise ValueError("decode_indices needs the fsq kind")
        return self.decode(self.fsq.indices_to_codes(indices))

    def set_latent_stats(self, shift: float, scale: float) -> None:
        self.latent_shift.fill_(shift)
        self.latent_scale.fill_(scale)


def frames_to_images(frames: Tensor) -> Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    return rearrange(frames, "... h w c -> ... c h w").float().div(127.5).sub(1.0)


def images_to_frames(images: Tensor) -> Tensor:
    """float (..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3), rounded and clamped."""
    pixels = images.float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    return rearrange(pixels, "... c h w -> ... h w c")
