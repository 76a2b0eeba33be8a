"""Latent action model objective: ``loss, logs = objective(model, batch)``.

    L = l2 |x_{t+1} - x^_{t+1}|^2 + l1 |x_{t+1} - x^_{t+1}|_1
        + (vq) |sg(z) - e|^2 + beta |z - sg(e)|^2          (codebook, commitment)
        + usage C (E_pairs H(p(k | pair)) - H(E_pairs p(k | pair)))
    where C = l2 |x_{t+1} - x_t|^2 + l1 |x_{t+1} - x_t|_1, the copy baseline's error

Logged against collapse (the LAM's failure mode: one code for everything, so the decoder
learns the average change and the action says nothing):
    usage_entropy   entropy of the batch's code histogram / log K (1: all codes equally used)
    perplexity      exp(entropy): the effective number of codes in use
    gain            1 - mse / mse of the copy baseline (x^_{t+1} = x_t): how much of the change
                    between frames the action explains, beyond "nothing moves"

Batch: ``frames`` uint8 (B, c + 2, H, W, 3): clips x_{t-c..t+1}, the pair (x_t, x_{t+1}) last
and the decoder's ``context`` c past frames before it (c = 0: pairs).
Dimension legend: B batch, H W frame, K num_codes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from farsight.lam_config import LAMLossConfig
from farsight.models.autoencoder import frames_to_images


def unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module"):
        model = model.module
    return model


def code_usage(index: Tensor, num_codes: int) -> tuple[Tensor, Tensor]:
    """(normalised entropy in [0, 1], perplexity) of the histogram of ``index`` (any shape)."""
    counts = torch.bincount(index.flatten(), minlength=num_codes).float()
    p = counts / counts.sum().clamp_min(1.0)
    entropy = -(p * p.clamp_min(1e-12).log()).sum()
    return entropy / math.log(num_codes), entropy.exp()


def pair_images(frames: Tensor, context: int = 0) -> tuple[Tensor, Tensor, Tensor | None]:
    """uint8 (B, >= c + 2, H, W, 3) -> x_t, x_{t+1} as (B, 3, H, W) floats in [-1, 1] (the last
    two frames) and the ``context`` c frames before them (B, c, 3, H, W), or None for c = 0."""
    if frames.ndim != 5 or frames.shape[1] < 2 + context:
        raise ValueError(
            f"LAM batches hold clips of {context + 2} frames (B, {context + 2}, H, W, 3), got "
            f"{tuple(frames.shape)}"
        )
    images = frames_to_images(frames[:, -(context + 2) :])
    past = images[:, :context] if context else None
    return images[:, -2], images[:, -1], past


class LAMObjective:
    def __init__(self, cfg: LAMLossConfig | None = None):
        self.cfg = cfg or LAMLossConfig()

    def __call__(self, model: nn.Module, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.cfg
        x, x_next, past = pair_images(batch["frames"], unwrap(model).context)
        out = model(x, x_next, past)
        error = out.pred.float() - x_next
        mse = error.pow(2).mean()
        loss = cfg.l2 * mse
        logs: dict[str, Tensor] = {"mse": mse}
        if cfg.l1:
            logs["l1"] = error.abs().mean()
            loss = loss + cfg.l1 * logs["l1"]
        if out.codeword is not None:
            z = torch.nn.functional.normalize(out.pre.float(), dim=-1)
            logs["codebook"] = (z.detach() - out.codeword).pow(2).sum(-1).mean()
            logs["commitment"] = (z - out.codeword.detach()).pow(2).sum(-1).mean()
            loss = loss + cfg.codebook * logs["codebook"] + cfg.commitment * logs["commitment"]
        copy = (x - x_next).pow(2).mean()
        if cfg.usage:
            # the pull is a share of the copy baseline's error under the reconstruction loss used
            scale = cfg.l2 * copy + cfg.l1 * (x - x_next).abs().mean()
            lam = unwrap(model)
            dist = torch.cdist(out.soft.float(), lam.codes().float()).pow(2)  # (B, K)
            p = torch.softmax(-dist / cfg.temperature, dim=-1)
            per_pair = -(p * p.clamp_min(1e-12).log()).sum(-1).mean()
            mean_p = p.mean(0)
            batch_entropy = -(mean_p * mean_p.clamp_min(1e-12).log()).sum()
            logs["usage_loss"] = per_pair - batch_entropy
            loss = loss + cfg.usage * scale.detach() * logs["usage_loss"]
        logs["gain"] = 1.0 - mse.detach() / copy.clamp_min(1e-8)
        entropy, perplexity = code_usage(out.index, unwrap(model).num_codes)
        logs["usage_entropy"], logs["perplexity"] = entropy, perplexity
        return loss, logs
