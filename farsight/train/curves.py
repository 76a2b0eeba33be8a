"""A run's training curves as one PNG: the losses it logged to TensorBoard, against step.

    write_curves("runs/quickstart/dynamics", "runs/quickstart/dynamics/curves.png")

Panels: training losses (each logged term, e.g. per head), validation losses (``val/loss_*``,
on fixed clips and noise: what to compare across steps), where logged the action probe
(``val/probe_*_gain_db``: does the model use its actions, does it beat copying the last
frame), and the cosine between each far head's gradient and the main head's on the shared
trunk. ``write_probe_comparison`` puts several runs' action probes side by side, against
step and against wall-clock (``write_run_comparison``: any validation scalars). Needs the
``train`` extra (tensorboard, matplotlib).
"""

from __future__ import annotations

from pathlib import Path

from farsight.errors import UsageError
from farsight.io import atomic_write


def read_scalars(run_dir: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """Every scalar of ``RUN/tb``: tag -> (steps, values), one value per step (the last one
    logged, since a resumed run logs again from its checkpoint)."""
    return {tag: (steps, values) for tag, (steps, values, _) in read_timed_scalars(run_dir).items()}


def read_timed_scalars(
    run_dir: str | Path,
) -> dict[str, tuple[list[int], list[float], list[float]]]:
    """As ``read_scalars``, with each value's training wall-clock seconds: from the run's first
    event, leaving out the pauses of a resumed run. Each session of a run writes its own event
    file, and a session's clock starts where the previous one's last event left it."""
    # lazy: the train extra's packages are imported where used (farsight.extras).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = Path(run_dir) / "tb"
    if not tb.is_dir():
        raise UsageError(f"run {run_dir} has no TensorBoard folder {tb}")
    sessions = []
    for path in tb.glob("events.out.tfevents.*"):
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        by_tag = {tag: events.Scalars(tag) for tag in events.Tags().get("scalars", [])}
        times = [e.wall_time for es in by_tag.values() for e in es]
        if times:
            sessions.append((min(times), max(times), by_tag))
    clock = 0.0
    by_step: dict[str, dict[int, tuple[float, float]]] = {}
    for first, last, by_tag in sorted(sessions, key=lambda s: s[0]):
        for tag, scalars in by_tag.items():
            # A later session logs again the steps after its checkpoint: its values stand.
            by_step.setdefault(tag, {}).update(
                {e.step: (e.value, clock + e.wall_time - first) for e in scalars}
            )
        clock += last - first
    out = {}
    for tag, values in by_step.items():
        steps = sorted(values)
        out[tag] = (steps, [values[s][0] for s in steps], [values[s][1] for s in steps])
    return out


def _is_loss(tag: str, prefix: str) -> bool:
    name = tag.removeprefix(prefix)
    return tag.startswith(prefix) and (name == "loss" or name.startswith(("loss_", "loss/")))


def write_curves(run_dir: str | Path, path: str | Path, title: str = "") -> Path:
    # lazy: the train extra's packages are imported where used (farsight.extras).
    from matplotlib.figure import Figure

    scalars = read_scalars(run_dir)
    train = {t: v for t, v in scalars.items() if _is_loss(t, "train/")}
    if any(t.startswith("train/loss/") for t in train):  # per-term curves: drop the duplicate
        train = {t: v for t, v in train.items() if t != "train/loss"}
    val = {t: v for t, v in scalars.items() if _is_loss(t, "val/")}
    cosines = {t: v for t, v in scalars.items() if t.startswith("train/grad_cos/main~")}
    probe = {t: v for t, v in scalars.items() if t in PROBE_TAGS}
    if not train:
        raise UsageError(f"run {run_dir} logged no training loss yet")
    panels = [(train, "training losses", "loss"), (val, "validation losses", "loss")]
    if probe:
        panels.append((probe, "action probe (val, one step from noise)", "dB"))
    if cosines:
        panels.append((cosines, "gradient cosine with the main head (shared trunk)", "cosine"))
    fig = Figure(figsize=(5.5 * len(panels), 4), layout="constrained")
    for ax, (curves, name, ylabel) in zip(fig.subplots(1, len(panels)), panels, strict=True):
        for tag, (steps, values) in sorted(curves.items()):
            ax.plot(steps, values, marker="o" if len(steps) < 12 else None, label=tag)
        ax.set(xlabel="step", ylabel=ylabel, title=name)
        if ylabel == "loss":
            ax.set_yscale("log")
        else:
            ax.axhline(0.0, color="grey", lw=0.8)
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return path


PROBE_TAGS = ("val/probe_action_gain_db", "val/probe_copy_gain_db")


def write_probe_comparison(runs: dict[str, str | Path], path: str | Path, title: str = "") -> Path:
    """The action probe of several runs (label -> run folder): action gain and gain over
    copy-last-frame, each against step and against wall-clock minutes."""
    names = ("action gain: random vs true action", "gain over copy-last")
    panels = [(tag, name, "dB") for tag, name in zip(PROBE_TAGS, names, strict=True)]
    return write_run_comparison(runs, path, panels, title)


def write_run_comparison(
    runs: dict[str, str | Path],
    path: str | Path,
    panels: list[tuple[str, str, str]],
    title: str = "",
) -> Path:
    """Validation scalars of several runs (label -> run folder), one row per panel
    (tag, title, y label), each against step and against wall-clock minutes."""
    # lazy: the train extra's packages are imported where used (farsight.extras).
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.75 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 2, squeeze=False)
    for label, run in runs.items():
        scalars = read_timed_scalars(run)
        for row, (tag, _, _) in enumerate(panels):
            if tag not in scalars:
                raise UsageError(f"run {run} logged no {tag}")
            steps, values, seconds = scalars[tag]
            axes[row, 0].plot(steps, values, marker="o", ms=3, label=label)
            axes[row, 1].plot([s / 60 for s in seconds], values, marker="o", ms=3, label=label)
    for row, (_, name, ylabel) in enumerate(panels):
        for col, xlabel in enumerate(("step", "wall-clock minutes")):
            ax = axes[row, col]
            ax.set(xlabel=xlabel, ylabel=ylabel, title=name)
            ax.axhline(0.0, color="grey", lw=0.8)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return path
