"""Does a dynamics model still predict once its clip start has left the temporal window?

A rollout longer than the model's window W puts every frame after the first W - 1 in a
position training may never have shown it: its window holds no clip start. This script holds
the target frame fixed and varies only how many true frames come before it. For each test
clip (a window of ``max(--lengths)`` frames of the latent cache's test split) and each length
T, the last T frames are given to the model, the last one at pure noise and the earlier ones
clean (the action probe's setting, ``farsight/objectives/action_probe.py``), and head 1's
one-step clean estimate of the last frame is scored by its latent MSE. With T <= W the window
holds the clip's first frame; with T > W it does not, as in a rollout past W - 1 frames.
``--widen`` also scores the longest T with the window widened to T (no parameter depends on
W): if that is as good as T = W, what hurts is the missing clip start, not the distance.

    python docs/results/follow_actions/window_probe.py RUN CACHE [--lengths 4,8,9,12,16] \
        [--clips 48] [--widen]

Prints the latent MSE per T (mean over clips, 95% bootstrap interval over clips) beside
copy-last-frame on the same target frames; latents are normalized to about unit variance.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from farsight.errors import UsageError
from farsight.eval.run import pick_clips
from farsight.eval.stats import bootstrap_ci
from farsight.latents import LatentCache
from farsight.models.dynamics import DynamicsModel
from farsight.objectives.action_probe import action_probe
from farsight.world_model import load_world_model


def with_window(model: DynamicsModel, window: int) -> DynamicsModel:
    """The same weights with another temporal window (the window sets only the masks)."""
    wider = DynamicsModel(dataclasses.replace(model.cfg, window=window))
    wider.load_state_dict(model.state_dict())
    return wider.eval()


def last_frame_mse(model, latents, actions, objective, generator) -> float:
    """Latent MSE of head 1's one-step estimate of the last of ``latents`` (1, T, C, H, W),
    ``actions`` (1, T) as stored (a_t taken after frame t): the action probe's setting."""
    batch = {"latents": latents, "actions": actions, "input_frames": latents.shape[1]}
    return action_probe(model, batch, objective, generator)["probe/mse_true"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("cache")
    p.add_argument("--lengths", default="4,8,9,12,16")
    p.add_argument("--clips", type=int, default=48)
    p.add_argument("--widen", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    lengths = sorted({int(v) for v in args.lengths.split(",")})
    if lengths[0] < 2:
        raise SystemExit(f"--lengths {args.lengths}: each length must be >= 2")

    torch.set_grad_enabled(False)
    wm = load_world_model(args.run)
    model = wm.dynamics.eval()
    cache = LatentCache(args.cache)
    longest = lengths[-1]
    try:
        clips = pick_clips(cache.store, "test", longest, args.clips, args.seed)
    except UsageError as e:
        raise SystemExit(f"{args.cache}: no test clip of {longest} frames; lower --lengths") from e
    window = model.cfg.window
    rows = [(f"T={t}", t, model) for t in lengths]
    if args.widen:
        rows.append((f"T={longest}, window {longest}", longest, with_window(model, longest)))
    scores = {name: [] for name, _, _ in rows}
    copy = []
    for i, clip in enumerate(clips):
        data = cache.store.read(clip.episode, clip.start, longest, keys=("latents", "actions"))
        latents = cache.to_float(torch.as_tensor(data["latents"])).float()[None]
        actions = torch.as_tensor(data["actions"])[None].long()
        for name, t, m in rows:
            gen = torch.Generator().manual_seed(args.seed * 100_003 + i)
            scores[name].append(
                last_frame_mse(m, latents[:, -t:], actions[:, -t:], wm.objective, gen)
            )
        copy.append(float(((latents[:, -2] - latents[:, -1]) ** 2).mean()))

    print(f"{args.run}: window W={window}, {len(clips)} test clips, the same target frames")
    print("| context | latent MSE | 95% CI | / copy |")
    print("|---|---|---|---|")
    ref = float(np.mean(copy))
    for name, values in [*scores.items(), ("copy-last-frame", copy)]:
        v = np.asarray(values)
        ci = bootstrap_ci(v, seed=args.seed)
        print(f"| {name} | {v.mean():.4f} | [{ci.low:.4f}, {ci.high:.4f}] | {v.mean() / ref:.2f} |")


if __name__ == "__main__":
    main()
