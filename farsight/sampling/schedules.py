"""Noise-level schedules for generation: pure functions of a few integers, returning tensors.

A schedule for a group of F frames generated together (a *chunk*) is a level matrix

    levels (R, F): row m holds every frame's noise level after m denoising rows;
                   row 0 is all 1 (pure noise), row R-1 all 0 (clean).

Row m -> m+1 is one model evaluation for the frames whose level changes (``cur > nxt``);
frames whose level stays put are either waiting at 1 (not started) or finished at 0. Each
column is non-increasing. The schedulings of the diffusion forcing slides are all such
matrices, applied chunk after chunk:

    autoregressive   F = 1, the 1 -> 0 grid                        (steps + 1, 1)
    chunked          F frames on one shared grid                   (steps + 1, F)
    full sequence    every frame of the rollout on one shared grid (steps + 1, F)
    pyramid          frame j lags frame j-1 by ``lag`` rows         (steps + lag (F-1) + 1, F)

How a rollout is cut into chunks is ``plan_chunks``.

Dimension legend: R rows (denoising steps + 1 and any lag), F frames of a chunk.
"""

from __future__ import annotations

import torch
from torch import Tensor

from farsight.sampling.config import SCHEDULINGS


def shift_levels(levels: Tensor, shift: float) -> Tensor:
    """Timestep shift (SD3, eq. 23): tau' = s tau / (1 + (s - 1) tau). ``shift`` > 1 spends more
    of a few-step budget at high noise, where the layout (the motion) is decided; 1 = identity.
    Keeps 0 and 1 fixed and the order of levels."""
    if shift <= 0:
        raise ValueError(f"shift={shift} must be > 0")
    return shift * levels / (1.0 + (shift - 1.0) * levels)


def denoise_levels(steps: int, shift: float = 1.0) -> Tensor:
    """The 1 -> 0 grid of a ``steps``-step sampler: (steps + 1,), uniform in tau then shifted."""
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    return shift_levels(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift).float()


def chunk_schedule(frames: int, steps: int, shift: float = 1.0) -> Tensor:
    """F frames denoised together on one grid: (steps + 1, F), every column the same."""
    if frames < 1:
        raise ValueError(f"frames={frames} must be >= 1")
    return denoise_levels(steps, shift).unsqueeze(1).expand(-1, frames).contiguous()


def autoregressive_schedule(steps: int, shift: float = 1.0) -> Tensor:
    """One frame at a time: (steps + 1, 1)."""
    return chunk_schedule(1, steps, shift)


def full_sequence_schedule(frames: int, steps: int, shift: float = 1.0) -> Tensor:
    """The whole rollout at one shared level (full-sequence diffusion): (steps + 1, F)."""
    return chunk_schedule(frames, steps, shift)


def pyramid_schedule(frames: int, steps: int, lag: int = 1, shift: float = 1.0) -> Tensor:
    """Diffusion forcing's pyramid: frame j starts ``lag`` rows after frame j-1, so each frame is
    denoised while its predecessors are already cleaner (never noisier) than itself.

    Returns (steps + lag (F - 1) + 1, F). Row m, frame j is at grid index clamp(m - lag j, 0,
    steps) of ``denoise_levels(steps, shift)``.
    """
    if lag < 1:
        raise ValueError(f"lag={lag} must be >= 1")
    grid = denoise_levels(steps, shift)
    rows = steps + lag * (frames - 1) + 1
    index = torch.arange(rows).unsqueeze(1) - lag * torch.arange(frames).unsqueeze(0)
    return grid[index.clamp(0, steps)]


def chunk_levels(
    scheduling: str, frames: int, steps: int, shift: float = 1.0, lag: int = 1
) -> Tensor:
    """The level matrix of one chunk of ``frames`` frames under ``scheduling``."""
    if scheduling == "autoregressive":
        if frames != 1:
            raise ValueError(f"autoregressive chunks hold one frame, got {frames}")
        return autoregressive_schedule(steps, shift)
    if scheduling in ("chunked", "full_sequence"):
        return chunk_schedule(frames, steps, shift)
    if scheduling == "pyramid":
        return pyramid_schedule(frames, steps, lag, shift)
    raise ValueError(f"scheduling={scheduling!r}; expected one of {', '.join(SCHEDULINGS)}")


def plan_chunks(total: int, scheduling: str, chunk: int = 4) -> list[int]:
    """Sizes of the chunks a rollout of ``total`` frames is generated in (the last may be
    shorter): 1s (autoregressive), ``chunk``s (chunked, pyramid), or one chunk (full sequence)."""
    if total < 0:
        raise ValueError(f"total={total} must be >= 0")
    if scheduling == "autoregressive":
        size = 1
    elif scheduling in ("chunked", "pyramid"):
        if chunk < 1:
            raise ValueError(f"chunk={chunk} must be >= 1")
        size = chunk
    elif scheduling == "full_sequence":
        size = max(total, 1)
    else:
        raise ValueError(f"scheduling={scheduling!r}; expected one of {', '.join(SCHEDULINGS)}")
    return [min(size, total - start) for start in range(0, total, size)]
