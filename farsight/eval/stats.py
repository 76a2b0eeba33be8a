"""Confidence intervals for evaluation metrics: across seeds (Student t), across samples
(bootstrap), and for the paired difference of two variants trained on the same seeds.

Which one to use:

- Across training seeds, the unit of replication is the seed: a variant is a distribution over
  trained models, and samples from one model are not independent draws from it. ``mean_ci``
  gives the t interval of the mean over seeds (n - 1 degrees of freedom; with 3 seeds the
  half-width is 2.48 standard errors, not 1.96, which is why the normal quantile is not used).
- Within one trained model, ``bootstrap_ci`` resamples evaluation clips (the independent units;
  frames and objects inside a clip are correlated) and recomputes any statistic, including
  non-linear ones such as the PSNR of the mean MSE.
- Comparing two variants trained on the same seeds, ``paired_diff_ci`` is the t interval of the
  per-seed differences: seed-to-seed variation shared by both variants cancels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

try:  # scipy comes with scikit-image (the `train` extra); the fallback below is exact anyway.
    from scipy import stats as _scipy_stats
except ImportError:  # pragma: no cover - exercised by forcing the fallback in the tests
    _scipy_stats = None


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval; ``low``/``high`` are NaN when undefined."""

    estimate: float
    low: float
    high: float
    n: int
    """Number of units behind the estimate (seeds, clips, pairs), after dropping NaNs."""


def t_quantile(p: float, df: int) -> float:
    """Quantile ``p`` of Student's t distribution with ``df`` degrees of freedom.

    Uses scipy when installed, else ``t_quantile_exact`` (same values to ~1e-12).
    """
    if _scipy_stats is not None:
        return float(_scipy_stats.t.ppf(p, df))
    return t_quantile_exact(p, df)


def t_cdf_exact(t: float, df: int) -> float:
    """P(T <= t) for Student's t with integer ``df`` >= 1, in closed form.

    The finite series of Abramowitz & Stegun 26.7.3-26.7.4 in theta = atan(t / sqrt(df)): exact
    for integer degrees of freedom, which is all a count of seeds ever needs.
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer, got {df}")
    df = int(df)
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 1:
        # A = (2/pi) (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...)), df - 3 power max.
        series, term = 0.0, 1.0
        if df > 1:
            series = 1.0
            for k in range(1, (df - 3) // 2 + 1):
                term *= c2 * (2 * k) / (2 * k + 1)
                series += term
        a = 2.0 / math.pi * (theta + s * math.cos(theta) * series)
    else:
        # A = sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...), df - 2 power max.
        series, term = 1.0, 1.0
        for k in range(1, (df - 2) // 2 + 1):
            term *= c2 * (2 * k - 1) / (2 * k)
            series += term
        a = s * series
    # A is P(|T| <= |t|); fold it into the one-sided CDF.
    return 0.5 + 0.5 * a if t >= 0 else 0.5 - 0.5 * a


def t_quantile_exact(p: float, df: int) -> float:
    """Inverse of ``t_cdf_exact`` by bisection (no scipy needed)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    sign, q = (1.0, p) if p > 0.5 else (-1.0, 1.0 - p)
    lo, hi = 0.0, 1.0
    while t_cdf_exact(hi, df) < q:  # bracket: df = 1 at p = 0.9995 needs ~637
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf_exact(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return sign * 0.5 * (lo + hi)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def mean_ci(values: Sequence[float] | np.ndarray, level: float = 0.95) -> Interval:
    """Mean and Student-t confidence interval of independent values (e.g. one per seed).

    values: (n,) floats; NaNs are dropped (``n`` counts the rest). With fewer than two finite
    values, or any infinite one, the interval is (NaN, NaN): there is no spread to estimate.
    """
    _check_level(level)
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    x = x[~np.isnan(x)]
    n = x.size
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2 or not np.isfinite(x).all():
        return Interval(mean, math.nan, math.nan, n)
    half = t_quantile(0.5 + level / 2, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def paired_diff_ci(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, level: float = 0.95
) -> Interval:
    """Mean and t interval of ``a - b`` for values paired by seed (a[i] and b[i] share seed i).

    a, b: (n,) with the same order of seeds. Pairs where either side is NaN are dropped. The
    interval excludes 0 when the variants differ at the given level.
    """
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"paired_diff_ci: a has {x.size} values but b has {y.size}")
    return mean_ci(x - y, level)


def _mean_over_units(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1)


def bootstrap_ci(
    samples: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> Interval:
    """Percentile-bootstrap interval of a statistic over independent units (e.g. clips).

    samples: (N, ...) with one entry per unit along axis 0. ``statistic`` maps a batch of
    resamples (B, N, ...) to (B,) values (default: the mean over axis 1, for (N,) samples) and
    must also accept the original data as a batch of one, (1, N, ...). Units are resampled with
    replacement, all their columns together, so paired measurements stay paired.

    The percentile bootstrap undercovers for small N (measured on normal data at a nominal
    0.95: about 0.84 at N = 5, 0.89 at N = 10, 0.93 at N = 20); with N < 2 the interval is
    (NaN, NaN). Infinite statistics (e.g. a PSNR of identical
    frames) pass through as inf bounds; NaN resamples (an undefined ratio) are dropped.
    """
    _check_level(level)
    stat = statistic if statistic is not None else _mean_over_units
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 0:
        raise ValueError("bootstrap_ci: samples must have a unit axis, got a scalar")
    n = x.shape[0]
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = float(np.asarray(stat(x[None]), dtype=np.float64).reshape(-1)[0])
        if n < 2:
            return Interval(estimate, math.nan, math.nan, n)
        idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
        boots = np.asarray(stat(x[idx]), dtype=np.float64).reshape(-1)
    if boots.shape != (n_boot,):
        raise ValueError(f"bootstrap_ci: statistic returned {boots.shape}, expected ({n_boot},)")
    # A ratio is undefined on resamples that happen to miss every unit with a denominator:
    # those are dropped, i.e. the interval is conditional on the resample being measurable.
    boots = boots[~np.isnan(boots)]
    if boots.size == 0:
        return Interval(estimate, math.nan, math.nan, n)
    alpha = (1.0 - level) / 2
    # method="lower"/"higher": no interpolation between an inf and a finite value (-> NaN).
    low = float(np.quantile(boots, alpha, method="lower"))
    high = float(np.quantile(boots, 1.0 - alpha, method="higher"))
    return Interval(estimate, low, high, n)
