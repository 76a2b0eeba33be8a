"""Where a rollout loses the player: with the view following it, or with a wall holding the view.

The arena's view follows the player and stops at the world's walls; the player then stays
at the view's centre while the floor scrolls, or, within half a view of a wall, moves in the
view while the floor stays. This script rolls out ``farsight eval``'s clips (the same clips,
seeds and sampling) and splits the player's readback at each horizon by where the true
player is: at the view's centre (within ``--centre-px``) or off it (a wall holds the view).
For each part it prints the clips in which the player is visible, found (drawn anywhere in
its colour) and hit (found within the eval's hit distance, 2 px at 64 x 64), then, per clip,
the true player's distance from the centre and the readback's error at the last horizon.

    python docs/results/follow_actions/player_walls.py CKPT DATA [--clips 16] [--horizon 64] \
        [--prompt-frames 8]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from farsight.data.store import EpisodeStore
from farsight.eval.positions import DEFAULT_HIT_PX, read_entities
from farsight.eval.run import ARENA_STATE_KEYS, EvalConfig, EvalResult, evaluate
from farsight.world_model import load_world_model


def arena_rollouts(
    ckpt: str, data: str, clips: int, horizon: int, prompt_frames: int
) -> tuple[EvalResult, dict[str, np.ndarray]]:
    """``farsight eval``'s rollouts of an arena store's clips (its clips, seeds and sampling),
    and the store's state (N, 1 + H, ...) at the last prompt frame and each generated one."""
    if min(clips, horizon, prompt_frames) < 1:
        raise SystemExit(
            f"--clips {clips}, --horizon {horizon} and --prompt-frames {prompt_frames} must be >= 1"
        )
    wm = load_world_model(ckpt)
    store = EpisodeStore(data)
    missing = [k for k in ARENA_STATE_KEYS if k not in store.arrays]
    if missing:
        raise SystemExit(f"store {data} has no {', '.join(missing)}: an arena store is needed")
    cfg = EvalConfig(clips=clips, horizon=horizon, prompt_frames=prompt_frames)
    res = evaluate(wm, store, cfg, progress=False)
    prompt, made = res.meta["prompt_frames"], res.gen.shape[1]
    reads = [
        store.read(c["episode"], c["start"] + prompt - 1, made + 1, keys=ARENA_STATE_KEYS)
        for c in res.meta["clips"]
    ]
    return res, {k: np.stack([r[k] for r in reads]) for k in ARENA_STATE_KEYS}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt")
    p.add_argument("data")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--horizon", type=int, default=64)
    p.add_argument("--prompt-frames", type=int, default=8)
    p.add_argument("--centre-px", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    res, with_last = arena_rollouts(
        args.ckpt, args.data, args.clips, args.horizon, args.prompt_frames
    )
    prompt, horizon = res.meta["prompt_frames"], res.gen.shape[1]
    state = {k: v[:, 1:] for k, v in with_last.items()}
    rb = read_entities(
        res.gen,
        state["state.player"],
        state["state.camera"],
        state["state.objects"],
        gt_frames=res.gt,
    )
    # (N, T): the true player's distance from the view's centre.
    view = state["state.player"] - state["state.camera"]
    centre = np.array([res.gt.shape[3], res.gt.shape[2]]) / 2
    off = np.linalg.norm(view - centre, axis=-1)
    visible, found = rb.visible[..., 0], rb.found[..., 0]
    hit = found & (np.nan_to_num(rb.error[..., 0], nan=np.inf) <= DEFAULT_HIT_PX)

    print(f"{args.ckpt}: {len(off)} clips, {horizon} frames after {prompt} prompt frames")
    print("h | view following: visible / found / hit | a wall holding it: visible / found / hit")
    for h in (1, 4, 16, 32, 64):
        if h > horizon:
            continue
        t = h - 1
        parts = []
        for part in (off[:, t] < args.centre_px, off[:, t] >= args.centre_px):
            v = visible[:, t] & part
            parts.append(f"{v.sum()} / {(found[:, t] & v).sum()} / {(hit[:, t] & v).sum()}")
        print(f"{h} | {parts[0]} | {parts[1]}")
    print("clip (episode, start) | off-centre, most / at the last horizon (px) | error there (px)")
    for i, c in enumerate(res.meta["clips"]):
        err = rb.error[i, -1, 0]
        print(
            f"{i} ({c['episode']}, {c['start']}) | {off[i].max():.1f} / {off[i, -1]:.1f} | "
            + ("not found" if np.isnan(err) else f"{err:.1f}")
        )


if __name__ == "__main__":
    main()
