"""Evaluation and ablation reports: metrics as JSON and CSV, curves and rollout strips as PNG, and
a markdown summary. Every file is written atomically (a crash never leaves a partial file).

Rows are ``MetricRow``s (``farsight.eval.metrics``), one per (variant, seed, metric, scale,
horizon). ``summarize`` folds seeds together: with two or more seeds the interval is the Student
t interval of the mean over seeds (the seed is the unit of replication); with a single seed it is
that row's own bootstrap interval over clips, which says nothing about seed-to-seed variation,
and the summary says which one it is.

Serialisation of non-finite floats: JSON has neither NaN nor infinity, so NaN is written as null
and +-inf (the PSNR of exact reproductions) as the strings "inf" / "-inf"; in CSV NaN is an empty
cell and infinities are "inf" / "-inf". ``read_metrics`` undoes both.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Figures are built from matplotlib.figure.Figure, which renders with Agg on savefig, not through
# pyplot: no display, no global backend switch, no figure registry to leak into.
from matplotlib.figure import Figure

from farsight.eval.metrics import ROW_FIELDS, MetricRow
from farsight.eval.stats import mean_ci, paired_diff_ci
from farsight.io import atomic_write, atomic_write_json, read_json

TABLE_HORIZONS = (1, 4, 16, 64)

_LOWER_IS_BETTER_SUFFIXES = ("mse", "_error", "_miss_rate", "_spurious_rate")


def lower_is_better(metric: str) -> bool:
    """Direction of a metric name: MSEs, position errors, miss and spurious rates go down."""
    return metric.endswith(_LOWER_IS_BETTER_SUFFIXES)


# ---------------------------------------------------------------------------------------------
# Metrics files


def _encode(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _decode_float(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    return float(value)


def row_to_json(row: MetricRow) -> dict[str, Any]:
    """A row as a JSON-safe dict (see the module docstring for NaN and inf)."""
    return {k: _encode(v) for k, v in row.as_dict().items()}


def row_from_dict(d: Mapping[str, Any]) -> MetricRow:
    """Inverse of ``row_to_json``, also accepting the strings of a CSV row."""
    missing = [k for k in ("metric", "horizon", "value") if k not in d]
    if missing:
        raise ValueError(f"metric row lacks {missing}: {dict(d)}")
    seed = d.get("seed")
    return MetricRow(
        metric=str(d["metric"]),
        horizon=int(d["horizon"]),
        value=_decode_float(d["value"]),
        scale=int(d.get("scale") or 1),
        ci_low=_decode_float(d.get("ci_low")),
        ci_high=_decode_float(d.get("ci_high")),
        n=int(d.get("n") or 0),
        variant=str(d.get("variant") or ""),
        seed=None if seed in (None, "") else int(seed),
    )


def write_metrics(
    out_dir: str | Path,
    rows: Sequence[MetricRow],
    stem: str = "metrics",
    meta: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` ({"meta": ..., "rows": [...]}) and ``<stem>.csv`` (one row per
    line, columns ``ROW_FIELDS``). Returns (json_path, csv_path)."""
    out_dir = Path(out_dir)
    json_path, csv_path = out_dir / f"{stem}.json", out_dir / f"{stem}.csv"
    atomic_write_json(json_path, {"meta": dict(meta or {}), "rows": [row_to_json(r) for r in rows]})

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=ROW_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        d = row_to_json(r)
        writer.writerow({k: "" if v is None else v for k, v in d.items()})
    data = text.getvalue().encode()
    atomic_write(csv_path, lambda f: f.write(data))
    return json_path, csv_path


def read_metrics(path: str | Path) -> list[MetricRow]:
    """Rows from a metrics ``.json`` or ``.csv`` written by ``write_metrics``."""
    path = Path(path)
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            return [row_from_dict(d) for d in csv.DictReader(f)]
    obj = read_json(path, "metrics file")
    rows = obj["rows"] if isinstance(obj, dict) else obj
    return [row_from_dict(d) for d in rows]


# ---------------------------------------------------------------------------------------------
# Aggregation over seeds


