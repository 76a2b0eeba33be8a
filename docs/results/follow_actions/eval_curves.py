"""Learning curves in `farsight eval` terms: the evals of one run's checkpoints, against step and
against the run's wall-clock minutes, each beside copy-last-frame where it has one.

    python docs/results/follow_actions/eval_curves.py RUN EVALS OUT.png OUT.csv

RUN: the training run (its TensorBoard events give each step's wall-clock time); EVALS: a folder
of `farsight eval --out EVALS/<step>` reports of that run's checkpoints at those steps. The CSV
holds every plotted figure with its 95% interval.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from matplotlib.figure import Figure

from farsight.eval.metrics import MetricRow
from farsight.eval.report import read_metrics
from farsight.eval.run import REFERENCE_FILE
from farsight.train.curves import read_timed_scalars

PANELS = [  # (metric, scale, horizons, title)
    ("delta_psnr", 1, (1, 4, 16), "Delta-PSNR (true - random actions), dB"),
    ("psnr", 1, (1, 4, 16), "PSNR, dB (dashed: copy-last-frame)"),
    ("object_hit_rate", 1, (1, 2, 4), "disc hit rate"),
    ("player_hit_rate", 1, (4, 16), "player hit rate"),
]


def _row(rows: list[MetricRow], metric: str, scale: int, horizon: int) -> MetricRow | None:
    """The row of (metric, scale, horizon) that has a value (None: none has)."""
    for r in rows:
        if (r.metric, r.scale, r.horizon) == (metric, scale, horizon) and not math.isnan(r.value):
            return r
    return None


def main(run: str, evals: str, png: str, table: str) -> None:
    timed = read_timed_scalars(run)
    tag = next((t for t in timed if t.endswith("probe_action_gain_db")), None)
    if tag is None:
        sys.exit(f"{run}: its TensorBoard events hold no probe_action_gain_db (a dynamics run?)")
    minutes = {s: sec / 60 for s, sec in zip(timed[tag][0], timed[tag][2], strict=True)}
    steps = sorted(int(p.name) for p in Path(evals).iterdir() if p.name.isdigit())
    if not steps:
        sys.exit(f"{evals}: no eval folders named by their step (EVALS/<step>)")
    unlogged = [s for s in steps if s not in minutes]
    if unlogged:
        sys.exit(f"{evals}: steps {unlogged} are not validation steps of {run}")
    reports = {}
    for s in steps:
        folder = Path(evals) / str(s)
        reports[s] = (read_metrics(folder / "metrics.json"), read_metrics(folder / REFERENCE_FILE))
    lines = []
    fig = Figure(figsize=(12, 10), layout="constrained")
    axes = fig.subplots(len(PANELS), 2)
    for i, (metric, scale, horizons, title) in enumerate(PANELS):
        for h in horizons:
            series = {}
            for variant, which in (("model", 0), ("copy", 1)):
                got = [(s, _row(reports[s][which], metric, scale, h)) for s in steps]
                series[variant] = [(s, r) for s, r in got if r is not None]
                for s, r in series[variant]:
                    at = f"{minutes[s]:.1f}"
                    lines.append([metric, scale, h, s, at, r.value, r.ci_low, r.ci_high, variant])
            got, ref = series["model"], series["copy"]
            for col, xs in enumerate((lambda s: s, lambda s: minutes[s])):
                ax = axes[i, col]
                x = [xs(s) for s, _ in got]
                line = ax.plot(x, [r.value for _, r in got], marker="o", ms=3, label=f"h={h}")
                colour = line[0].get_color()
                low, high = [r.ci_low for _, r in got], [r.ci_high for _, r in got]
                ax.fill_between(x, low, high, color=colour, alpha=0.15)
                if ref:
                    ref_x = [xs(s) for s, _ in ref]
                    ax.plot(ref_x, [r.value for _, r in ref], ls="--", color=colour, lw=1)
        for col, xlabel in enumerate(("step", "wall-clock minutes")):
            ax = axes[i, col]
            ax.set(xlabel=xlabel, title=title)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(f"{Path(run).name}: farsight eval of its checkpoints (16 clips, 95% intervals)")
    fig.savefig(png, dpi=100)
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        header = "metric scale horizon step minutes value ci_low ci_high variant"
        w.writerow(header.split())
        w.writerows(lines)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
