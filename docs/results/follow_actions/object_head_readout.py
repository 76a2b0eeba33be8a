"""Does the trunk know where an object goes next? The object head's answer, read out.

A model trained with ``objective.object_maps`` has an object head that says, for the frame
being denoised, where each entity of the store's ground truth is (one bump per entity on the
latent grid). Head 1 reads the same last-block tokens. If the head places an object at its
next position from a frame that shows nothing of it (pure noise), the trunk carries the
object's position and velocity, and a rollout that copies the object instead of moving it
loses it in head 1; if the head places it where it was (or nowhere), the trunk does not.

For a store whose game has a RAM map (``state.object_xy``; the arena's stores name no
objects for ``farsight/eval/positions.py``). On test clips of the store (``--length``
frames; the earlier ones the encoder's latents of the true frames, clean; the last one the
target at noise level ``tau``), the object's map is read at the target: its peak cell,
refined by the map-weighted centroid of the 3 x 3 cells around it, in frame pixels. Reported
against the true position of the target frame and, as the reference, the object's position
in the previous frame (where a copy draws it): the share of sightings within ``hit`` (1/32
of the frame, 2 px at 64 x 64, as ``farsight eval``) and within 3 px, the median error, and
the share where the peak is under 0.25 ("placed nowhere"; such a guess still counts in the
shares, at its peak cell).

    python docs/results/follow_actions/object_head_readout.py STORE CKPT [CKPT ...] \
        [--object ball] [--length 12] [--clips 64] [--levels 1,0.5]
"""

from __future__ import annotations

import numpy as np
import torch
from object_estimates import clips_with_latents, named_object, parse_clip_args

from farsight import diffusion
from farsight.eval.stats import bootstrap_ci
from farsight.world_model import load_world_model


def peak_position(heat: torch.Tensor, cell: float) -> tuple[np.ndarray, float]:
    """(x, y) frame pixels of a map's (H, W) peak, refined by the centroid of the 3 x 3
    cells around it, and the peak's value."""
    h, w = heat.shape
    r, c = divmod(int(heat.argmax()), w)
    rows = slice(max(r - 1, 0), min(r + 2, h))
    cols = slice(max(c - 1, 0), min(c + 2, w))
    patch = heat[rows, cols].clamp_min(0)
    ys = torch.arange(rows.start, rows.stop, dtype=heat.dtype) + 0.5
    xs = torch.arange(cols.start, cols.stop, dtype=heat.dtype) + 0.5
    mass = patch.sum().clamp_min(1e-9)
    y = float((patch.sum(1) * ys).sum() / mass)
    x = float((patch.sum(0) * xs).sum() / mass)
    return np.array([x, y]) * cell, float(heat[r, c])


def main() -> None:
    args, levels = parse_clip_args(__doc__, "1,0.5", top=1.0, top_included=True)
    torch.set_grad_enabled(False)
    store, objects, k, keys = named_object(args.store, args.object)
    hit_px = objects.size / 32

    for path in args.ckpts:
        wm = load_world_model(path)
        model = wm.dynamics
        if model.object_head is None:
            raise SystemExit(f"{path}: the model has no object head (model.object_channels=0)")
        rows = ["previous position (copy)", *(f"object head, tau={v}" for v in levels)]
        errors: dict[str, list[float]] = {name: [] for name in rows}
        nowhere: dict[str, list[float]] = {name: [] for name in rows}
        gen = torch.Generator().manual_seed(args.seed)
        for read, latents, actions in clips_with_latents(
            wm, store, keys, args.length, args.clips, args.seed
        ):
            xy = objects.state(read).xy[-2:, k]  # (2, 2): previous and target frame
            if not np.isfinite(xy).all():
                continue
            cell = read["frames"].shape[1] / latents.shape[-2]
            errors[rows[0]].append(float(np.linalg.norm(xy[0] - xy[1])))
            nowhere[rows[0]].append(0.0)
            eps = torch.randn(latents[:, -1].shape, generator=gen)
            for v, name in zip(levels, rows[1:], strict=True):
                x = latents.clone()
                x[:, -1] = diffusion.add_noise(
                    latents[:, -1], eps, torch.tensor([v]), wm.objective.schedule
                )
                tau = torch.zeros(x.shape[:2])
                tau[:, -1] = v
                context_level = torch.zeros_like(tau) if model.cfg.context_level_embed else None
                out = model(x, tau, actions, context_level=context_level, heads=False)
                guess, value = peak_position(out.objects[0, -1, k].float(), cell)
                errors[name].append(float(np.linalg.norm(guess - xy[1])))
                nowhere[name].append(float(value < 0.25))
        n = len(errors[rows[0]])
        print(f"{path} (step {wm.step}): {args.object}, {n} sightings (in both frames)")
        header = f"within {hit_px:g} px | within 3 px | median error (px) | placed nowhere"
        print(f"| position | {header} |")
        print("|---|---|---|---|---|")
        for name in rows:
            e = np.asarray(errors[name])
            shown = []
            for v in (e <= hit_px, e <= 3.0):
                v = v.astype(float)
                ci = bootstrap_ci(v, seed=args.seed)
                shown.append(f"{v.mean():.2f} [{ci.low:.2f}, {ci.high:.2f}]")
            shown.append(f"{np.median(e):.2f}")
            shown.append(f"{np.mean(nowhere[name]):.2f}")
            print(f"| {name} | {' | '.join(shown)} |")


if __name__ == "__main__":
    main()
