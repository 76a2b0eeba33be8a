"""LAM runs' validation NMI with the true actions and prediction gain, against step and against
training wall-clock, one line per run, as one PNG.

    python docs/results/lam/nmi_curves.py OUT.png LABEL=RUN [LABEL=RUN ...]
"""

import sys

from farsight.train.curves import write_run_comparison

PANELS = [
    ("val/nmi", "NMI of the latent with the true actions (val)", "NMI"),
    ("val/gain", "prediction gain over copying x_t (val)", "gain"),
]


def main(out: str, runs: list[str]) -> None:
    if not runs or any("=" not in spec for spec in runs):
        raise SystemExit(f"give runs as LABEL=RUN_FOLDER, got {runs}")
    labelled = dict(spec.split("=", 1) for spec in runs)
    print(f"wrote {write_run_comparison(labelled, out, PANELS)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
