"""``farsight quickstart``: the whole pipeline on the built-in arena, with defaults.

Each stage is skipped when its output already exists, so an interrupted quickstart resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from farsight.commands import data as data_cmd
from farsight.config import apply_overrides
from farsight.data.recorder import RECORD_RECIPES, record


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="record the built-in arena and preview it")
    p.add_argument("--out", default="runs/quickstart", help="folder for everything it makes")
    p.add_argument("--frames", type=int, default=30_000, help="frames to record")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    store = out / "data"
    print(f"[1/2] recording the built-in arena into {store}")
    cfg = apply_overrides(
        RECORD_RECIPES.get("arena"), [f"frames={args.frames}", f"seed={args.seed}"]
    )
    record(cfg, store)
    video = out / "preview.mp4"
    print(f"[2/2] writing a preview video to {video}")
    data_cmd.run_preview(
        argparse.Namespace(store=str(store), out=str(video), episode=0, frames=300, scale=4, fps=15)
    )
    print()
    print(f"done. the store:      farsight data info {store}")
    print(f"      the preview:    {video}")
    return 0
