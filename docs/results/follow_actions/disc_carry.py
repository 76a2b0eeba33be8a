"""Where a generated disc is lost: the second generated frame from altered first frames.

A rollout finds most discs in its first generated frame but few in its second. This script
holds the prompt fixed and swaps what the model is given as the first frame after it (frame
h=1), then samples frame h=2 and reads the discs back from it:

- ``generated``: the model's own frame h=1 (what a rollout does);
- ``true``: the encoder's latents of the true frame h=1;
- ``true + noise``: the true latents plus Gaussian noise of the generated frame's error size
  (per clip), so an error as large as the model's, but not the model's;
- ``generated, true discs``: the generated latents with the latent cells around each disc
  (its positions at the last prompt frame and at h=1, plus ``--pad`` px) taken from the truth;
- ``true, generated discs``: the converse, the truth with the model's disc cells.

If the model keeps the discs from ``true`` and from ``generated, true discs`` but not from
``generated``, what it draws at the discs is what loses them; if it loses them from
``generated, true discs`` as well, the rest of the generated frame does.

    python docs/results/follow_actions/disc_carry.py CKPT DATA [--clips 64] [--pad 2] \
        [--sampling.steps 4 ...]

Prints, per variant, the disc hit and miss rates at h=1 (the frame given) and h=2 (the frame
sampled from it) with 95% bootstrap intervals over clips, beside copy-last-frame, and each
disc's mass at h=1 and h=2: its pixels in the disc's colour (as the readback counts them),
over the true frame's, averaged over visible discs (a faint disc has mass near 0).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from farsight.data.store import EpisodeStore
from farsight.envs.arena import OBJECT_COLORS
from farsight.eval.positions import DEFAULT_HIT_PX, read_entities
from farsight.eval.run import ARENA_STATE_KEYS, pick_clips
from farsight.eval.stats import bootstrap_ci
from farsight.sampling.config import add_sampling_arguments, model_sampling, sampling_from_args
from farsight.sampling.rollout import commit, fork_state
from farsight.world_env import WorldModelEnv
from farsight.world_model import load_world_model

VARIANTS = ("generated", "true", "true + noise", "generated, true discs", "true, generated discs")


def disc_mask(
    objects: np.ndarray, camera: np.ndarray, shape, factor: int, pad: float
) -> np.ndarray:
    """(h, w) bool: latent cells whose pixels come within ``pad`` px of a disc's footprint.

    objects: (S, K, 2) world positions at S steps, camera: (S, 2); radius 3.5 px (the arena's)."""
    h, w = shape
    mask = np.zeros((h, w), bool)
    reach = 3.5 + pad
    for xy, cam in zip(objects, camera, strict=True):
        for x, y in xy - cam:
            c0, c1 = int(np.floor((x - reach) / factor)), int(np.floor((x + reach) / factor))
            r0, r1 = int(np.floor((y - reach) / factor)), int(np.floor((y + reach) / factor))
            if c1 < 0 or r1 < 0 or c0 >= w or r0 >= h:
                continue
            mask[max(r0, 0) : min(r1, h - 1) + 1, max(c0, 0) : min(c1, w - 1) + 1] = True
    return mask


def colour_mass(frames: np.ndarray, colours: np.ndarray, tol: int = 48) -> np.ndarray:
    """(..., K) pixels within ``tol`` of each colour on every channel (``locate_by_color``'s
    test) in frames (..., H, W, 3)."""
    f = frames.astype(np.int16)[..., None, :]  # (..., H, W, 1, 3)
    match = np.abs(f - colours.astype(np.int16)).max(-1) <= tol  # (..., H, W, K)
    return match.sum((-3, -2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt")
    p.add_argument("data")
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--pad", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    add_sampling_arguments(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    wm = load_world_model(args.ckpt)
    store = EpisodeStore(args.data)
    sampling = sampling_from_args(args, model_sampling(wm))
    env = WorldModelEnv(wm, store, sampling=sampling, seed=args.seed)
    missing = [k for k in ARENA_STATE_KEYS if k not in env.store.arrays]
    if missing:
        raise SystemExit(f"store {args.data} has no {', '.join(missing)}: an arena store is needed")
    P = env.prompt_frames
    factor = wm.autoencoder.cfg.factor
    clips = pick_clips(env.store, "test", P + 2, args.clips, args.seed)
    keys = ("frames", "actions", *ARENA_STATE_KEYS)

    # frames[v]: (N, 2, H, W, 3), the frame given at h=1 and the one sampled at h=2.
    frames = {v: [] for v in VARIANTS}
    truth_frames, copy_frames, states = [], [], {k: [] for k in ARENA_STATE_KEYS}
    for i, clip in enumerate(clips):
        t = env.store.read(clip.episode, clip.start, P + 2, keys=keys)
        seed = int(np.random.SeedSequence([args.seed, i]).generate_state(1)[0])
        env.reset(seed=seed, options={"prompt": clip.episode, "start": clip.start})
        a1 = torch.tensor([[int(t["actions"][P - 1])]])
        a2 = torch.tensor([[int(t["actions"][P])]])
        base = env.state
        true1 = env.encode(t["frames"][P : P + 1])[0, 0]
        gen = fork_state(base)
        gen1 = env.path.sample_frame(gen, a1, env.sampling)[0]
        gen2 = env.path.sample_frame(gen, a2, env.sampling)[0]
        mask = torch.as_tensor(
            disc_mask(
                t["state.objects"][P - 1 : P + 1],
                t["state.camera"][P - 1 : P + 1],
                true1.shape[-2:],
                factor,
                args.pad,
            )
        )
        err = gen1 - true1
        noise = torch.randn(true1.shape, generator=torch.Generator().manual_seed(seed))
        given = {
            "true": true1,
            "true + noise": true1 + noise * err.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt(),
            "generated, true discs": torch.where(mask, true1, gen1),
            "true, generated discs": torch.where(mask, gen1, true1),
        }
        frames["generated"].append(env.decode(torch.stack([gen1, gen2])))
        for name, x in given.items():
            s = fork_state(base)
            commit(wm.dynamics, s, x[None, None], a1, env.policy, wm.objective.schedule)
            x2 = env.path.sample_frame(s, a2, env.sampling)[0]
            frames[name].append(env.decode(torch.stack([x, x2])))
        truth_frames.append(t["frames"][P : P + 2])
        copy_frames.append(np.repeat(t["frames"][P - 1 : P], 2, axis=0))
        for k in ARENA_STATE_KEYS:
            states[k].append(t[k][P : P + 2])
    gt = np.stack(truth_frames)
    st = {k: np.stack(v) for k, v in states.items()}

    print(
        f"{len(clips)} test clips, prompt {P} frames, pad {args.pad} px,"
        f" hit <= {DEFAULT_HIT_PX} px, {sampling.sampler} {sampling.steps} steps"
    )
    head = ("hit h=1", "hit h=2", "miss h=2", "mass h=1", "mass h=2")
    print(f"{'variant':<24}" + "".join(f"{h:>22}" for h in head))
    k = st["state.objects"].shape[2]
    true_mass = colour_mass(gt, OBJECT_COLORS[:k]).astype(float)  # (N, 2, K)
    rows = [("copy-last-frame", np.stack(copy_frames))] + [
        (v, np.stack(frames[v])) for v in VARIANTS
    ]
    for name, gen_a in rows:
        rb = read_entities(
            gen_a, st["state.player"], st["state.camera"], st["state.objects"], gt_frames=gt
        )
        vis = rb.visible[:, :, 1:]  # discs only (entity 0 is the player)
        hit = rb.found[:, :, 1:] & (np.nan_to_num(rb.error[:, :, 1:], nan=np.inf) <= DEFAULT_HIT_PX)
        miss = vis & ~rb.found[:, :, 1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = colour_mass(gen_a, OBJECT_COLORS[:k]) / true_mass
        ratio = np.where(vis & (true_mass > 0), np.minimum(ratio, 2.0), 0.0)
        counted = (vis & (true_mass > 0)).astype(float)
        seen = vis.astype(float)
        cells = [rate_of(hit, seen, 0), rate_of(hit, seen, 1), rate_of(miss, seen, 1)]
        cells += [rate_of(ratio, counted, h) for h in (0, 1)]
        print(f"{name:<24}" + "".join(f"{c:>22}" for c in cells))
    print(f"discs visible: h=1 {int(vis[:, 0].sum())}, h=2 {int(vis[:, 1].sum())}")


def rate_of(value: np.ndarray, weight: np.ndarray, h: int) -> str:
    """Weighted mean of value (N, T, K) at step h over clips and discs, with its interval."""
    num, den = (value * weight)[:, h].sum(-1), weight[:, h].sum(-1)
    ci = bootstrap_ci(
        np.stack([num, den], -1), lambda b: b[..., 0].sum(-1) / b[..., 1].sum(-1), seed=0
    )
    return f"{ci.estimate:.2f} [{ci.low:.2f}, {ci.high:.2f}]"


if __name__ == "__main__":
    main()
