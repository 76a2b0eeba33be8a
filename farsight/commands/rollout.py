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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from farsight.errors import UsageError

if TYPE_CHECKING:
    from farsight.sampling.config import SamplingConfig

HELP = "video of a world model's rollout of a held-out episode next to the truth"


def register(sub: argparse._SubParsersAction, argv: list[str] | None = None) -> None:
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


@dataclass
class RolloutVideo:
    path: Path
    episode: int
    prompt_frames: int
    generated: int
    frames_per_second: float
    """Generation speed, decoding included, far-head panels excluded."""


def pick_episode(store, episode: int | None, split: str) -> int:
    if episode is not None:
        if not 0 <= episode < store.num_episodes:
            raise UsageError(f"--episode {episode} out of range: store has {store.num_episodes}")
        return episode
    try:
        episodes = store.split_episodes(split)
    except ValueError as e:
        raise UsageError(f"--split: {e}") from None
    if not episodes:
        raise UsageError(f"store {store.path} has no {split!r} episodes; pass --episode")
    return episodes[0]


def write_rollout_video(
    world_model,
    store,
    out: str | Path,
    *,
    frames: int,
    episode: int | None = None,
    split: str = "test",
    start: int = 0,
    prompt_frames: int | None = None,
    sampling: SamplingConfig | None = None,
    heads: bool = False,
    scale: int = 4,
    fps: float = 15.0,
    seed: int = 0,
    progress: bool = True,
) -> RolloutVideo:
    """The command's work, for any ``WorldModelLike`` and ``EpisodeStore``."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from farsight.sampling.rollout import far_head_predictions
    from farsight.video import caption, upscale, write_video
    from farsight.world_env import WorldModelEnv

    env = WorldModelEnv(world_model, store, sampling=sampling, prompt_frames=prompt_frames)
    # The env's view of the store: a model trained on latent (or no) actions is fed those.
    store = env.store
    episode = pick_episode(store, episode, split)
    length = store.episodes[episode].length
    if not 0 <= start < length - 1:
        raise UsageError(f"--start {start}: episode {episode} has {length} frames")
    prompt_len = min(env.prompt_frames, length - start - 1)
    env.prompt_frames = prompt_len
    generated = min(frames, length - start - prompt_len)
    if generated < frames and progress:
        print(f"episode {episode} has {length} frames: generating {generated}, not {frames}")
    if generated < 1:
        raise UsageError(f"--steps {frames} must be >= 1")
    truth = store.read(episode, start, prompt_len + generated, keys=("frames", "actions"))
    true_frames, true_actions = truth["frames"], truth["actions"]
    env.reset(
        seed=seed,
        options={
            "prompt": {"frames": true_frames[:prompt_len], "actions": true_actions[:prompt_len]}
        },
    )

    model = env.model
    offsets = model.cfg.heads.far_offsets if heads and model.heads is not None else ()
    if heads and model.heads is not None and model.heads.frame_mode:
        raise UsageError("--heads: far heads in action_mode 'frame' need true future frames")
    far_panels: list[list[np.ndarray]] = []
    heads_seconds = 0.0
    # Actions after the rollout's end are unknown: the last one is repeated for the far heads.
    padded_actions = np.concatenate([true_actions, np.repeat(true_actions[-1:], 8)])

    def sketch(index: int, frame: np.ndarray) -> None:
        nonlocal heads_seconds
        if not offsets:
            return
        t0 = time.perf_counter()
        newest = env.state.next_frame - 1  # clip time of the newest committed frame
        future = torch.as_tensor(
            padded_actions[newest : newest + model.cfg.heads.max_offset], device=env.device
        )[None]
        preds = far_head_predictions(model, env.state, future, env.policy)
        panels = []
        for k in offsets:
            pooled = preds[k]
            factor = model.cfg.latent_size[0] // pooled.shape[-2]
            full = F.interpolate(pooled, scale_factor=factor, mode="nearest")
            panels.append(
                caption(upscale(env.decode(full)[0], scale), f"head {k}: t={newest + k - 1}")
            )
        far_panels.append(panels)
        heads_seconds += time.perf_counter() - t0

    t0 = time.perf_counter()
    generated_frames = env.generate(
        true_actions[prompt_len - 1 : prompt_len - 1 + generated], sketch
    )
    seconds = time.perf_counter() - t0 - heads_seconds

    blank = None

    def rows():
        nonlocal blank
        for t in range(prompt_len + generated):
            real = caption(upscale(true_frames[t], scale), f"truth t={t}")
            if t < prompt_len:
                model_panel = caption(upscale(true_frames[t], scale), f"prompt t={t}")
            else:
                model_panel = caption(
                    upscale(generated_frames[t - prompt_len], scale), f"model t={t}"
                )
            row = [real, model_panel]
            if offsets:
                if t < prompt_len:
                    blank = np.zeros_like(model_panel) if blank is None else blank
                    row += [blank] * len(offsets)
                else:
                    row += far_panels[t - prompt_len]
            yield np.concatenate(row, axis=1)

    write_video(out, rows(), fps)
    return RolloutVideo(Path(out), episode, prompt_len, generated, generated / max(seconds, 1e-9))


def set_threads(threads: int) -> None:
    """``--threads``: torch's intra-op threads (0 leaves torch's default)."""
    if threads < 0:
        raise UsageError(f"--threads {threads} must be >= 0")
    if threads:
        import torch

        torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> int:
    from farsight.data.store import EpisodeStore
    from farsight.sampling.config import model_sampling, sampling_from_args
    from farsight.train.dynamics import load_world_model
    from farsight.train.precision import resolve_device

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
        f"frames/s with decoding on {device} ({sampling.steps} {sampling.sampler} steps, "
        f"{sampling.scheduling}, context {sampling.context})"
    )
    return 0
