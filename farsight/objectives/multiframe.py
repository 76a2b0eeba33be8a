"""Losses shared by the denoising objectives: head 1, the far heads, the pyramid, the aux loss.

An objective decides the noise levels (that is all that differs between diffusion forcing,
next-frame and full-sequence diffusion); ``DenoisingObjective.terms`` then noises the input
frames, runs the model and computes

    L = L_1 + sum_k lambda_k L_k + mu L_aux

    L_1    head 1 at the positions the objective trains: SNR-weighted MSE of v or x0 (+ with
           ``multires``, MSE of its clean estimate on the coarser pyramid levels; with
           ``worst``, + worst x the MSE of each frame's worst share of positions)
    L_k    far head k at position t vs the clean latent of frame t + k - 1 pooled by r_k
           (+ with ``multires``, the coarser pyramid levels of the same frame)
    L_aux  far head k at position t vs head 1's clean estimate of frame t + k - 1 made at
           position t + k - 1, pooled to r_k (post, extension 1); mean over far heads
    L_obj  with ``object_maps``: the object head's maps of frame t at head 1's positions vs
           ``batch['object_maps']`` (``object_maps.py``), weight ``object_maps``

Batch keys: ``latents`` (B, Tt, C, H, W) clean, scaled; ``actions`` (B, Tt) int64, a_t taken
after frame t; optional ``input_frames`` (int: how many leading frames the model sees,
default Tt - (K_max - 1): the rest are target-only), ``valid`` (B, Tt) bool (padding) and,
for ``object_maps``, ``object_maps`` (B, Tt, K, H, W).
A target past the clip end (or on an invalid frame) is masked out of its head's loss.

Dimension legend: B batch, Tt clip frames incl. extra targets, T input frames, C H W latent,
k offset, r resolution factor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from farsight import diffusion
from farsight.config import ConfigError
from farsight.dynamics_config import HeadsConfig, ObjectiveConfig, check_objective_fits_model
from farsight.models.dynamics import previous_frames
from farsight.models.layers import pool_latents
from farsight.objectives.object_maps import object_map_error
from farsight.objectives.worst import worst_share_mean
from farsight.parallel import all_reduce_sum, is_sharded, local, unwrap


def input_frames(batch: dict, max_offset: int) -> int:
    """Frames the model sees: ``batch['input_frames']`` or all but the K_max - 1 extra ones."""
    total = batch["latents"].shape[1]
    n = int(batch.get("input_frames", total - (max_offset - 1)))
    if not 1 <= n <= total:
        raise ValueError(
            f"clip of {total} frames cannot feed {n} input frames (heads reach {max_offset - 1} "
            "frames past the input: give the clip extra target frames or set input_frames)"
        )
    return n


@dataclass
class HeadTarget:
    offset: int
    resolution: int
    target: Tensor
    """(B, T, C, H / r, W / r): at position t, clean frame t + k - 1 pooled by r."""
    mask: Tensor
    """(B, T) bool: the target frame exists (inside the clip, and valid)."""


def head_targets(
    clean: Tensor,
    offsets: tuple[int, ...],
    resolutions: tuple[int, ...],
    num_inputs: int,
    valid: Tensor | None = None,
) -> list[HeadTarget]:
    """The target of every head at every input position, with its mask."""
    b, total = clean.shape[:2]
    positions = torch.arange(num_inputs, device=clean.device)
    out = []
    for k, r in zip(offsets, resolutions, strict=True):
        frame = positions + k - 1
        inside = frame < total
        frame = frame.clamp(max=total - 1)
        mask = inside.unsqueeze(0).expand(b, -1)
        if valid is not None:
            mask = mask & valid[:, frame]
        out.append(HeadTarget(k, r, pool_latents(clean[:, frame], r), mask))
    return out


def frame_mse(pred: Tensor, target: Tensor) -> Tensor:
    """(B, T, C, h, w) -> (B, T) mean squared error per frame, in fp32."""
    return (pred.float() - target.float()).pow(2).flatten(2).mean(-1)


def motion_map(clean: Tensor) -> Tensor:
    """(B, T, C, h, w) clean latents -> (B, T, 1, h, w): how much each position changed from
    the frame before (mean absolute change over channels; 0 for the first frame), divided by
    its mean over the batch's frames that have a predecessor. No gradient flows through it."""
    change = (clean[:, 1:].float() - clean[:, :-1].float()).abs().mean(2, keepdim=True)
    change = change / change.mean().clamp_min(1e-6)
    return torch.cat([torch.zeros_like(change[:, :1]), change], dim=1).detach()