@dataclass(frozen=True)
class SummaryRow:
    """A metric of one variant at one (scale, horizon), with its 95% interval.

    ``ci`` names the interval: "t over seeds", "bootstrap over clips" (single seed) or "none".
    ``n`` is the number of seeds (or of clips for a single-seed bootstrap).
    """

    variant: str
    metric: str
    scale: int
    horizon: int
    mean: float
    low: float
    high: float
    n: int
    ci: str


def summarize(rows: Iterable[MetricRow], level: float = 0.95) -> list[SummaryRow]:
    """Fold the seeds of each (variant, metric, scale, horizon) into a mean and interval.

    Raises ValueError when one seed appears twice for the same key (rows were concatenated
    twice, or seeds were not labelled).
    """
    groups: dict[tuple[str, str, int, int], list[MetricRow]] = defaultdict(list)
    for r in rows:
        groups[(r.variant, r.metric, r.scale, r.horizon)].append(r)
    out = []
    for (variant, metric, scale, h), group in sorted(groups.items()):
        seeds = [r.seed for r in group]
        if len(set(seeds)) != len(seeds):
            raise ValueError(
                f"{variant or '(no variant)'} {metric} scale {scale} horizon {h}: seeds {seeds} "
                "repeat; label each run's rows with its own seed"
            )
        if len(group) == 1:
            r = group[0]
            has_ci = not (math.isnan(r.ci_low) and math.isnan(r.ci_high))
            out.append(
                SummaryRow(
                    variant,
                    metric,
                    scale,
                    h,
                    r.value,
                    r.ci_low,
                    r.ci_high,
                    r.n,
                    "bootstrap over clips" if has_ci else "none",
                )
            )
            continue
        ci = mean_ci([r.value for r in group], level)
        out.append(
            SummaryRow(
                variant, metric, scale, h, ci.estimate, ci.low, ci.high, ci.n, "t over seeds"
            )
        )
    return out


