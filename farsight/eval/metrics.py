"""Frame metrics for open-loop rollouts: PSNR, SSIM and MSE at full and pooled resolution,
latent MSE, and Genie's controllability Delta-PSNR, per horizon.

Conventions:

- Frames are channel-last (..., H, W, 3), uint8 or float on the uint8 scale [0, 255] (numpy
  arrays or torch tensors). Model images in [-1, 1] must go through
  ``farsight.models.autoencoder.images_to_frames`` first: metrics are measured on what the
  player sees.
- Rollouts are (N, T, H, W, 3): N clips, T generated frames. Frame ``t - 1`` is horizon ``t``
  (the first generated frame is horizon 1); the ground truth passed alongside holds the true
  frames at the same positions, context frames excluded.
- Resolution ``scale`` f means area-average pooling by f x f (1 = full resolution). Pooling
  averages away high-frequency detail and noise but keeps where things are, which is what the
  multi-frame post argues long-horizon consistency is about.

Aggregation over clips, and the infinite PSNR of identical frames: a horizon's ``psnr`` is the
PSNR of the MSE averaged over clips, not the mean of per-clip PSNRs. It is finite as soon as one
clip differs at all, so a few exact reproductions (per-clip PSNR = +inf) cannot make the mean
infinite, and no arbitrary cap is needed; it is +inf only when every clip is reproduced
exactly, and is then reported as inf. (The mean of per-clip PSNRs would be dominated by the
easiest clips, by Jensen's inequality it is always >= this value.) ``psnr`` gives per-frame
values, inf included, for anyone who wants them; confidence intervals bootstrap clips and
recompute the same PSNR-of-mean-MSE statistic.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from farsight.eval.stats import bootstrap_ci
from farsight.metrics import downsample, mse, psnr_from_mse, ssim, ssim_window, to_frames

SCALES = (1, 4, 8)
"""Default resolutions: full, 1/4 and 1/8 (area-average pooling factors)."""


@dataclass(frozen=True)
class MetricRow:
    """One aggregated metric value; lists of these serialise to JSON and CSV (``asdict``).

    ``scale`` is the pooling factor for pixel metrics and 1 for the others (latent, position).
    ``ci_low``/``ci_high`` bound ``value`` at 95% by bootstrapping clips (NaN when not
    computed); ``n`` is the number of units behind ``value`` (clips, or entity sightings for
    position metrics). ``variant`` and ``seed`` label the model for reports comparing several.
    """

    metric: str
    horizon: int
    value: float
    scale: int = 1
    ci_low: float = math.nan
    ci_high: float = math.nan
    n: int = 0
    variant: str = ""
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


ROW_FIELDS = tuple(f.name for f in fields(MetricRow))


def horizons(max_h: int, extra: Iterable[int] = ()) -> tuple[int, ...]:
    """Powers of two 1, 2, 4, ... <= ``max_h``, plus the ``extra`` horizons, sorted and unique.

    Raises ValueError for an extra horizon outside [1, max_h] (the rollout cannot reach it).
    """
    if max_h < 1:
        raise ValueError(f"max_h must be >= 1, got {max_h}")
    out = {1 << k for k in range(int(max_h).bit_length()) if 1 << k <= max_h}
    for h in extra:
        if not 1 <= h <= max_h:
            raise ValueError(f"horizon {h} is outside [1, {max_h}] (the rollout length)")
        out.add(int(h))
    return tuple(sorted(out))


def _raw(x: Any) -> np.ndarray:
    """A numpy view of an array or tensor, without conversion (the caller indexes it first)."""
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)


def _check_rollouts(named: dict[str, np.ndarray]) -> tuple[int, int]:
    shapes = {name: a.shape for name, a in named.items()}
    first_name, first = next(iter(named.items()))
    if first.ndim != 5 or first.shape[-1] != 3:
        raise ValueError(f"{first_name} must be (N, T, H, W, 3), got shape {first.shape}")
    for name, a in named.items():
        if a.shape != first.shape:
            raise ValueError(f"rollout shapes differ: {shapes}; {name} does not match")
    if first.shape[0] < 1 or first.shape[1] < 1:
        raise ValueError(f"{first_name} needs at least one clip and one frame: {first.shape}")
    return first.shape[0], first.shape[1]


def resolve_horizons(hs: Sequence[int] | None, t: int) -> tuple[int, ...]:
    """The horizons to measure in a rollout of ``t`` frames: ``hs`` checked against [1, t] and
    sorted, or ``horizons(t)`` when None."""
    if hs is None:
        return horizons(t)
    bad = [h for h in hs if not 1 <= h <= t]
    if bad:
        raise ValueError(f"horizons {bad} are outside [1, {t}] (the number of generated frames)")
    return tuple(sorted(set(int(h) for h in hs)))


def _psnr_of_mean_mse(x: np.ndarray) -> np.ndarray:
    """Bootstrap statistic: (B, N) MSEs -> (B,) PSNR of the mean over clips."""
    return psnr_from_mse(x.mean(axis=1))


def _delta_psnr_stat(x: np.ndarray) -> np.ndarray:
    """Bootstrap statistic: (B, N, 2) [mse_true, mse_random] -> (B,) PSNR difference."""
    m = x.mean(axis=1)
    with np.errstate(invalid="ignore"):
        diff = psnr_from_mse(m[:, 0]) - psnr_from_mse(m[:, 1])
    # Equal errors mean no measurable effect of the actions, also when both generations are
    # exact (inf - inf would be NaN).
    return np.where(m[:, 0] == m[:, 1], 0.0, diff)


def _row(metric: str, h: int, scale: int, samples: np.ndarray, stat, n_boot: int, seed: int):
    ci = bootstrap_ci(samples, stat, n_boot=n_boot, seed=seed)
    return MetricRow(metric, h, ci.estimate, scale, ci.low, ci.high, ci.n)


def rollout_metrics(
    gt: Any,
    gen: Any,
    *,
    horizons: Sequence[int] | None = None,
    scales: Sequence[int] = SCALES,
    gt_latents: Any = None,
    gen_latents: Any = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[MetricRow]:
    """Per-horizon, per-resolution frame metrics of a batch of open-loop rollouts.

    gt, gen: (N, T, H, W, 3) true and generated frames, position t - 1 = horizon t. Optional
    gt_latents, gen_latents: (N, T, ...) latents (e.g. the encoder's latents of the true frames
    and the generated latents) for ``latent_mse``. ``horizons`` defaults to 1, 2, 4, ... <= T;
    ``scales`` are pooling factors that must divide H and W.

    Returns rows with metric in {"mse", "psnr", "ssim"} for each (horizon, scale), plus
    "latent_mse" (scale 1) per horizon when latents are given. ``psnr`` is the PSNR of the
    clip-averaged MSE (see the module docstring), ``ssim`` the mean per-clip SSIM; CIs bootstrap
    clips. A scale whose images are under 3 px gets no SSIM rows (with a warning).
    """
    if (gt_latents is None) != (gen_latents is None):
        raise ValueError("pass both gt_latents and gen_latents, or neither")
    gt_raw, gen_raw = _raw(gt), _raw(gen)
    _, t = _check_rollouts({"gt": gt_raw, "gen": gen_raw})
    hs = resolve_horizons(horizons, t)
    idx = [h - 1 for h in hs]
    # Only the measured horizons become float64: (N, len(hs), H, W, 3), not (N, T, ...).
    gt_h, gen_h = to_frames(gt_raw[:, idx], "gt"), to_frames(gen_raw[:, idx], "gen")

    rows: list[MetricRow] = []
    for scale in scales:
        a, b = downsample(gt_h, scale), downsample(gen_h, scale)
        m = mse(a, b)  # (N, len(hs))
        win = ssim_window(*a.shape[-3:-1])
        if win is None:
            warnings.warn(
                f"no SSIM at scale {scale}: {a.shape[-3]}x{a.shape[-2]} px is under 3x3",
                stacklevel=2,
            )
            s = None
        else:
            s = ssim(a, b)
        for j, h in enumerate(hs):
            rows.append(_row("mse", h, scale, m[:, j], None, n_boot, seed))
            rows.append(_row("psnr", h, scale, m[:, j], _psnr_of_mean_mse, n_boot, seed))
            if s is not None:
                rows.append(_row("ssim", h, scale, s[:, j], None, n_boot, seed))

    if gt_latents is not None:
        rows.extend(latent_mse_rows(gt_latents, gen_latents, hs, n_boot=n_boot, seed=seed))
    return rows


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float64)


def latent_mse_rows(
    gt_latents: Any,
    gen_latents: Any,
    horizons: Sequence[int],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[MetricRow]:
    """Rows of "latent_mse" per horizon: gt_latents, gen_latents (N, T, ...) -> mean over clips
    of the per-clip MSE over the latent's elements."""
    za, zb = _as_array(gt_latents), _as_array(gen_latents)
    if za.shape != zb.shape or za.ndim < 2:
        raise ValueError(
            f"gt_latents and gen_latents must share a shape (N, T, ...): {za.shape} vs {zb.shape}"
        )
    hs = resolve_horizons(horizons, za.shape[1])
    diff = (za - zb).reshape(za.shape[0], za.shape[1], -1)
    per_clip = (diff**2).mean(axis=-1)  # (N, T)
    return [_row("latent_mse", h, 1, per_clip[:, h - 1], None, n_boot, seed) for h in hs]


