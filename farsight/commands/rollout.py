"""``farsight rollout``: a world model's open-loop rollout of a held-out episode, as a video.

    farsight rollout --ckpt RUN --data STORE --steps 300 --out rollout.mp4 [--heads]
        [--episode E] [--split test] [--sampling.steps 4 --sampling.context dynamic ...]

The model is prompted with the first frames of a held-out episode (as many as it was trained
on, at most its window) and fed that episode's true actions; the video shows the ground truth
and the generation side by side (the prompt first, marked). ``--heads`` adds one panel per far
head: what it predicts from the frame just generated (t) for frame t + k - 1, a pooled latent
upsampled by nearest neighbour and decoded: the model's low-resolution "sketch" of the future.

Prints the generation speed (frames/s including decoding, the far-head panels excluded).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from farsight.errors import UsageError

if TYPE_CHECKING:
    pass

HELP = "video of a world model's rollout of a held-out episode next to the truth"


def register(sub: argparse._SubParsersAction, argv: list[str] | None = None) -> None:
    # lazy: imported when this command's parser is built: cli imports every command module.
    from farsight.sampling.config import add_sampling_arguments

    p = sub.add_parser(
        "rollout",
        help=HELP,
        description="Prompt a trained world model with the first frames of a held-out episode, "
        "feed it that episode's true actions, and write ground truth | generation side by side.",
    )
    p.add_argument("--ckpt", required=True, help="dynamics checkpoint or run folder")
    p.add_argument("--data", required=True, help="episode store to take the episode from")
    p.add_argument("--steps", type=int, default=200, help="frames to generate (default 200)")
    p.add_argument("--out", required=True, help="mp4 path")
    p.add_argument("--episode", type=int, help="episode id (default: the split's first)")
    p.add_argument("--split", default="test", help="split to take the episode from (test)")
    p.add_argument("--start", type=int, default=0, help="first prompt frame in the episode")
    p.add_argument("--prompt-frames", type=int, help="prompt length (default: trained clip)")
    p.add_argument(
        "--heads",
        action="store_true",
        help="add the far heads' predictions from each new frame (chunked schedulings: from "
        "the newest committed frame)",
    )
    p.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscale (default 4)")
    p.add_argument("--fps", type=float, default=15.0, help="video frame rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: a frame's model calls are too small to split, and "
        "on a busy machine a second thread stalls at barriers; 0: torch's default)",
    )
    add_sampling_arguments(p)
    p.set_defaults(func=run)


def set_threads(threads: int) -> None:
    """``--threads``: torch's intra-op threads (0 leaves torch's default)."""
    if threads < 0:
        raise UsageError(f"--threads {threads} must be >= 0")
    if threads:
        # lazy: imported when the command runs: cli imports every command module at startup.
        import torch

        torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs: they import torch, which --help never needs.
    from farsight.data.store import EpisodeStore
    from farsight.precision import resolve_device
    from farsight.rollout_video import write_rollout_video
    from farsight.sampling.config import model_sampling, sampling_from_args
    from farsight.sampling.frame_path import path_class
    from farsight.world_model import load_world_model

    if args.steps < 1:
        raise UsageError(f"--steps {args.steps} must be >= 1")
    if args.scale < 1:
        raise UsageError(f"--scale {args.scale} must be >= 1")
    sampling_from_args(args)  # a bad flag fails before the checkpoint loads
    device = resolve_device(args.device)
    set_threads(args.threads)
    world_model = load_world_model(args.ckpt, device)
    sampling = sampling_from_args(args, model_sampling(world_model))
    store = EpisodeStore(args.data)
    result = write_rollout_video(
        world_model,
        store,
        args.out,
        frames=args.steps,
        episode=args.episode,
        split=args.split,
        start=args.start,
        prompt_frames=args.prompt_frames,
        sampling=sampling,
        heads=args.heads,
        scale=args.scale,
        fps=args.fps,
        seed=args.seed,
    )
    print(
        f"wrote {result.path}: episode {result.episode}, {result.prompt_frames} prompt + "
        f"{result.generated} generated frames; generation {result.frames_per_second:.1f} "
        f"frames/s with decoding on {device} "
        f"({path_class(world_model.objective.kind).describe(dataclasses.asdict(sampling))})"
    )
    return 0
