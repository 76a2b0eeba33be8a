"""Diffusion maths over per-frame noise levels: pure functions, no modules, no state.

Every frame has its own noise level tau in [0, 1] (0 clean, 1 pure noise): a (B, T) tensor.
Latents are (B, T, C, H, W); per-frame coefficients broadcast over (C, H, W).

    x_tau = alpha(tau) x0 + sigma(tau) eps

    linear (rectified flow): alpha = 1 - tau,        sigma = tau
    cosine:                  alpha = cos(pi/2 tau),  sigma = sin(pi/2 tau)

The velocity v = alpha' x0 + sigma' eps, with the derivative taken in the variable that makes
alpha sigma' - sigma alpha' = 1 (tau for linear, phi = pi/2 tau for cosine). That gives
linear v = eps - x0 (the flow velocity) and cosine v = cos eps - sin x0 (Salimans & Ho), and in
both cases the exact inverses

    x0 = sigma' x_tau - sigma v,     eps = alpha v - alpha' x_tau.

Loss weighting is expressed as the weight on the squared error of the prediction itself. Since
x0 = sigma' x_tau - sigma v at fixed x_tau, an error dv is an x0 error sigma dv: a v-loss with
weight w_v equals an x0-loss with weight w_v / sigma^2.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def per_frame(coef: Tensor, like: Tensor) -> Tensor:
    """(B, T) -> broadcastable against ``like`` (B, T, ...)."""
    return coef.reshape(*coef.shape, *([1] * (like.dim() - coef.dim()))).to(like.dtype)


def alpha_sigma(tau: Tensor, schedule: str = "linear") -> tuple[Tensor, Tensor]:
    if schedule == "linear":
        return 1.0 - tau, tau
    if schedule == "cosine":
        phi = tau * (math.pi / 2)
        return torch.cos(phi), torch.sin(phi)
    raise ValueError(f"unknown schedule {schedule!r}")


def velocity_coefs(tau: Tensor, schedule: str = "linear") -> tuple[Tensor, Tensor]:
    """(alpha', sigma'): v = alpha' x0 + sigma' eps."""
    if schedule == "linear":
        return torch.full_like(tau, -1.0), torch.ones_like(tau)
    if schedule == "cosine":
        alpha, sigma = alpha_sigma(tau, schedule)
        return -sigma, alpha
    raise ValueError(f"unknown schedule {schedule!r}")


def add_noise(x0: Tensor, eps: Tensor, tau: Tensor, schedule: str = "linear") -> Tensor:
    alpha, sigma = alpha_sigma(tau, schedule)
    return per_frame(alpha, x0) * x0 + per_frame(sigma, x0) * eps


def velocity(x0: Tensor, eps: Tensor, tau: Tensor, schedule: str = "linear") -> Tensor:
    d_alpha, d_sigma = velocity_coefs(tau, schedule)
    return per_frame(d_alpha, x0) * x0 + per_frame(d_sigma, x0) * eps


def x0_from_v(x: Tensor, v: Tensor, tau: Tensor, schedule: str = "linear") -> Tensor:
    _, sigma = alpha_sigma(tau, schedule)
    _, d_sigma = velocity_coefs(tau, schedule)
    return per_frame(d_sigma, x) * x - per_frame(sigma, x) * v


def eps_from_v(x: Tensor, v: Tensor, tau: Tensor, schedule: str = "linear") -> Tensor:
    alpha, _ = alpha_sigma(tau, schedule)
    d_alpha, _ = velocity_coefs(tau, schedule)
    return per_frame(alpha, x) * v - per_frame(d_alpha, x) * x


def v_from_x0(x: Tensor, x0: Tensor, tau: Tensor, schedule: str = "linear") -> Tensor:
    """Inverse of x0_from_v; undefined at tau = 0 (sigma = 0), so sigma is clamped."""
    _, sigma = alpha_sigma(tau, schedule)
    _, d_sigma = velocity_coefs(tau, schedule)
    return (per_frame(d_sigma, x) * x - x0) / per_frame(sigma.clamp_min(1e-4), x)


def prediction_target(x0: Tensor, eps: Tensor, tau: Tensor, prediction: str, schedule: str):
    """What head 1 regresses: v or x0."""
    if prediction == "v":
        return velocity(x0, eps, tau, schedule)
    if prediction == "x0":
        return x0
    raise ValueError(f"unknown prediction {prediction!r}")


def predicted_x0(pred: Tensor, x: Tensor, tau: Tensor, prediction: str, schedule: str) -> Tensor:
    """Head 1's clean estimate, whatever it predicts."""
    if prediction == "v":
        return x0_from_v(x, pred, tau, schedule)
    if prediction == "x0":
        return pred
    raise ValueError(f"unknown prediction {prediction!r}")


def log_snr(tau: Tensor, schedule: str = "linear", eps: float = 1e-8) -> Tensor:
    alpha, sigma = alpha_sigma(tau, schedule)
    return torch.log(alpha.pow(2) + eps) - torch.log(sigma.pow(2) + eps)


def loss_weight(
    tau: Tensor,
    prediction: str,
    schedule: str = "linear",
    weighting: str = "clamped_snr",
    gamma: float = 5.0,
    floor: float = 1.0,
) -> Tensor:
    """Per-frame weight (B, T) of the squared error of the prediction.

    SNR-aware weightings are defined by their x0-equivalent weight w0(SNR) and converted to the
    prediction's own units (times sigma^2 for v, see the module docstring):

    ``min_snr``      w0 = min(SNR, gamma) (Hang et al. 2023). For v that is
                     min(alpha^2, gamma sigma^2): the cosine schedule's min(SNR, gamma)/(SNR+1).
                     It vanishes at pure noise, where a rollout's first step must guess the
                     next frame from its context alone.
    ``clamped_snr``  w0 = clamp(SNR, floor, gamma): Hang's cap on easy low-noise levels plus
                     Salimans & Ho's (2022) truncation max(SNR, 1), so high-noise levels keep
                     at least the weight of a plain x0 loss. For v: between floor sigma^2
                     and gamma sigma^2, i.e. 1 at pure noise.
    ``uniform``      plain MSE of the prediction.

    Written without divisions by sigma so tau = 0 and tau = 1 stay finite.
    """
    if weighting == "uniform":
        return torch.ones_like(tau)
    if weighting not in ("min_snr", "clamped_snr"):
        raise ValueError(f"unknown weighting {weighting!r}")
    lo = floor if weighting == "clamped_snr" else 0.0
    alpha2, sigma2 = (c.pow(2) for c in alpha_sigma(tau, schedule))
    if prediction == "v":  # clamp(SNR, lo, gamma) * sigma^2, with SNR sigma^2 = alpha^2
        return torch.minimum(torch.maximum(alpha2, lo * sigma2), gamma * sigma2)
    if prediction == "x0":  # min(SNR, gamma) without dividing by sigma^2 = 0
        return (alpha2 / torch.maximum(sigma2, alpha2 / gamma)).clamp_min(lo)
    raise ValueError(f"unknown prediction {prediction!r}")


def sample_tau(
    shape: tuple[int, ...],
    sampling: str = "uniform",
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    mean: float = 0.0,
    std: float = 1.0,
) -> Tensor:
    """Training noise levels: ``uniform`` on [0, 1) or ``logit_normal`` (SD3: sigmoid of a
    normal, which spends more samples on middle levels)."""
    if sampling == "uniform":
        return torch.rand(shape, generator=generator, device=device)
    if sampling == "logit_normal":
        return torch.sigmoid(mean + std * torch.randn(shape, generator=generator, device=device))
    raise ValueError(f"unknown tau sampling {sampling!r}")
