"""Learning curves in `farsight eval` terms: the evals of runs' checkpoints, against step and
against each run's training wall-clock minutes, beside copy-last-frame where it has one.

    python docs/results/follow_actions/eval_curves.py OUT.png OUT.csv RUN EVALS [RUN EVALS ...]

RUN: a training run (its TensorBoard events give each step's wall-clock time); EVALS: a folder
of `farsight eval --out EVALS/<step>` reports of that run's checkpoints at those steps, all
runs on the same clips (copy-last-frame is drawn from the first run's). Colours are horizons;
the first run is drawn solid, the next ones dotted. The CSV holds every plotted figure with
its 95% interval.
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


def _reports(run: str, evals: str) -> tuple[dict[int, float], dict[int, tuple]]:
    """Each eval step's training minutes, and its (model, copy-last-frame) metric rows."""
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
    return {s: minutes[s] for s in steps}, reports


def main(png: str, table: str, pairs: list[str]) -> None:
    runs = [(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)]
    loaded = [(Path(run).name, *_reports(run, evals)) for run, evals in runs]
    lines = []
    fig = Figure(figsize=(12, 10), layout="constrained")
    axes = fig.subplots(len(PANELS), 2)
    for i, (metric, scale, horizons, title) in enumerate(PANELS):
        for k, h in enumerate(horizons):
            colour = f"C{k}"
            for j, (name, minutes, reports) in enumerate(loaded):
                steps = sorted(reports)
                series = {}
                for variant, which in (("model", 0), ("copy", 1)):
                    got = [(s, _row(reports[s][which], metric, scale, h)) for s in steps]
                    series[variant] = [(s, r) for s, r in got if r is not None]
                    for s, r in series[variant]:
                        at = f"{minutes[s]:.1f}"
                        row = [name, metric, scale, h, s, at, r.value, r.ci_low, r.ci_high]
                        lines.append([*row, variant])
                got, ref = series["model"], series["copy"]
                style = {"ls": "-", "marker": "o"} if j == 0 else {"ls": ":", "marker": "^"}
                label = f"h={h}" if len(loaded) == 1 else f"{name} h={h}"
                for col, xs in enumerate((lambda s: s, lambda s, m=minutes: m[s])):
                    ax = axes[i, col]
                    x = [xs(s) for s, _ in got]
                    ys = [r.value for _, r in got]
                    ax.plot(x, ys, color=colour, ms=3, label=label, **style)
                    low, high = [r.ci_low for _, r in got], [r.ci_high for _, r in got]
                    ax.fill_between(x, low, high, color=colour, alpha=0.12)
                    if ref and j == 0:
                        ref_x = [xs(s) for s, _ in ref]
                        ax.plot(ref_x, [r.value for _, r in ref], ls="--", color=colour, lw=1)
        for col, xlabel in enumerate(("step", "training wall-clock minutes")):
            ax = axes[i, col]
            ax.set(xlabel=xlabel, title=title)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    names = " vs ".join(name for name, _, _ in loaded)
    fig.suptitle(f"{names}: farsight eval of the checkpoints (16 clips, 95% intervals)")
    fig.savefig(png, dpi=100)
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        header = "run metric scale horizon step minutes value ci_low ci_high variant"
        w.writerow(header.split())
        w.writerows(lines)


if __name__ == "__main__":
    if len(sys.argv) < 5 or len(sys.argv) % 2 == 0:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
