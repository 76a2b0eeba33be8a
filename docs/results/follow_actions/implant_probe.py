"""Does a denoiser pass new content in its noisy input through? An implanted ball.

``object_estimates.py`` finds a dynamics model that erases Breakout's ball even from the true
frame at a low noise level. Is a one-cell change too small to tell from noise, or is new
content in the field ignored whatever its size? For test clips of ``--length`` frames (clean
true context), this adds the ball's latent change (its cell in the last frame minus the same
cell in the frame before) to a block of k x k cells of the black field of the last frame
(row ``--row``, eight cells across from the ball), noises that frame to ``--tau`` and asks
head 1 for its clean estimate. ``kept`` is the share of the implanted change the estimate
makes over the block (projection on the implant; 1: passed through, 0: removed).

    python docs/results/follow_actions/implant_probe.py CKPT STORE [--tau 0.02] [--sizes 1,2,3]

Prints the median ``kept`` per block size over the clips where the ball is visible.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from object_estimates import clips_with_latents, estimate, object_cell

from farsight import diffusion
from farsight.data.store import EpisodeStore
from farsight.eval.positions import scene_objects
from farsight.world_model import load_world_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt")
    p.add_argument("store")
    p.add_argument("--tau", type=float, default=0.02)
    p.add_argument("--sizes", default="1,2,3")
    p.add_argument("--row", type=int, default=10)
    p.add_argument("--length", type=int, default=12)
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    sizes = [int(v) for v in args.sizes.split(",")]
    if not 0 < args.tau <= 1 or min(sizes) < 1:
        raise SystemExit(f"--tau {args.tau} must lie in (0, 1], --sizes {args.sizes} be >= 1")
    torch.set_grad_enabled(False)
    wm = load_world_model(args.ckpt)
    store = EpisodeStore(args.store)
    objects = scene_objects(store)
    if objects is None or "ball" not in objects.names:
        raise SystemExit(f"{args.store}: no named object 'ball' (a game with a RAM map needed)")
    k = objects.names.index("ball")
    keys = ("frames", "actions", *objects.state_keys(store.arrays))
    gen = torch.Generator().manual_seed(args.seed)
    kept = {s: [] for s in sizes}
    for read, latents, actions in clips_with_latents(
        wm, store, keys, args.length, args.clips, args.seed
    ):
        state = objects.state(read)
        if not state.visible[-1, k]:
            continue
        h, w = latents.shape[-2:]
        if not 0 <= args.row < h:
            raise SystemExit(f"--row {args.row}: the latent grid has rows 0..{h - 1}")
        r, c = object_cell(read, latents, state.xy[-1, k])
        change = latents[0, -1, :, r, c] - latents[0, -2, :, r, c]
        col = (c + 8) % (w - 2) + 1
        for s in sizes:
            implanted = latents.clone()
            block = (slice(args.row, args.row + s), slice(col, col + s))
            implanted[0, -1, :, block[0], block[1]] += change[:, None, None]
            eps = torch.randn(implanted[:, -1].shape, generator=gen)
            level = torch.tensor([args.tau])
            noisy = diffusion.add_noise(implanted[:, -1], eps, level, wm.objective.schedule)
            made = estimate(wm, implanted, actions, noisy, args.tau)[0] - latents[0, -1]
            made = made[:, block[0], block[1]]
            cells = made.shape[-1] * made.shape[-2]
            kept[s].append(
                float((made * change[:, None, None]).sum() / change.pow(2).sum() / cells)
            )
    for s, values in kept.items():
        print(
            f"{args.ckpt}: tau {args.tau}, {s}x{s} cells implanted: median kept "
            f"{np.median(values):.2f} over {len(values)} clips"
        )


if __name__ == "__main__":
    main()