def paired_differences(
    rows: Iterable[MetricRow], baseline: str, level: float = 0.95
) -> list[SummaryRow]:
    """Per (variant, metric, scale, horizon): mean and t interval of (variant - baseline) over
    the seeds both have (paired by seed). Keys with fewer than two shared seeds get NaN bounds.
    The returned rows' ``variant`` reads "<variant> - <baseline>"."""
    by_key: dict[tuple[str, int, int], dict[str, dict[Any, float]]] = defaultdict(dict)
    for r in rows:
        by_key[(r.metric, r.scale, r.horizon)].setdefault(r.variant, {})[r.seed] = r.value
    out = []
    for (metric, scale, h), variants in sorted(by_key.items()):
        base = variants.get(baseline)
        if base is None:
            continue
        for variant, values in sorted(variants.items()):
            if variant == baseline:
                continue
            shared = sorted(set(values) & set(base), key=str)
            ci = paired_diff_ci([values[s] for s in shared], [base[s] for s in shared], level)
            label = f"{variant} - {baseline}"
            out.append(
                SummaryRow(
                    label,
                    metric,
                    scale,
                    h,
                    ci.estimate,
                    ci.low,
                    ci.high,
                    ci.n,
                    "paired t over seeds",
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# Plots


def _save_png(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    data = buf.getvalue()
    atomic_write(path, lambda f: f.write(data))
    return path


def _metric_label(metric: str, scale: int) -> str:
    res = "full res" if scale == 1 else f"1/{scale} res"
    arrow = "lower is better" if lower_is_better(metric) else "higher is better"
    return f"{metric} ({res}; {arrow})"


def _finite(x: Sequence[float]) -> np.ndarray:
    # Infinite points (exact reproductions) cannot be drawn; leave a gap rather than a lie.
    a = np.asarray(x, dtype=np.float64)
    return np.where(np.isfinite(a), a, np.nan)


def plot_metric_curves(summary: Sequence[SummaryRow], out_dir: str | Path) -> list[Path]:
    """One PNG per (metric, scale): the metric over horizon (log2 axis), one line per variant,
    its 95% interval shaded. Files are ``curve_<metric>_s<scale>.png``; returns their paths."""
    panels: dict[tuple[str, int], dict[str, list[SummaryRow]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for s in summary:
        panels[(s.metric, s.scale)][s.variant].append(s)
    paths = []
    for (metric, scale), variants in sorted(panels.items()):
        fig = Figure(figsize=(5.5, 3.6))
        ax = fig.subplots()
        all_h: set[int] = set()
        for variant, points in sorted(variants.items()):
            points = sorted(points, key=lambda p: p.horizon)
            h = [p.horizon for p in points]
            all_h.update(h)
            (line,) = ax.plot(
                h, _finite([p.mean for p in points]), marker="o", ms=3, label=variant or "model"
            )
            low, high = _finite([p.low for p in points]), _finite([p.high for p in points])
            ax.fill_between(h, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xscale("log", base=2)
        ticks = sorted(all_h)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("horizon (generated frames)")
        ax.set_title(_metric_label(metric, scale), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(_save_png(fig, Path(out_dir) / f"curve_{metric}_s{scale}.png"))
    return paths


def plot_series(
    path: str | Path,
    series: Mapping[str, Sequence[tuple[Sequence[float], Sequence[float]]]],
    *,
    title: str,
    ylabel: str,
    xlabel: str = "training step",
    level: float = 0.95,
) -> Path:
    """Training curves (e.g. per-head gradient cosine, loss): per variant, a list over seeds of
    (steps, values); draws the mean over seeds with its t interval shaded. Seeds of a variant
    must share their steps."""
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    for variant, runs in series.items():
        if not runs:
            continue
        steps = np.asarray(runs[0][0], dtype=np.float64)
        for s, v in runs:
            if not np.array_equal(np.asarray(s, dtype=np.float64), steps) or len(v) != len(s):
                raise ValueError(f"plot_series: the seeds of {variant!r} log different steps")
        values = np.asarray([v for _, v in runs], dtype=np.float64)  # (seeds, steps)
        cis = [mean_ci(values[:, j], level) for j in range(values.shape[1])]
        (line,) = ax.plot(steps, _finite([c.estimate for c in cis]), label=variant)
        ax.fill_between(
            steps,
            _finite([c.low for c in cis]),
            _finite([c.high for c in cis]),
            color=line.get_color(),
            alpha=0.2,
            linewidth=0,
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save_png(fig, Path(path))


def write_strip(
    path: str | Path,
    gt: np.ndarray,
    generations: Mapping[str, np.ndarray],
    horizons: Sequence[int],
    title: str = "",
) -> Path:
    """Side-by-side rollout strip: a ground-truth row and one row per generation, columns at the
    given horizons. gt and each generation: (T, H, W, 3) uint8 of one clip, frame t - 1 being
    horizon t."""
    gt = np.asarray(gt)
    rows = {"ground truth": gt, **{k: np.asarray(v) for k, v in generations.items()}}
    for name, frames in rows.items():
        if frames.shape != gt.shape or gt.ndim != 4:
            raise ValueError(
                f"strip row {name!r} has shape {frames.shape}; expected (T, H, W, 3) like "
                f"gt {gt.shape}"
            )
    bad = [h for h in horizons if not 1 <= h <= gt.shape[0]]
    if bad or not horizons:
        raise ValueError(
            f"strip horizons {list(horizons)} must be non-empty, within [1, {gt.shape[0]}]"
        )
    n_rows, n_cols = len(rows), len(horizons)
    fig = Figure(figsize=(1.25 * n_cols + 1.2, 1.3 * n_rows + 0.3))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for i, (name, frames) in enumerate(rows.items()):
        for j, h in enumerate(horizons):
            ax = axes[i, j]
            ax.imshow(np.clip(frames[h - 1], 0, 255).astype(np.uint8), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"h={h}", fontsize=8)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save_png(fig, Path(path))


# ---------------------------------------------------------------------------------------------
# Markdown


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def _cell(s: SummaryRow) -> str:
    if math.isnan(s.low) and math.isnan(s.high):
        return _fmt(s.mean)
    return f"{_fmt(s.mean)} [{_fmt(s.low)}, {_fmt(s.high)}]"


def markdown_table(header: Sequence[str], body: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (cells converted with ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def summary_table(
    summary: Sequence[SummaryRow], table_horizons: Sequence[int] = TABLE_HORIZONS
) -> str:
    """Markdown table: one line per (metric, scale, variant), columns at the table horizons the
    summary has (others are left out), cells "mean [low, high]"."""
    present = {s.horizon for s in summary}
    hs = [h for h in table_horizons if h in present]
    cells: dict[tuple[str, int, str], dict[int, SummaryRow]] = defaultdict(dict)
    for s in summary:
        if s.horizon in hs:
            cells[(s.metric, s.scale, s.variant)][s.horizon] = s
    body = []
    for (metric, scale, variant), by_h in sorted(cells.items()):
        arrow = "↓" if lower_is_better(metric) else "↑"
        res = "full" if scale == 1 else f"1/{scale}"
        ci_kinds = sorted({s.ci for s in by_h.values()})
        row = [f"{metric} {arrow}", res, variant or "model"]
        row += [_cell(by_h[h]) if h in by_h else "-" for h in hs]
        row.append(", ".join(ci_kinds))
        body.append(row)
    header = ["metric", "res", "variant", *[f"h={h}" for h in hs], "95% CI"]
    return markdown_table(header, body)


def write_report(
    out_dir: str | Path,
    rows: Sequence[MetricRow],
    *,
    title: str = "Evaluation",
    baseline: str | None = None,
    strips: Sequence[Path] = (),
    extra_images: Sequence[Path] = (),
    sections: Sequence[tuple[str, str]] = (),
    table_horizons: Sequence[int] = TABLE_HORIZONS,
    meta: Mapping[str, Any] | None = None,
    curves: bool = True,
) -> dict[str, Any]:
    """Write the whole report into ``out_dir``: metrics.json/csv, summary.json, one curve PNG
    per (metric, scale) and README.md.

    ``baseline`` (a variant name) adds a table of paired differences against it. ``strips``
    (from ``write_strip``) and ``extra_images`` (e.g. ``plot_series`` of gradient cosines) are
    linked relative to ``out_dir``; ``sections`` are extra (heading, markdown) blocks, e.g. a
    training-cost table from ``markdown_table``. ``curves=False`` skips the curve PNGs (about
    half a second each; an ablation's per-run evals leave them to the grid's report). Returns
    the written paths by kind.
    """
    out_dir = Path(out_dir)
    root = out_dir.resolve()
    json_path, csv_path = write_metrics(out_dir, rows, meta=meta)
    summary = summarize(rows)
    summary_path = out_dir / "summary.json"
    atomic_write_json(summary_path, [{k: _encode(v) for k, v in vars(s).items()} for s in summary])
    curves = plot_metric_curves(summary, out_dir) if curves else []

    def rel(p: Path) -> str:
        p = Path(p).resolve()
        return p.relative_to(root).as_posix() if p.is_relative_to(root) else p.as_posix()

    parts = [f"# {title}", ""]
    parts.append(
        "Open-loop rollouts; horizon h is the h-th generated frame. Intervals are 95%: Student t "
        "over training seeds when there are several, else a bootstrap over evaluation clips "
        "(which ignores seed-to-seed variation). PSNR is that of the clip-averaged MSE; "
        "`res` 1/f means f x f area-average pooling before measuring."
    )
    present = {s.horizon for s in summary}
    shown = [str(h) for h in table_horizons if h in present]
    parts += ["", f"## Metrics at horizons {', '.join(shown) or '(none measured)'}", ""]
    parts.append(summary_table(summary, table_horizons))
    if baseline is not None:
        diffs = paired_differences(rows, baseline)
        parts += ["", f"## Differences from {baseline} (paired by seed)", ""]
        parts.append(
            "An interval that excludes 0 is a difference at the 95% level; "
            "mind each metric's direction."
        )
        parts += ["", summary_table(diffs, table_horizons)]
    for heading, body in sections:
        parts += ["", f"## {heading}", "", body]
    if strips:
        parts += ["", "## Rollout strips", ""]
        parts += [f"![{Path(p).stem}]({rel(p)})" for p in strips]
    if extra_images:
        parts += ["", "## Training", ""]
        parts += [f"![{Path(p).stem}]({rel(p)})" for p in extra_images]
    if curves:
        parts += ["", "## Curves over horizon", ""]
        parts += [f"![{p.stem}]({rel(p)})" for p in curves]
    text = "\n".join(parts) + "\n"
    md_path = out_dir / "README.md"
    atomic_write(md_path, lambda f: f.write(text.encode()))
    return {
        "json": json_path,
        "csv": csv_path,
        "summary": summary_path,
        "markdown": md_path,
        "curves": curves,
    }
