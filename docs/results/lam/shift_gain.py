"""What a reconstruction loss pays for knowing which way the camera moved (an arena store,
which records ``state.camera``).

For the test pairs of one episode, grouped by the sign of the camera's move (3 x 3 classes), the
gain over copying x_t (1 - loss / loss of the copy) of three predictions of x_{t+1}, all moves
of x_t as the LAM decoder's warp makes them:
    move     x_t moved by the single shift that explains the pair best (the exact answer)
    axis     the mean of x_t moved by that shift and by its opposite (the answer of a code that
             knows the axis of the move but not its sign)
    ring     the mean of x_t moved by every shift of 2 px (moving, which way unknown)
under the squared error (the LAM's ``objective.l2``) and the absolute error (``objective.l1``).

    python docs/results/lam/shift_gain.py STORE [PAIRS]
"""

import sys

import numpy as np
import torch

from farsight.data.store import EpisodeStore
from farsight.models.autoencoder import frames_to_images
from farsight.models.lam import shifts

LOSSES = {"l2": lambda e: e.pow(2), "l1": lambda e: e.abs()}
CLASSES = {1: "x-", 3: "y-", 5: "y+", 7: "x+", 0: "x-y-", 2: "x-y+"}


def move_class(delta: np.ndarray) -> np.ndarray:
    """(T, 2) moves -> one of 3 x 3 classes by the sign of each axis."""
    sign = np.sign(np.round(delta)) + 1
    return (sign[:, 0] * 3 + sign[:, 1]).astype(int)


def main(store_path: str, pairs: int = 300) -> None:
    torch.set_num_threads(1)
    store = EpisodeStore(store_path)
    a = store.read(store.split_episodes("test")[0], keys=("frames", "state.camera"))
    x = frames_to_images(torch.from_numpy(a["frames"][: pairs + 1]))
    x0, x1 = x[:-1], x[1:]
    cls = move_class(np.diff(a["state.camera"], axis=0))[:pairs]
    grid = shifts(3, 1)
    errors = torch.stack([(x1 - torch.roll(x0, s, (2, 3))).pow(2).mean((1, 2, 3)) for s in grid])
    best = errors.argmin(0)
    ring = [s for s in grid if max(abs(s[0]), abs(s[1])) == 2]
    print("camera move  pairs  " + "  ".join(f"{n}: move / axis / ring" for n in LOSSES))
    for k, name in CLASSES.items():
        m = torch.from_numpy(cls == k)
        s = grid[int(torch.mode(best[m]).values)]
        move = torch.roll(x0[m], s, (2, 3))
        guesses = {
            "move": move,
            "axis": 0.5 * (move + torch.roll(x0[m], (-s[0], -s[1]), (2, 3))),
            "ring": torch.stack([torch.roll(x0[m], t, (2, 3)) for t in ring]).mean(0),
        }
        row = []
        for f in LOSSES.values():
            copy = f(x1[m] - x0[m]).mean((1, 2, 3))
            gains = [1 - (f(x1[m] - g).mean((1, 2, 3)) / copy).mean() for g in guesses.values()]
            row.append(" / ".join(f"{float(g):.2f}" for g in gains))
        print(f"{name:11s}  {int(m.sum()):5d}  " + "      ".join(row))


if __name__ == "__main__":
    main(sys.argv[1], *(int(v) for v in sys.argv[2:3]))
