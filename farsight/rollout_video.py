"""A world model's open-loop rollout of a store episode, as a video next to the truth.

The model is prompted with the first frames of the episode (as many as it was trained on, at
most its window) and fed that episode's true actions; each video row shows the ground truth and
the generation side by side (the prompt first, marked). With ``heads``, one panel per far head:
what it predicts from the frame just generated (t) for frame t + k - 1, a pooled latent
upsampled by nearest neighbour and decoded. ``farsight rollout`` writes one from a checkpoint;
a dynamics run writes one at every validation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from farsight.data.store import EpisodeStore
from farsight.errors import UsageError
from farsight.sampling.config import SamplingConfig
from farsight.sampling.rollout import far_head_predictions
from farsight.video import caption, upscale, write_video
from farsight.world_env import WorldModelEnv, WorldModelLike


@dataclass
class RolloutVideo:
    path: Path
    episode: int
    prompt_frames: int
    generated: int
    frames_per_second: float
    """Generation speed, decoding included, far-head panels excluded."""


def pick_episode(store: EpisodeStore, episode: int | None, split: str) -> int:
    """``episode`` if given (checked), else the first episode of ``split``."""
    if episode is not None:
        if not 0 <= episode < store.num_episodes:
            raise UsageError(f"--episode {episode} out of range: store has {store.num_episodes}")
        return episode
    return store.asked_split(split, "; pass --episode")[0]


def write_rollout_video(
    world_model: WorldModelLike,
    store: EpisodeStore,
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
    """A video of ``world_model``'s open-loop rollout of a store episode next to the truth:
    the first frames as the prompt, then the episode's true actions."""
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
