"""What a LAM's codes follow on a Breakout store's test split (``state.object_xy`` recorded
from the RAM, object 0 the paddle): NMI of the codes with the true action (95% bootstrap
interval over blocks of consecutive pairs, as ``what_codes.py``) and with the sign of the
paddle's move, and how much of the action the paddle's move itself tells: the ceiling of
any labelling that reads the action off the paddle. Then the true action (rows) against the
paddle's move (columns: left, still, right) and against the codes (columns), in pairs.

    python docs/results/lam/paddle_codes.py RUN STORE
"""

import sys

import numpy as np
from what_codes import block_interval

from farsight.data.store import EpisodeStore
from farsight.latent_actions import contingency, infer_episode
from farsight.latent_actions import normalized_mutual_information as nmi
from farsight.train.lam import load_lam


def paddle_moves(store: EpisodeStore, split: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per test episode: the actions a_0..a_{T-2} and the sign of the paddle's x move over each
    pair (0 left, 1 still, 2 right; a move under half a pixel is still)."""
    actions, moves = [], []
    for e in store.split_episodes(split):
        a = store.read(e, keys=("actions", "state.object_xy"))
        actions.append(a["actions"][:-1].astype(int))
        moves.append((np.sign(np.round(np.diff(a["state.object_xy"][:, 0, 0]))) + 1).astype(int))
    return actions, moves


def main(run: str, store_path: str) -> None:
    store = EpisodeStore(store_path)
    if "state.object_xy" not in store.arrays:
        raise SystemExit(
            f"{store_path} records no state.object_xy (the paddle's position): record an ALE "
            "game with a RAM map (farsight record atari)"
        )
    actions, moves = paddle_moves(store, "test")
    if run != "-":
        lam, _, _ = load_lam(run)
        codes = [
            infer_episode(lam, store.read(e, keys=("frames",))["frames"], "cpu")[:-1]
            for e in store.split_episodes("test")
        ]
    a, m = np.concatenate(actions), np.concatenate(moves)
    print(f"test pairs {len(a)}; NMI paddle move-actions (what the paddle tells) {nmi(a, m):.3f}")
    print("action (rows) x paddle move (left, still, right):")
    print(contingency(a, m, int(a.max()) + 1, 3))
    if run == "-":
        return
    z = np.concatenate(codes)
    ci = block_interval(actions, codes)
    used = np.bincount(z, minlength=lam.num_codes)
    print(
        f"NMI codes-actions {nmi(a, z):.3f} [{ci.low:.3f}, {ci.high:.3f}] (bootstrap over blocks)"
        f"  codes-paddle move {nmi(m, z):.3f}  codes used {(used > 0).sum()} of {lam.num_codes}"
    )
    print("action (rows) x code (columns):")
    print(contingency(a, z, int(a.max()) + 1, lam.num_codes))
    print("paddle move (rows: left, still, right) x code (columns):")
    print(contingency(m, z, 3, lam.num_codes))


if __name__ == "__main__":
    main(*sys.argv[1:3])
