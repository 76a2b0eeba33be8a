"""What the report reads from a run's TensorBoard events: the per-head gradient cosines."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def grad_cosines(folder: Path) -> dict[str, tuple[list[int], list[float]]]:
    """Per head pair with the main head: (steps, cosines) logged to the run's TensorBoard."""
    if not (folder / "tb").exists():
        return {}
    events = EventAccumulator(str(folder / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    out = {}
    for tag in events.Tags().get("scalars", []):
        if tag.startswith("train/grad_cos/main~"):
            by_step = {e.step: e.value for e in events.Scalars(tag)}  # a resume may repeat
            steps = sorted(by_step)
            out[tag.removeprefix("train/grad_cos/")] = (steps, [by_step[s] for s in steps])
    return out
