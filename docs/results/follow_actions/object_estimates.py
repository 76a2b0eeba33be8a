"""Does a dynamics model's one-step estimate of the next frame hold a named object?

A rollout that loses an object at h=1 may lose it in its sampler (the first step's estimate
is a conditional mean; later steps could still commit to one position) or in the model (it
never draws the object, whatever it is given). This script asks the model directly, on test
clips of the store (``--length`` frames; the last one is the target, the earlier ones are the
encoder's latents of the true frames, clean), for head 1's clean estimate of the target:

- ``tau=1``: from pure noise (a rollout's first denoising step);
- ``tau=L (true frame)``: from the true target noised to level L (``--levels``): how a
  denoiser that was shown the object, half drowned, draws it.

Each estimate is decoded and searched for ``--object`` as ``farsight eval`` searches
generated frames (``farsight/eval/positions.py``): ``found`` a blob of half the object's area
within 1/8 of the frame of its true position, ``hit`` within 1/32 (2 px at 64 x 64).
Copy-last-frame (the previous true frame, decoded) is the reference. In latents, at the cell
holding the object's true centre: ``kept``, the share of the change from the previous frame
to the true one that the estimate makes (the projection of estimate - previous on true -
previous; 0 for a copy of the previous frame, 1 for the truth), and the cell's squared error
(channels summed) beside the frame's mean per cell. Give several
checkpoints (copies of one run's ``checkpoint.pt`` as it trained) for a curve.

    python docs/results/follow_actions/object_estimates.py STORE CKPT [CKPT ...] \
        [--object ball] [--length 12] [--clips 64] [--levels 0.5]

Prints, per checkpoint (with its training step) and estimate, the found and hit shares of
the scored sightings with 95% bootstrap intervals over them, the median ``kept`` and the mean
squared errors over the same sightings.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from farsight import diffusion
from farsight.data.store import EpisodeStore
from farsight.eval.positions import read_objects, scene_objects
from farsight.eval.run import pick_clips
from farsight.eval.stats import bootstrap_ci
from farsight.models.autoencoder import frames_to_images, images_to_frames
from farsight.objectives.action_probe import clean_estimate
from farsight.world_model import load_world_model


def estimate(wm, context: torch.Tensor, actions: torch.Tensor, last: torch.Tensor, tau: float):
    """Head 1's clean estimate (1, C, H, W) of the last frame of ``context`` (1, T, C, H, W,
    clean latents) when that frame is given as ``last`` at noise level ``tau``."""
    x = context.clone()
    x[:, -1] = last
    levels = torch.zeros(x.shape[:2])
    levels[:, -1] = tau
    return clean_estimate(wm.dynamics, x, levels, actions, wm.objective)[:, -1]


def named_object(path: str, name: str):
    """(store, its SceneObjects, the index of object ``name``, the keys to read for frames,
    actions and the objects' state) of the store at ``path``; exits naming the store and
    its objects if it has no object ``name``."""
    store = EpisodeStore(path)
    objects = scene_objects(store)
    if objects is None or name not in objects.names:
        names = objects.names if objects is not None else ()
        raise SystemExit(f"{path}: no object {name!r} (named objects: {names})")
    keys = ("frames", "actions", *objects.state_keys(store.arrays))
    return store, objects, objects.names.index(name), keys


def clips_with_latents(wm, store, keys, length: int, count: int, seed: int):
    """Yields (read, latents (1, T, C, H, W), actions (1, T)) for ``count`` test clips of
    ``length`` frames: the store read of ``keys`` and the encoder's latents of its frames."""
    for clip in pick_clips(store, "test", length, count, seed):
        read = store.read(clip.episode, clip.start, length, keys=keys)
        frames = torch.as_tensor(read["frames"])
        latents = wm.autoencoder.encode_normalized(frames_to_images(frames))[None]
        yield read, latents, torch.as_tensor(read["actions"])[None].long()


def object_cell(read: dict, latents: torch.Tensor, xy) -> tuple[int, int] | None:
    """The (row, column) of the latent cell holding pixel position ``xy`` (None if NaN)."""
    factor = read["frames"].shape[1] / latents.shape[-2]  # pixels per latent cell
    x, y = xy
    return (int(y // factor), int(x // factor)) if np.isfinite(x + y) else None


def at_cell(guess: torch.Tensor, previous: torch.Tensor, truth: torch.Tensor, cell):
    """(kept share of the change, squared error at ``cell``, mean squared error per cell) of
    an estimate ``guess`` (C, H, W) of ``truth`` given the ``previous`` frame, all latents."""
    r, c = cell
    change = truth[:, r, c] - previous[:, r, c]
    made = guess[:, r, c] - previous[:, r, c]
    kept = float((made * change).sum() / change.pow(2).sum().clamp_min(1e-9))
    err = (guess - truth).pow(2).sum(0)
    return kept, float(err[r, c]), float(err.mean())


def parse_clip_args(doc: str, levels: str, top: float, top_included: bool):
    """The command line shared by the object scripts (STORE CKPT [CKPT ...] --object
    --length --clips --levels --seed): (args, the levels as floats), exiting on a length
    under 2 or a level outside (0, top) (or (0, top] with ``top_included``)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("store")
    p.add_argument("ckpts", nargs="+")
    p.add_argument("--object", default="ball")
    p.add_argument("--length", type=int, default=12)
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--levels", default=levels)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    values = [float(v) for v in args.levels.split(",")]
    inside = (lambda v: 0 < v <= top) if top_included else (lambda v: 0 < v < top)
    if args.length < 2 or not all(inside(v) for v in values):
        bracket = "]" if top_included else ")"
        raise SystemExit(
            f"--length {args.length} must be >= 2, --levels {args.levels} in (0, {top:g}{bracket}"
        )
    return args, values


def main() -> None:
    args, levels = parse_clip_args(__doc__, "0.5", top=1.0, top_included=False)
    torch.set_grad_enabled(False)
    store, objects, k, keys = named_object(args.store, args.object)
    hit_px = objects.size / 32

    for path in args.ckpts:
        wm = load_world_model(path)
        ae = wm.autoencoder
        rows = ["copy-last-frame", "tau=1", *(f"tau={v} (true frame)" for v in levels)]
        found = {name: [] for name in rows}
        hit = {name: [] for name in rows}
        cells = {name: [] for name in rows}
        gen = torch.Generator().manual_seed(args.seed)
        for read, latents, actions in clips_with_latents(
            wm, store, keys, args.length, args.clips, args.seed
        ):
            frames = read["frames"]
            eps = torch.randn(latents[:, -1].shape, generator=gen)
            outs = {
                "copy-last-frame": latents[:, -2],
                "tau=1": estimate(wm, latents, actions, eps, 1.0),
            }
            for v in levels:
                noisy = diffusion.add_noise(
                    latents[:, -1], eps, torch.tensor([v]), wm.objective.schedule
                )
                outs[f"tau={v} (true frame)"] = estimate(wm, latents, actions, noisy, v)
            truth = objects.state(read)[-1:][None]
            cell = object_cell(read, latents, truth.xy[0, 0, k])
            for name, lat in outs.items():
                image = images_to_frames(ae.decode_normalized(lat)).numpy()
                rb = read_objects(image[None], truth, objects, gt_frames=frames[-1:][None])
                if rb.measured[0, 0, k]:
                    f = bool(rb.found[0, 0, k])
                    found[name].append(float(f))
                    hit[name].append(float(f and rb.error[0, 0, k] <= hit_px))
                    if cell is not None:
                        cells[name].append(at_cell(lat[0], latents[0, -2], latents[0, -1], cell))
        print(f"{path} (step {wm.step}): {args.object}, {len(found['tau=1'])} sightings")
        print(
            "| estimate | found | hit | kept (median) | error at its cell / frame mean per cell |"
        )
        print("|---|---|---|---|---|")
        for name in rows:
            shown = []
            for values in (found[name], hit[name]):
                v = np.asarray(values)
                ci = bootstrap_ci(v, seed=args.seed)
                shown.append(f"{v.mean():.2f} [{ci.low:.2f}, {ci.high:.2f}]")
            kept, err, mean = np.asarray(cells[name]).reshape(-1, 3).T
            shown.append(f"{np.median(kept):.2f}" if kept.size else "-")
            shown.append(f"{err.mean():.3f} / {mean.mean():.4f}" if kept.size else "-")
            print(f"| {name} | {' | '.join(shown)} |")


if __name__ == "__main__":
    main()
