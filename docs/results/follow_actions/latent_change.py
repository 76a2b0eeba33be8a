"""Is an object faint in a model's latents? Its cell's change from one frame to the next.

On test clips of two frames where the object is in view in both, the autoencoder's latents
of the two true frames are compared: the norm (over channels) of the latent change at the
cells holding the object's previous and current centre (the larger of the two), against
the median cell's change of the same frame and the mean norm of a latent cell. An object
whose cell changes about as much as a cell's whole norm is plainly in the latents.

    python docs/results/follow_actions/latent_change.py STORE CKPT [--object ball] [--clips 64]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from object_estimates import clips_with_latents, named_object, object_cell

from farsight.world_model import load_world_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("store")
    p.add_argument("ckpt")
    p.add_argument("--object", default="ball")
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_grad_enabled(False)
    store, objects, k, keys = named_object(args.store, args.object)
    wm = load_world_model(args.ckpt)
    at_object, median_cell, cell_norm = [], [], []
    for read, latents, _ in clips_with_latents(wm, store, keys, 2, args.clips, args.seed):
        xy = objects.state(read).xy[:, k]
        if not np.isfinite(xy).all():
            continue
        change = (latents[0, 1] - latents[0, 0]).pow(2).sum(0).sqrt()  # (H, W) norms
        cells = [object_cell(read, latents, xy[i]) for i in (0, 1)]
        at_object.append(max(float(change[c]) for c in cells))
        median_cell.append(float(change.median()))
        cell_norm.append(float(latents[0, 1].pow(2).sum(0).sqrt().mean()))
    print(
        f"{args.ckpt}: {args.object}, {len(at_object)} frames in view in both; median norm "
        f"of the change at its cell {np.median(at_object):.4f}, of the median cell's change "
        f"{np.median(median_cell):.6f}; mean norm of a latent cell {np.mean(cell_norm):.4f}"
    )


if __name__ == "__main__":
    main()
