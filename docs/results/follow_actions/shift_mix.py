"""What a ``model.shift_reference`` model does with its copy: the mix of whole-frame shifts.

Rolls out ``farsight eval``'s clips (its clips, seeds and sampling: true and random actions)
and reads the shift mix of every frame the trunk runs on: the prompt frames as they are
written to the cache, and each generated frame at each denoising step and when it is
committed (with ``sampling.action_guidance``, also the action-free passes). A mix is the
softmax over the (2S+1)^2 integer shifts (or, with ``shift_learned``, the learned maps that
start as them); a shift (dy, dx) is where each cell reads from, so a view scrolling right by
a cell shows as dx = +1. Prints the mean mix as a (2S+1) x (2S+1) grid (rows: dy = -S .. S,
columns: dx; the centre: the unshifted copy), the 10 / 50 / 90% quantiles of each mix's
largest weight (1: one shift; 1 / (2S+1)^2: a uniform blur) and how often each shift has it.

    python docs/results/follow_actions/shift_mix.py CKPT DATA [--clips 8] [--horizon 4] \
        [--prompt-frames 8] [--threads 2]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from farsight.data.store import EpisodeStore
from farsight.eval.run import EvalConfig, evaluate
from farsight.world_model import load_world_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt")
    p.add_argument("data")
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--horizon", type=int, default=4)
    p.add_argument("--prompt-frames", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    wm = load_world_model(args.ckpt)
    model = wm.dynamics
    if model.shift_head is None:
        raise SystemExit(f"{args.ckpt}: a model without model.shift_reference (no shift mix)")
    mixes = []
    model.shift_head.register_forward_hook(
        lambda _m, _i, out: mixes.append(out.float().softmax(-1).reshape(-1, out.shape[-1]))
    )
    cfg = EvalConfig(clips=args.clips, horizon=args.horizon, prompt_frames=args.prompt_frames)
    evaluate(wm, EpisodeStore(args.data), cfg, progress=False)
    mix = torch.cat(mixes)
    side = 2 * model.cfg.shift_reference + 1
    largest = mix.max(-1)
    print(f"{mix.shape[0]} mixes (a frame's, at a denoising step); their mean (rows: the row")
    print("shift -S..S, columns: the column shift):")
    print(np.array2string(mix.mean(0).reshape(side, side).numpy(), precision=3))
    quantiles = np.quantile(largest.values.numpy(), [0.1, 0.5, 0.9])
    print("largest weight of a mix, 10/50/90%:", np.round(quantiles, 3).tolist())
    print("mixes each shift leads:", torch.bincount(largest.indices, minlength=side**2).tolist())


if __name__ == "__main__":
    main()
