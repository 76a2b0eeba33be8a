"""Deterministic few-step samplers: one denoising row of a schedule, as plain functions.

A row takes the frames of a chunk from their current levels ``cur`` to the next ones ``nxt``
(both (T,), rows of a level matrix, see ``schedules.py``); frames with ``cur == nxt`` are left
as they are. The model enters only through ``predict(x, tau, target) -> head-1 output`` (v or
x0), so the same step serves the cached and the uncached paths, any context policy and any
objective.

Samplers, over the schedule of ``farsight.diffusion`` (x = alpha x0 + sigma eps):

    ddim    x' = alpha(nxt) x0_hat + sigma(nxt) eps_hat: re-noise the clean estimate to the next
            level along the estimated noise (deterministic DDIM, eta = 0).
    euler   x' = x + (s(nxt) - s(cur)) v_hat, s the schedule's time variable (tau for linear, pi/2
            tau for cosine), v_hat = dx/ds. For the linear (rectified flow) schedule this is
            exactly ddim; for cosine it is the first-order ODE step instead of the exact one.
            A step to tau = 0 returns x0_hat (as every sampler here does).
    heun    euler, then the velocity at the end point averaged in (2 model calls per step, one
            for the last step to tau = 0, as in EDM).

Dimension legend: B batch, T frames in the call, C H W latent channels and grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from farsight import diffusion
from farsight.sampling.config import SAMPLERS

Predict = Callable[[Tensor, Tensor, float], Tensor]
"""predict(x (B, T, C, H, W), tau (B, T), target level) -> head-1 output (B, T, C, H, W)."""


def schedule_time(tau: Tensor, schedule: str) -> Tensor:
    """The variable s in which ``diffusion.velocity`` is d x / d s."""
    if schedule == "linear":
        return tau
    if schedule == "cosine":
        return tau * (math.pi / 2)
    raise ValueError(f"unknown schedule {schedule!r}")


def clean_and_noise(
    pred: Tensor, x: Tensor, tau: Tensor, prediction: str, schedule: str
) -> tuple[Tensor, Tensor]:
    """Head 1's output at x (level tau) -> (x0_hat, eps_hat), consistent with x:
    alpha x0_hat + sigma eps_hat = x. Never called at tau = 0 (a finished frame is not stepped)."""
    if prediction == "v":
        return (
            diffusion.x0_from_v(x, pred, tau, schedule),
            diffusion.eps_from_v(x, pred, tau, schedule),
        )
    if prediction == "x0":
        alpha, sigma = diffusion.alpha_sigma(tau, schedule)
        eps = (x - diffusion.per_frame(alpha, x) * pred) / diffusion.per_frame(
            sigma.clamp_min(1e-4), x
        )
        return pred, eps
    raise ValueError(f"unknown prediction {prediction!r}")


def frame_mask(mask: Tensor, like: Tensor) -> Tensor:
    """Boolean (B, T) -> broadcastable against ``like`` (B, T, ...), still boolean."""
    return mask.reshape(*mask.shape, *([1] * (like.dim() - mask.dim())))


def ddim_step(x0_hat: Tensor, eps_hat: Tensor, nxt: Tensor, schedule: str) -> Tensor:
    return diffusion.add_noise(x0_hat, eps_hat, nxt, schedule)


def euler_step(
    x: Tensor, x0_hat: Tensor, eps_hat: Tensor, cur: Tensor, nxt: Tensor, schedule: str
) -> Tensor:
    ds = schedule_time(nxt, schedule) - schedule_time(cur, schedule)
    return x + diffusion.per_frame(ds, x) * diffusion.velocity(x0_hat, eps_hat, cur, schedule)


def denoise_row(
    predict: Predict,
    x: Tensor,
    cur: Tensor,
    nxt: Tensor,
    *,
    sampler: str = "ddim",
    prediction: str = "v",
    schedule: str = "linear",
) -> Tensor:
    """One row of a schedule: x (B, T, C, H, W) at levels cur (T,) -> levels nxt (T,).

    ``cur`` and ``nxt`` are rows of a level matrix, shared by the batch and kept on the host so
    that deciding which frames move costs no device sync. Frames that do not move (cur == nxt)
    keep their value but are still shown to the model at their level (later frames attend to
    them). The ``target`` handed to ``predict`` is the level of the cleanest moving frame: the
    one nearest the context, which a ``dynamic`` context must never be noisier than.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r}; expected one of {', '.join(SAMPLERS)}")
    cur, nxt = cur.detach().cpu().float(), nxt.detach().cpu().float()
    moving = cur > nxt
    if not bool(moving.any()):
        return x
    batch = x.shape[0]

    def on_device(row: Tensor) -> Tensor:
        return row.to(x.device).unsqueeze(0).expand(batch, -1)

    tau, tau_next, move = on_device(cur), on_device(nxt), on_device(moving)
    x0_hat, eps_hat = clean_and_noise(
        predict(x, tau, float(cur[moving].min())), x, tau, prediction, schedule
    )
    if sampler == "ddim":
        stepped = ddim_step(x0_hat, eps_hat, tau_next, schedule)
    else:
        stepped = euler_step(x, x0_hat, eps_hat, tau, tau_next, schedule)
        # A step that ends at tau = 0 lands on the clean estimate itself (for the linear schedule
        # that is what euler gives anyway; for cosine a first-order step would overshoot it).
        stepped = torch.where(frame_mask(on_device(nxt == 0), x), x0_hat, stepped)
        # Heun's correction where the step does not end at tau = 0.
        correct = moving & (nxt > 0)
        if sampler == "heun" and bool(correct.any()):
            level = on_device(torch.where(correct, nxt, cur))
            fix = frame_mask(on_device(correct), x)
            mid = torch.where(fix, stepped, x)
            pred_mid = predict(mid, level, float(nxt[correct].min()))
            x0_mid, eps_mid = clean_and_noise(pred_mid, mid, level, prediction, schedule)
            ds = schedule_time(tau_next, schedule) - schedule_time(tau, schedule)
            v_start = diffusion.velocity(x0_hat, eps_hat, tau, schedule)
            v_end = diffusion.velocity(x0_mid, eps_mid, level, schedule)
            heun = x + diffusion.per_frame(ds, x) * 0.5 * (v_start + v_end)
            stepped = torch.where(fix, heun, stepped)
    return torch.where(frame_mask(move, x), stepped, x)
