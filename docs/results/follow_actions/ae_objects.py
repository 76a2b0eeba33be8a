"""Does an autoencoder keep a game's named objects? Read them back from its reconstructions.

For every frame of the store's test split (up to ``--frames`` per episode), the autoencoder's
reconstruction is searched for each named object of the game's RAM map exactly as ``farsight
eval`` searches generated frames (``farsight/eval/positions.py``): sightings the same search
recovers from the true frame are scored; ``found`` is a blob of half the object's area within
1/8 of the frame of its true position, ``hit`` one within 1/32 (2 px at 64 x 64).

    python docs/results/follow_actions/ae_objects.py AE_RUN STORE [--frames 400] [--noise 0.04]

``--noise`` adds Gaussian noise of that standard deviation to the normalized latents before
decoding (a dynamics model's latent error is of that order): does the decoder still draw the
objects from latents that are a little off?

Prints, per object, the scored sightings, the found and hit shares, the mean distance of the
found ones, and the reconstruction's PSNR over all frames read.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from farsight.data.store import EpisodeStore
from farsight.eval.positions import read_objects, scene_objects
from farsight.models.autoencoder import frames_to_images, images_to_frames
from farsight.train.autoencoder import load_autoencoder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("autoencoder")
    p.add_argument("store")
    p.add_argument("--frames", type=int, default=400)
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.noise < 0:
        raise SystemExit(f"--noise {args.noise} must be >= 0")
    gen = torch.Generator().manual_seed(args.seed)
    store = EpisodeStore(args.store)
    objects = scene_objects(store)
    if objects is None:
        raise SystemExit(f"{args.store}: no named objects (no RAM map for its game, or no RAM)")
    ae = load_autoencoder(args.autoencoder)[0].eval()
    keys = ("frames", *objects.state_keys(store.arrays))
    hit_px = objects.size / 32
    sq, pixels = 0.0, 0
    per = {name: [0, 0, 0, []] for name in objects.names}
    for ep in store.asked_split("test"):
        n = min(store.episodes[ep].length, args.frames)
        read = store.read(ep, 0, n, keys=keys)
        frames = read["frames"]
        with torch.no_grad():
            images = frames_to_images(torch.as_tensor(frames))
            latents = ae.encode_normalized(images)
            if args.noise:
                latents = latents + args.noise * torch.randn(latents.shape, generator=gen)
            recon = images_to_frames(ae.decode_normalized(latents)).numpy()
        sq += float(((recon.astype(np.float64) - frames) ** 2).sum())
        pixels += frames.size
        rb = read_objects(recon[None], objects.state(read)[None], objects, gt_frames=frames[None])
        for k, name in enumerate(objects.names):
            m = rb.measured[0, :, k]
            f = rb.found[0, :, k]
            e = rb.error[0, :, k][f]
            row = per[name]
            row[0] += int(m.sum())
            row[1] += int(f.sum())
            row[2] += int((e <= hit_px).sum())
            row[3].extend(e.tolist())
    psnr = 10 * np.log10(255**2 / (sq / pixels))
    noise = f", latent noise {args.noise}" if args.noise else ""
    print(f"{args.autoencoder} on {args.store} (test split{noise}): PSNR {psnr:.2f} dB")
    print("| object | scored sightings | found | hit (2 px at 64) | distance of found (px) |")
    print("|---|---|---|---|---|")
    for name, (m, f, h, e) in per.items():
        dist = f"{np.mean(e):.2f}" if e else "-"
        print(f"| {name} | {m} | {f / max(m, 1):.3f} | {h / max(m, 1):.3f} | {dist} |")


if __name__ == "__main__":
    main()
