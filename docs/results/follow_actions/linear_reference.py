"""The best a per-action *linear* next-frame predictor does in an autoencoder's latent space.

For each action, least squares from the k x k neighbourhood of every latent cell of frame t
(plus a bias) to the cell of frame t + 1, fitted on the train split of a latent cache and
scored on its val split: latent MSE with the true action's map and with a uniformly random
action's map (their ratio in dB is a one-step Delta-PSNR in latent space), beside
copy-last-frame. A trained world model that does not reach these figures has not yet learned
what a few seconds of least squares finds.

    python docs/results/follow_actions/linear_reference.py CACHE [K]
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from farsight.latents import LatentCache


def pairs(cache: LatentCache, split: str):
    store = cache.store
    xs, ys, acts = [], [], []
    for ep in store.split_episodes(split):
        d = store.read(ep, keys=("latents", "actions"))
        z = cache.to_float(torch.as_tensor(np.asarray(d["latents"]))).numpy()
        xs.append(z[:-1])
        ys.append(z[1:])
        acts.append(np.asarray(d["actions"])[:-1])
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(acts)


def features(z: np.ndarray, k: int) -> np.ndarray:
    """(N, C, H, W) -> (N * H * W, C * k * k + 1): each cell's neighbourhood and a bias."""
    f = torch.nn.functional.unfold(torch.as_tensor(z), k, padding=k // 2)
    f = f.transpose(1, 2).reshape(-1, f.shape[1]).numpy()
    return np.concatenate([f, np.ones((len(f), 1), np.float32)], 1)


def targets(z: np.ndarray) -> np.ndarray:
    return z.transpose(0, 2, 3, 1).reshape(-1, z.shape[1])


def main(path: str, k: int = 3, per_action: int = 2000, seed: int = 0) -> None:
    cache = LatentCache(path)
    x_tr, y_tr, a_tr = pairs(cache, "train")
    x_va, y_va, a_va = pairs(cache, "val")
    actions = int(max(a_tr.max(), a_va.max())) + 1
    maps = []
    for a in range(actions):
        idx = np.where(a_tr == a)[0][:per_action]
        maps.append(np.linalg.lstsq(features(x_tr[idx], k), targets(y_tr[idx]), rcond=None)[0])
    drawn = np.random.default_rng(seed).integers(0, actions, len(a_va))
    true_se = random_se = count = 0.0
    for a in range(actions):
        here = a_va == a
        true_se += ((features(x_va[here], k) @ maps[a] - targets(y_va[here])) ** 2).sum()
        count += targets(y_va[here]).size
        for b in range(actions):
            both = here & (drawn == b)
            if both.any():
                pred = features(x_va[both], k) @ maps[b]
                random_se += ((pred - targets(y_va[both])) ** 2).sum()
    copy = float(((x_va - y_va) ** 2).mean())
    true, rand = true_se / count, random_se / count
    print(f"{path}: {len(x_tr)} train pairs, {len(x_va)} val pairs, k={k}")
    print(f"latent MSE: copy {copy:.4f}  per-action linear {true:.4f}  random action {rand:.4f}")
    print(
        f"action gain {10 * np.log10(rand / true):.2f} dB, "
        f"gain over copy {10 * np.log10(copy / true):.2f} dB"
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)
