"""Frame metrics: PSNR, SSIM and MSE per frame, at full and pooled resolution, and the
reconstruction metrics of a batch that training validates with (``farsight.eval.metrics``
builds rollout metrics on them).

Frames are compared as a viewer sees them: uint8 (B, H, W, 3), data range 255. As in the
evaluation library, the aggregate ``psnr`` is the PSNR of the MSE averaged over frames (not the
mean of per-frame PSNRs, which easy or identical frames would inflate); ``ssim`` is the mean of
scikit-image's per-frame SSIM. ``_r4`` variants pool both images by 4 x 4 area averages first:
motion and layout live in low frequencies.

Dimensions: B frames, H W frame size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from farsight.extras import require

DATA_RANGE = 255.0
SSIM_WINDOW = 7
"""skimage's default window (7 x 7, uniform); smaller images get the largest odd one that fits."""


def to_frames(x: Any, name: str = "frames") -> np.ndarray:
    """Frames as float64 (..., H, W, 3) on [0, 255]; accepts numpy arrays and torch tensors.

    Raises ValueError naming ``name`` for a wrong channel axis or values outside [0, 255]
    (e.g. model images still in [-1, 1]).
    """
    if hasattr(x, "detach"):  # a torch tensor; duck-typed so this module never imports torch
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim < 3 or a.shape[-1] != 3:
        raise ValueError(f"{name} must be channel-last (..., H, W, 3), got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float64)
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.size and (np.nanmin(a) < 0.0 or np.nanmax(a) > DATA_RANGE):
        raise ValueError(
            f"{name} values span [{np.nanmin(a):g}, {np.nanmax(a):g}], outside [0, 255]: pass "
            "uint8 frames (images in [-1, 1] go through images_to_frames first)"
        )
    return a


def downsample(frames: np.ndarray, factor: int) -> np.ndarray:
    """Area-average pooling of (..., H, W, C) by ``factor`` x ``factor`` -> (..., H/f, W/f, C).

    Every output pixel is the mean of an f x f block (not a strided sample, which would alias
    high frequencies into the low-resolution image instead of removing them).
    """
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    factor = int(factor)
    a = np.asarray(frames, dtype=np.float64)
    if factor == 1:
        return a
    h, w, c = a.shape[-3:]
    if h % factor or w % factor:
        raise ValueError(f"frame size {h}x{w} is not divisible by the pooling factor {factor}")
    blocks = a.reshape(*a.shape[:-3], h // factor, factor, w // factor, factor, c)
    return blocks.mean(axis=(-4, -2))


def mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean squared error per frame over (H, W, C): (..., H, W, C) x2 -> (...,), uint8 units^2."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"mse: shapes differ, {a.shape} vs {b.shape}")
    return ((a - b) ** 2).mean(axis=(-3, -2, -1))


def psnr_from_mse(m: np.ndarray | float, data_range: float = DATA_RANGE) -> np.ndarray:
    """PSNR in dB from MSE: 10 log10(range^2 / mse); +inf where mse == 0."""
    m = np.asarray(m, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / m)


def psnr(a: Any, b: Any) -> np.ndarray:
    """Per-frame PSNR in dB (data range 255): (..., H, W, 3) x2 -> (...,); identical -> +inf."""
    return psnr_from_mse(mse(to_frames(a, "a"), to_frames(b, "b")))


def ssim_window(height: int, width: int) -> int | None:
    """SSIM window side for an image: 7, or the largest odd side that fits; None below 3 px."""
    side = min(height, width, SSIM_WINDOW)
    side -= 1 - side % 2  # round down to odd
    return side if side >= 3 else None


def ssim(a: Any, b: Any) -> np.ndarray:
    """Per-frame SSIM (skimage, channels averaged, data range 255): (..., H, W, 3) x2 -> (...,).

    Images smaller than 7 px get a smaller odd window (see ``ssim_window``); below 3 px SSIM is
    undefined and this raises. Identical frames give 1.
    """
    a, b = to_frames(a, "a"), to_frames(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ, {a.shape} vs {b.shape}")
    h, w = a.shape[-3:-1]
    win = ssim_window(h, w)
    if win is None:
        raise ValueError(f"ssim: {h}x{w} images are too small for SSIM (need >= 3x3)")
    # scikit-image is optional (the `train` extra): imported here, where SSIM is computed.
    structural_similarity = require("skimage.metrics", "SSIM").structural_similarity
    flat_a = a.reshape(-1, h, w, 3)
    flat_b = b.reshape(-1, h, w, 3)
    out = np.array(
        [
            structural_similarity(x, y, channel_axis=-1, data_range=DATA_RANGE, win_size=win)
            for x, y in zip(flat_a, flat_b, strict=True)
        ],
        dtype=np.float64,
    )
    return out.reshape(a.shape[:-3])


def image_metrics(
    target: np.ndarray, pred: np.ndarray, factors: tuple[int, ...] = (1, 4)
) -> dict[str, float]:
    """{'psnr', 'ssim', 'psnr_r4', 'ssim_r4', ...} for (B, H, W, 3) frames, one per factor."""
    target, pred = to_frames(target, "target"), to_frames(pred, "prediction")
    out = {}
    for r in factors:
        suffix = "" if r == 1 else f"_r{r}"
        t, p = downsample(target, r), downsample(pred, r)
        out[f"psnr{suffix}"] = float(psnr_from_mse(mse(t, p).mean()))
        out[f"ssim{suffix}"] = float(ssim(t, p).mean())
    return out


def image_grid(rows: list[np.ndarray], scale: int = 2, gap: int = 2) -> np.ndarray:
    """Stack rows of frames (each (B, H, W, 3) uint8) into one white-gapped image, upscaled."""
    n, h, w, _ = rows[0].shape
    canvas = np.full((len(rows) * (h + gap) - gap, n * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            canvas[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = frame
    return canvas.repeat(scale, axis=0).repeat(scale, axis=1)