def weighted_frame_mse(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """frame_mse with a per-position weight (B, T, 1, h, w), normalised per frame so that a
    uniform weight gives frame_mse back."""
    err = (pred.float() - target.float()).pow(2)
    w = weight.expand_as(err)
    return (err * w).flatten(2).sum(-1) / w.flatten(2).sum(-1).clamp_min(1e-6)


def worst_frame_mse(pred: Tensor, target: Tensor, share: float) -> Tensor:
    """(B, T, C, h, w) -> (B, T): the mean squared error (mean over channels) of each frame's
    worst ``share`` of its h*w positions (at least one), in fp32."""
    return worst_share_mean((pred.float() - target.float()).pow(2).mean(2).flatten(2), share)


def masked_mean(per_frame: Tensor, mask: Tensor) -> Tensor:
    """Mean of (B, T) over the masked positions (0 when none)."""
    mask = mask.to(per_frame.dtype)
    return (per_frame * mask).sum() / mask.sum().clamp_min(1.0)


def coarser_levels(resolution: int, pyramid: tuple[int, ...]) -> list[int]:
    """Pooling factors, relative to a head's own resolution, of the pyramid levels below it."""
    return [lvl // resolution for lvl in pyramid if lvl > resolution and lvl % resolution == 0]


def pyramid_mse(pred: Tensor, target: Tensor, factors: list[int]) -> Tensor:
    """(B, T): mean over the given coarser levels of the per-frame MSE after pooling both."""
    if not factors:
        return pred.new_zeros(pred.shape[:2], dtype=torch.float32)
    levels = [frame_mse(pool_latents(pred, f), pool_latents(target, f)) for f in factors]
    return torch.stack(levels).mean(0)


def aux_consistency(
    far_pred: Tensor,
    main_x0: Tensor,
    offset: int,
    resolution: int,
    main_mask: Tensor,
    trust: Tensor,
    stopgrad: str,
) -> Tensor:
    """Self-consistency of far head k with head 1 (post, extension 1).

    far_pred (B, T, C, H/r, W/r): head k at position t, a guess of frame t + k - 1.
    main_x0 (B, T, C, H, W): head 1's clean estimate of frame s made at position s.
    main_mask (B, T): positions where head 1's estimate is trained (others are not compared).
    trust (B, T): per-position weight of head 1's estimate.
    stopgrad: ``main`` (head 1's side is a fixed target), ``far`` or ``none``.
    """
    t = far_pred.shape[1]
    span = t - (offset - 1)  # positions t whose frame t + k - 1 is also an input frame
    if span <= 0:
        return far_pred.float().sum() * 0.0
    far = far_pred[:, :span]
    main = pool_latents(main_x0[:, offset - 1 :], resolution)
    if stopgrad == "main":
        main = main.detach()
    elif stopgrad == "far":
        far = far.detach()
    per_frame = frame_mse(far, main) * trust[:, offset - 1 :]
    return masked_mean(per_frame, main_mask[:, offset - 1 :])


@dataclass
class NoiseLevels:
    """What an objective decides for one batch."""

    tau: Tensor
    """(B, T) noise level of every input frame."""
    main_mask: Tensor
    """(B, T) bool: positions where head 1's denoising loss is taken."""
    context_level: Tensor | None = None
    """(B, T) the clip's context level drawn by context noise augmentation (the model embeds
    it), or None."""
    context_levels: Tensor | None = None
    """(B, T) noise levels of a separate context stream (teacher forcing: the clean clip
    noised to these levels is every noisy frame's past), or None: the past is the noisy
    input itself."""


@dataclass
class LossTerms:
    """Named scalar losses (with their graphs) and their weights in the total."""

    values: dict[str, Tensor]
    weights: dict[str, float]
    diagnostics: dict[str, Tensor] = field(default_factory=dict)

    def total(self) -> Tensor:
        return sum(self.weights[name] * value for name, value in self.values.items())

    def logs(self) -> dict[str, Tensor]:
        """Detached 0-dim tensors (``.item()`` them when logging: no sync per step)."""
        logs = {f"loss/{name}": value.detach() for name, value in self.values.items()}
        logs["loss/total"] = self.total().detach()
        logs.update({name: value.detach() for name, value in self.diagnostics.items()})
        return logs


class DenoisingObjective:
    """Base of the diffusion objectives: ``loss, logs = objective(model, batch)``.

    Subclasses implement ``noise_levels``. Randomness (tau, noise) comes from ``generator``
    when given, else from torch's global generator, so seeding either makes a run repeatable.
    """

    kind: ClassVar[str] = ""

    def __init__(self, cfg: ObjectiveConfig | None = None):
        self.cfg = cfg or ObjectiveConfig(kind=self.kind)
        self.cfg.validate()
        if self.cfg.kind != self.kind:
            raise ConfigError(f"{type(self).__name__} given objective.kind={self.cfg.kind!r}")

    def noise_levels(
        self, batch_size: int, frames: int, device: torch.device, generator
    ) -> NoiseLevels:
        raise NotImplementedError

    def sample_tau(self, shape: tuple[int, ...], device, generator) -> Tensor:
        c = self.cfg
        tau = diffusion.sample_tau(
            shape,
            c.tau_sampling,
            generator=generator,
            device=device,
            mean=c.logit_normal_mean,
            std=c.logit_normal_std,
        )
        return tau if c.tau_min == 0 else c.tau_min + (1 - c.tau_min) * tau

    def sample_context_level(
        self, batch_size: int, frames: int, device, generator
    ) -> Tensor | None:
        """Context noise augmentation: one level per clip, U[0, context_level_max) (on a
        ``context_noise_share`` of the clips; ``context_level`` on the others), or None."""
        c = self.cfg
        if c.context_level_max <= 0:
            return None
        level = torch.rand((batch_size, 1), generator=generator, device=device)
        level = level * c.context_level_max
        if c.context_noise_share < 1.0:
            # Drawn only when asked for, so runs without it draw what they always drew.
            keep = torch.rand((batch_size, 1), generator=generator, device=device)
            level = torch.where(keep < c.context_noise_share, level, c.context_level)
        return level.expand(-1, frames)

    def __call__(
        self, model: nn.Module, batch: dict, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        terms = self.terms(model, batch, generator)
        return terms.total(), terms.logs()

    def terms(
        self, model: nn.Module, batch: dict, generator: torch.Generator | None = None
    ) -> LossTerms:
        c = self.cfg
        model_cfg = unwrap(model).cfg
        check_objective_fits_model(model_cfg, c)
        heads: HeadsConfig = model_cfg.heads
        clean, actions = batch["latents"], batch["actions"]
        if c.action_dropout:
            drop = torch.rand(actions.shape, generator=generator, device=actions.device)
            actions = actions.masked_fill(drop < c.action_dropout, unwrap(model).null_action)
        valid = batch.get("valid")
        n_in = input_frames(batch, heads.max_offset)
        x0 = clean[:, :n_in]
        levels = self.noise_levels(x0.shape[0], n_in, x0.device, generator)
        tau, main_mask = levels.tau, levels.main_mask
        if valid is not None:
            main_mask = main_mask & valid[:, :n_in]
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x = diffusion.add_noise(x0, eps, tau, c.schedule)

        stream = {}
        if levels.context_levels is not None:
            eps_ctx = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
            stream = {
                "context": diffusion.add_noise(x0, eps_ctx, levels.context_levels, c.schedule),
                "context_levels": levels.context_levels,
            }
        if model_cfg.clean_residual:
            # Each frame's clean predecessor, as a rollout holds it once that frame is done.
            stream["reference"] = previous_frames(x0, None)
        out = model(x, tau, actions, clean=clean, context_level=levels.context_level, **stream)

        target = diffusion.prediction_target(x0, eps, tau, c.prediction, c.schedule)
        weight = diffusion.loss_weight(
            tau, c.prediction, c.schedule, c.weighting, c.min_snr_gamma, c.snr_floor
        )
        if c.motion_weight > 0:
            per_frame = weighted_frame_mse(out.main, target, 1 + c.motion_weight * motion_map(x0))
        else:
            per_frame = frame_mse(out.main, target)
        if c.worst > 0:
            per_frame = per_frame + c.worst * worst_frame_mse(out.main, target, c.worst_share)
        main = masked_mean(per_frame * weight, main_mask)
        values = {"main": main}
        diagnostics = {"tau/mean": masked_mean(tau, main_mask)}
        need_x0 = heads.multires or (heads.aux_weight > 0 and bool(out.far))
        main_x0 = (
            diffusion.predicted_x0(out.main.float(), x, tau, c.prediction, c.schedule)
            if need_x0
            else None
        )
        if heads.multires:
            coarse = masked_mean(
                pyramid_mse(main_x0, x0, coarser_levels(1, heads.pyramid)), main_mask
            )
            values["main"] = main + heads.multires_weight * coarse
            diagnostics["loss/main_denoise"] = main
            diagnostics["loss/main_coarse"] = coarse

        weights = {"main": 1.0}
        if c.object_maps > 0:
            if out.objects is None or "object_maps" not in batch:
                raise ValueError(
                    "objective.object_maps needs a model with an object head "
                    "(model.object_channels) and batch['object_maps'] (the training command "
                    "makes them from the store's state)"
                )
            target = batch["object_maps"][:, :n_in]
            values["objects"] = object_map_error(out.objects, target, main_mask)
            weights["objects"] = c.object_maps
        far_res = heads.head_resolutions[1:]
        targets = head_targets(clean, heads.far_offsets, far_res, n_in, valid)
        aux = []
        trust = 1.0 - tau if heads.aux_trust == "linear" else torch.ones_like(tau)
        for head, lam in zip(targets, heads.far_lambdas, strict=True):
            k, pred = head.offset, out.far[head.offset]
            per_frame = frame_mse(pred, head.target)
            if heads.multires:
                factors = coarser_levels(head.resolution, heads.pyramid)
                per_frame = per_frame + heads.multires_weight * pyramid_mse(
                    pred, head.target, factors
                )
            values[f"head{k}"] = masked_mean(per_frame, head.mask)
            weights[f"head{k}"] = lam
            if heads.aux_weight > 0:
                term = aux_consistency(
                    pred, main_x0, k, head.resolution, main_mask, trust, heads.aux_stopgrad
                )
                diagnostics[f"loss/aux{k}"] = term
                aux.append(term)
            diagnostics[f"mask/head{k}"] = head.mask.float().mean()
        if aux:
            values["aux"] = torch.stack(aux).mean()
            weights["aux"] = heads.aux_weight
        return LossTerms(values, weights, diagnostics)


def head_gradient_cosines(model: nn.Module, terms: LossTerms) -> dict[str, Tensor]:
    """Cosine between the gradients of each pair of head losses on the shared trunk
    (embeddings and blocks before the branch), and each gradient's norm.

    Costs one backward pass per head: run it every few hundred steps, on the unwrapped model
    (not under DDP), before ``terms.total().backward()`` (it keeps the graph). On a sharded
    (FSDP) model every rank must call it: the dot products of the shards are summed over ranks.
    Keys: ``grad_cos/<a>~<b>`` and ``grad_norm/<a>`` with a, b in main, head2, ..., aux,
    objects.
    """
    params = [p for p in unwrap(model).shared_parameters() if p.requires_grad]
    flat = {}
    for name, value in terms.values.items():
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        flat[name] = torch.cat(
            [
                local(g if g is not None else torch.zeros_like(p)).float().flatten()
                for g, p in zip(grads, params, strict=True)
            ]
        )
    names = list(flat)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i:]]
    dots = torch.stack([flat[a] @ flat[b] for a, b in pairs])
    if is_sharded(unwrap(model)):
        all_reduce_sum(dots)
    dot = dict(zip(pairs, dots, strict=True))
    out = {f"grad_norm/{a}": dot[a, a].sqrt() for a in names}
    for a, b in pairs:
        if a != b:
            norms = (dot[a, a] * dot[b, b]).sqrt().clamp_min(1e-12)
            out[f"grad_cos/{a}~{b}"] = dot[a, b] / norms
    return out
