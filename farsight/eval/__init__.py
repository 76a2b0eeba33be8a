"""Measuring instruments for world-model rollouts, and the ablation grid that uses them.

- ``metrics``: PSNR / SSIM / MSE per horizon at full and pooled resolution, latent MSE, Delta-PSNR.
- ``positions``: arena player- and object-position error, miss, hit and spurious rates.
- ``stats``: t intervals over seeds, bootstrap intervals over clips, paired differences.
- ``report``: JSON / CSV / PNG / markdown writers (imports matplotlib; import it explicitly).
- ``run``: ``farsight eval``'s driver (rollouts through WorldModelEnv; imports torch).
- ``variants``, ``ablation``: ``farsight ablate``'s named variants and its resumable grid
  (spec, runner, FLOP counting, TensorBoard reading, report).
"""

from farsight.eval.metrics import MetricRow, delta_psnr, horizons, latent_mse_rows, rollout_metrics
from farsight.eval.positions import position_metrics, read_entities
from farsight.eval.stats import Interval, bootstrap_ci, mean_ci, paired_diff_ci
from farsight.metrics import downsample, mse, psnr, psnr_from_mse, ssim

__all__ = [
    "Interval",
    "MetricRow",
    "bootstrap_ci",
    "delta_psnr",
    "downsample",
    "horizons",
    "latent_mse_rows",
    "mean_ci",
    "mse",
    "paired_diff_ci",
    "position_metrics",
    "psnr",
    "psnr_from_mse",
    "read_entities",
    "rollout_metrics",
    "ssim",
]
