"""Reconstruction metrics for a batch of frames, on top of ``farsight.eval.metrics``.

Frames are compared as a viewer sees them: uint8 (B, H, W, 3), data range 255. As in the
evaluation library, the aggregate ``psnr`` is the PSNR of the MSE averaged over frames (not the
mean of per-frame PSNRs, which easy or identical frames would inflate); ``ssim`` is the mean of
scikit-image's per-frame SSIM. ``_r4`` variants pool both images by 4 x 4 area averages first:
motion and layout live in low frequencies.

Dimensions: B frames, H W frame size.
"""

from __future__ import annotations

import numpy as np

from farsight.eval.metrics import downsample, mse, psnr_from_mse, ssim, to_frames


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
