"""LAM runs' validation NMI with the true actions and prediction gain, against step and against
training wall-clock, one line per run, as one PNG.

    python docs/results/lam/nmi_curves.py OUT.png LABEL=RUN [LABEL=RUN ...]
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from farsight.train.curves import read_timed_scalars  # noqa: E402

PANELS = (("val/nmi", "val NMI with the true actions"), ("val/gain", "val gain over copying x_t"))


def main(out: str, runs: list[str]) -> None:
    fig, axes = plt.subplots(len(PANELS), 2, figsize=(10, 3.2 * len(PANELS)), squeeze=False)
    for spec in runs:
        label, run = spec.split("=", 1)
        scalars = read_timed_scalars(run)
        for row, (tag, title) in enumerate(PANELS):
            if tag not in scalars:
                raise SystemExit(f"run {run} logged no {tag} (tags: {sorted(scalars)})")
            steps, values, seconds = scalars[tag]
            axes[row, 0].plot(steps, values, marker=".", label=label)
            axes[row, 1].plot([s / 60 for s in seconds], values, marker=".", label=label)
            axes[row, 0].set_ylabel(title)
    for row in range(len(PANELS)):
        axes[row, 0].set_xlabel("step")
        axes[row, 1].set_xlabel("training minutes")
        for ax in axes[row]:
            ax.grid(alpha=0.3)
    axes[0, 0].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
