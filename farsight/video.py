"""mp4 writing (imageio + ffmpeg's libx264) and frame annotation."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image, ImageDraw


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float = 15.0) -> int:
    """Encode uint8 (H, W, 3) frames to ``path``; written beside it, then renamed. Returns count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    count = 0
    try:
        # macro_block_size=1 keeps odd sizes exact instead of padding them to multiples of 16.
        with imageio.get_writer(
            tmp, fps=fps, codec="libx264", macro_block_size=1, quality=8, pixelformat="yuv420p"
        ) as writer:
            for frame in frames:
                writer.append_data(np.ascontiguousarray(frame))
                count += 1
        if count == 0:
            raise ValueError(f"no frames to write to {path}")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def upscale(frame: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling: keeps pixel-art frames crisp."""
    return frame.repeat(factor, axis=0).repeat(factor, axis=1)


def caption(frame: np.ndarray, text: str, height: int = 14) -> np.ndarray:
    """Add a black strip with ``text`` under the frame."""
    h, w, _ = frame.shape
    canvas = Image.new("RGB", (w, h + height), (0, 0, 0))
    canvas.paste(Image.fromarray(frame), (0, 0))
    ImageDraw.Draw(canvas).text((2, h + 1), text, fill=(255, 255, 255))
    return np.asarray(canvas)
