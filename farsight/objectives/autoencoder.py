"""Reconstruction objective for the frame autoencoder: ``loss, logs = objective(model, batch)``.

    L = w1 |x - x^|_1 + w2 |x - x^|_2^2 + wg |grad x - grad x^|_1     (pixels in [-1, 1])
        + kl * KL(q(z|x) || N(0, I)) per latent element   (variational continuous kind)
        + latent_l2 * mean(z^2)               (plain continuous kind with latent noise)
        + worst * mean of the top worst_share of each frame's per-pixel |x - x^|_2^2

L2 is what PSNR measures; L1 keeps flat regions exact and edges less blurred; the image-
gradient term (finite differences along x and y) penalises soft edges directly, a sharpening
loss that needs no pretrained network (none can be downloaded here: no LPIPS, no VGG).

Latent noise is sampled here, never in the module: for the VAE ``eps`` is its
reparameterisation sample; for the plain AE it is Gaussian noise of std ``latent_noise``, made
meaningful by the ``latent_l2`` penalty (without it the encoder would just grow its latents
until the noise no longer matters). The FSQ kind takes no noise. ``latent_fade`` draws a
``LatentFade`` for a share of the batch (random orthonormal channel directions, kept shares,
a blur weight; the rest untouched), so the decoder also learns to draw the faded latents a
dynamics model's long rollouts drift to.

Batch: ``frames`` uint8 (B, H, W, 3) or (B, 1, H, W, 3) (single-frame clips).
Dimension legend: B batch, H W frame, C h w latent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from farsight.autoencoder_config import AutoencoderLossConfig
from farsight.config import ConfigError
from farsight.models.autoencoder import LatentFade, frames_to_images
from farsight.objectives.worst import worst_share_mean


def unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module"):
        model = model.module
    return model


def image_gradients(images: Tensor) -> tuple[Tensor, Tensor]:
    return images[..., :, 1:] - images[..., :, :-1], images[..., 1:, :] - images[..., :-1, :]


def worst_pixels(error: Tensor, share: float) -> Tensor:
    """Mean over frames of the mean squared error of each frame's worst ``share`` of pixels
    (at least one), the colour channels summed per pixel. ``error``: (B, 3, H, W)."""
    return worst_share_mean(error.pow(2).sum(1).flatten(1), share).mean()  # over (B, H*W)


def draw_fade(
    batch: int, channels: int, directions: int, share: float, device: torch.device
) -> LatentFade:
    """A fade for ``share`` of a batch (each sample drawn on its own; the others unchanged):
    ``directions`` random orthonormal channel directions, each kept by a factor ~ U[0, 1), and
    for half of the faded samples a blur weight ~ U[0, 1)."""
    picked = torch.rand(batch, device=device) < share
    basis = torch.linalg.qr(torch.randn(batch, channels, directions, device=device))[0]
    keep = torch.rand(batch, directions, device=device)
    keep = torch.where(picked.unsqueeze(1), keep, torch.ones_like(keep))
    blurred = picked & (torch.rand(batch, device=device) < 0.5)
    blur = torch.rand(batch, device=device) * blurred
    return LatentFade(basis, keep, blur)


class ReconstructionObjective:
    def __init__(self, cfg: AutoencoderLossConfig):
        if not 0.0 <= cfg.latent_fade <= 1.0:
            raise ConfigError(f"objective.latent_fade={cfg.latent_fade} must lie in [0, 1]")
        if not 0.0 < cfg.worst_share <= 1.0:
            raise ConfigError(f"objective.worst_share={cfg.worst_share} must lie in (0, 1]")
        if cfg.worst < 0:
            raise ConfigError(f"objective.worst={cfg.worst} must be >= 0")
        if cfg.latent_fade_directions < 1:
            raise ConfigError(
                f"objective.latent_fade_directions={cfg.latent_fade_directions} must be >= 1"
            )
        self.cfg = cfg

    def __call__(self, model: nn.Module, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.cfg
        frames = batch["frames"]
        if frames.ndim == 5:  # (B, 1, H, W, 3) single-frame clips from the clip loader
            frames = frames.flatten(0, 1)
        target = frames_to_images(frames)
        ae = unwrap(model)
        eps = None
        if ae.cfg.kind == "continuous" and (ae.cfg.variational or cfg.latent_noise > 0):
            shape = (target.shape[0], *ae.latent_shape(*target.shape[-2:]))
            eps = torch.randn(shape, device=target.device)
            if not ae.cfg.variational:
                eps = eps * cfg.latent_noise
        fade = None
        if cfg.latent_fade > 0:
            if ae.cfg.kind != "continuous":
                raise ConfigError("objective.latent_fade needs model.kind=continuous latents")
            if cfg.latent_fade_directions > ae.cfg.channels:
                raise ConfigError(
                    f"objective.latent_fade_directions={cfg.latent_fade_directions}: the "
                    f"latent has {ae.cfg.channels} channels"
                )
            fade = draw_fade(
                target.shape[0],
                ae.cfg.channels,
                cfg.latent_fade_directions,
                cfg.latent_fade,
                target.device,
            )
        out = model(target, eps, fade)  # through the (possibly DDP-wrapped) forward
        recon = out.recon.float()
        error = recon - target
        logs: dict[str, Tensor] = {}
        loss = torch.zeros((), device=target.device)
        if cfg.l1:
            logs["l1"] = error.abs().mean()
            loss = loss + cfg.l1 * logs["l1"]
        logs["mse"] = error.pow(2).mean()
        if cfg.l2:
            loss = loss + cfg.l2 * logs["mse"]
        if cfg.gradient:
            (rx, ry), (tx, ty) = image_gradients(recon), image_gradients(target)
            logs["gradient"] = 0.5 * (F.l1_loss(rx, tx) + F.l1_loss(ry, ty))
            loss = loss + cfg.gradient * logs["gradient"]
        if cfg.worst:
            logs["worst"] = worst_pixels(error, cfg.worst_share)
            loss = loss + cfg.worst * logs["worst"]
        if out.logvar is not None:
            mean, logvar = out.mean.float(), out.logvar.float()
            logs["kl"] = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
            if cfg.kl:
                loss = loss + cfg.kl * logs["kl"]
        if cfg.latent_l2 and ae.cfg.kind == "continuous":
            logs["latent_l2"] = out.mean.float().pow(2).mean()
            loss = loss + cfg.latent_l2 * logs["latent_l2"]
        logs["psnr"] = 10.0 * torch.log10(4.0 / logs["mse"].detach().clamp_min(1e-10))
        return loss, logs
