"""Tile chosen frames of a rollout video (truth | model side by side) into one PNG.

python docs/results/video_frames.py runs/quickstart/rollout.mp4 OUT.png 4 5 7 11 19 35 67 123
"""

from __future__ import annotations

import sys

import imageio.v3 as iio
import numpy as np
from PIL import Image


def tile(video: str, out: str, indices: list[int], per_row: int = 2) -> None:
    frames = iio.imread(video)
    picked = [frames[min(i, len(frames) - 1)] for i in indices]
    h, w = picked[0].shape[:2]
    rows = -(-len(picked) // per_row)
    grid = np.zeros((rows * h, per_row * w, 3), np.uint8)
    for k, frame in enumerate(picked):
        r, c = divmod(k, per_row)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = frame
    Image.fromarray(grid).save(out)


if __name__ == "__main__":
    tile(sys.argv[1], sys.argv[2], [int(i) for i in sys.argv[3:]])
