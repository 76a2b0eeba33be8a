"""What a LAM's codes follow on a store's test split: NMI with the true action, with the sign of
the camera's move, with the sign of the player's move in the view and in the world, and how
much of the true action those moves themselves tell, with a 95% bootstrap interval of the first
over blocks of consecutive pairs (an arena store, which records
``state.camera`` and ``state.player``); then how many pairs of each sign of the camera's move
(rows: x and y each -, 0, +, x major) each code (columns) labels.

    python docs/results/lam/what_codes.py RUN STORE
"""

import sys

import numpy as np

from farsight.data.store import EpisodeStore
from farsight.eval.stats import bootstrap_ci
from farsight.latent_actions import contingency, infer_episode
from farsight.latent_actions import normalized_mutual_information as nmi
from farsight.train.lam import load_lam


def move_class(delta: np.ndarray) -> np.ndarray:
    """(T, 2) moves -> one of 3 x 3 classes by the sign of each axis."""
    sign = np.sign(np.round(delta)) + 1
    return (sign[:, 0] * 3 + sign[:, 1]).astype(int)


BLOCK = 64
"""Consecutive pairs of an episode resampled together by the interval: neighbouring pairs share
an action (the recording policy holds each for up to 12 steps), so single pairs are not
independent units."""


def block_interval(actions: list[np.ndarray], codes: list[np.ndarray]):
    """95% percentile-bootstrap interval of NMI(codes, actions) over blocks of ``BLOCK`` pairs
    (an episode's tail shorter than a block is left out)."""
    blocks = [
        np.stack([a[i : i + BLOCK], z[i : i + BLOCK]], -1)
        for a, z in zip(actions, codes, strict=True)
        for i in range(0, len(a) - BLOCK + 1, BLOCK)
    ]

    def statistic(batch: np.ndarray) -> np.ndarray:
        flat = batch.reshape(len(batch), -1, 2).astype(int)
        return np.array([nmi(f[:, 0], f[:, 1]) for f in flat])

    return bootstrap_ci(np.stack(blocks), statistic, n_boot=1000)


def main(run: str, store_path: str) -> None:
    store = EpisodeStore(store_path)
    lam, _, _ = load_lam(run)
    keys = ("frames", "actions", "state.camera", "state.player")
    actions, codes, camera, view, world = [], [], [], [], []
    for e in store.split_episodes("test"):
        a = store.read(e, keys=keys)
        codes.append(infer_episode(lam, a["frames"], "cpu")[:-1])
        actions.append(a["actions"][:-1])
        camera.append(move_class(np.diff(a["state.camera"], axis=0)))
        view.append(move_class(np.diff(a["state.player"] - a["state.camera"], axis=0)))
        world.append(move_class(np.diff(a["state.player"], axis=0)))
    a, z, c, v, w = (np.concatenate(x).astype(int) for x in (actions, codes, camera, view, world))
    print(
        f"NMI codes-actions {nmi(a, z):.3f}  codes-camera move {nmi(c, z):.3f}  "
        f"codes-player move in view {nmi(v, z):.3f}  codes-player move in world {nmi(w, z):.3f}  "
        f"camera move-actions {nmi(a, c):.3f}  (camera, view moves)-actions {nmi(a, c * 9 + v):.3f}"
        f"  player move in world-actions {nmi(a, w):.3f}"
    )
    ci = block_interval(actions, codes)
    print(f"NMI codes-actions 95% interval [{ci.low:.3f}, {ci.high:.3f}] (bootstrap over blocks)")
    print("camera move (rows) x code (columns):")
    print(contingency(c, z, 9, lam.num_codes))


if __name__ == "__main__":
    main(*sys.argv[1:3])
