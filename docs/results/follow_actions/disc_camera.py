"""Does the view's move cost the discs? Disc readback split by whether the view scrolled.

A disc's move in the view is its own move in the world minus the camera's, and the camera's
depends on the action and on the walls (it stops within half a view of them). This script
rolls out ``farsight eval``'s clips (the same clips, seeds and sampling) and splits every disc
sighting at h = 1, 2, 4 by whether the camera moved between the last true frame and that one:
for each part, the sightings, the share found within the eval's hit distance (2 px at
64 x 64) by the model, with a 95% Wilson interval over the sightings (which are not
independent: several discs a clip, clips from the split's few episodes), and by
copy-last-frame (the last true frame read as the generation); then the same within 1 px, and
the mean error of the discs each finds at all. A disc moves 2 px a frame, so at h=1 a disc
left where it was sits at the 2-px edge: within 1 px is what tells a moved disc from a kept
one. The clips are those of ``farsight eval --episodes CLIPS --horizon 4 --prompt-frames P``.

    python docs/results/follow_actions/disc_camera.py CKPT DATA [--clips 64] [--prompt-frames 8]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from ball_world import wilson
from player_walls import arena_rollouts

from farsight.eval.positions import DEFAULT_HIT_PX, read_entities

HORIZONS = (1, 2, 4)


def readback(gen: np.ndarray, gt: np.ndarray, state: dict) -> tuple[np.ndarray, np.ndarray]:
    """(N, T, K) disc sightings, and the error of each found in ``gen`` (NaN: not found)."""
    rb = read_entities(
        gen, state["state.player"], state["state.camera"], state["state.objects"], gt_frames=gt
    )
    return rb.visible[..., 1:], rb.error[..., 1:]


def within(error: np.ndarray, px: float) -> np.ndarray:
    return np.nan_to_num(error, nan=np.inf) <= px


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt")
    p.add_argument("data")
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--prompt-frames", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    res, with_last = arena_rollouts(
        args.ckpt, args.data, args.clips, max(HORIZONS), args.prompt_frames
    )
    prompt, horizon = res.meta["prompt_frames"], res.gen.shape[1]
    state = {k: v[:, 1:] for k, v in with_last.items()}
    # copy-last-frame: the last true frame, shown at every horizon.
    copy = np.repeat(res.prompts[:, -1:], horizon, axis=1)
    seen, model_error = readback(res.gen, res.gt, state)
    _, copy_error = readback(copy, res.gt, state)
    # (N, T): did the view scroll between the last true frame and frame h?
    moved = np.abs(state["state.camera"] - with_last["state.camera"][:, :1]).sum(-1) > 0

    print(f"{args.ckpt}: {len(moved)} clips after {prompt} prompt frames")
    print(
        "h | view still / view scrolled: sightings, hit within 2 px model [95%] / copy, "
        "within 1 px model / copy, mean error of the found model / copy (px)"
    )
    for h in HORIZONS:
        if h > horizon:
            continue
        t = h - 1
        parts = []
        for part in (~moved[:, t], moved[:, t]):
            v = seen[:, t] & part[:, None]
            n = int(v.sum())
            if not n:
                parts.append("0")
                continue
            k = int((within(model_error[:, t], DEFAULT_HIT_PX) & v).sum())
            low, high = wilson(k / n, n)
            cells = [f"{n}", f"{k / n:.2f} [{low:.2f}, {high:.2f}]"]
            cells.append(f"{(within(copy_error[:, t], DEFAULT_HIT_PX) & v).sum() / n:.2f}")
            cells.append(
                " / ".join(
                    f"{(within(e[:, t], 1.0) & v).sum() / n:.2f}" for e in (model_error, copy_error)
                )
            )
            cells.append(
                " / ".join(
                    f"{np.nanmean(np.where(v, e[:, t], np.nan)):.2f}"
                    if np.isfinite(np.where(v, e[:, t], np.nan)).any()
                    else "-"
                    for e in (model_error, copy_error)
                )
            )
            parts.append(", ".join(cells))
        print(f"{h} | {parts[0]} | {parts[1]}")


if __name__ == "__main__":
    main()