def delta_psnr(
    gt: Any,
    gen: Any,
    gen_random: Any,
    *,
    horizons: Sequence[int] | None = None,
    scales: Sequence[int] = (1,),
    n_boot: int = 1000,
    seed: int = 0,
) -> list[MetricRow]:
    """Genie's controllability metric per horizon: PSNR(x_t, xhat_t) - PSNR(x_t, xhat'_t).

    gt: (N, T, H, W, 3) true frames; gen: generated from the same context with the true
    actions; gen_random: generated from the same context with uniformly random actions. Both
    PSNRs are of the clip-averaged MSE, like ``rollout_metrics``. A model that ignores its
    actions scores 0 (up to sampling noise when generation is stochastic); the more the
    true actions help, the larger it is. The CI resamples clips jointly for both generations.
    Returns "delta_psnr" rows per (horizon, scale); report it at t = 4 as Genie does. When
    both generations have the same clip-averaged MSE the value is 0, also if both are exact;
    when only the true-action one is exact it is +inf.
    """
    raw = {"gt": _raw(gt), "gen": _raw(gen), "gen_random": _raw(gen_random)}
    _, t = _check_rollouts(raw)
    hs = resolve_horizons(horizons, t)
    idx = [h - 1 for h in hs]
    gt_f, gen_f, rnd_f = (to_frames(a[:, idx], name) for name, a in raw.items())
    rows = []
    for scale in scales:
        a = downsample(gt_f, scale)
        paired = np.stack(
            [mse(a, downsample(gen_f, scale)), mse(a, downsample(rnd_f, scale))], axis=-1
        )  # (N, len(hs), 2)
        for j, h in enumerate(hs):
            rows.append(_row("delta_psnr", h, scale, paired[:, j], _delta_psnr_stat, n_boot, seed))
    return rows
