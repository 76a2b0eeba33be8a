"""Record episodes of an environment under a behaviour policy into an episode store.

Episode ``i`` of a recording is a pure function of (settings, seed, i): its env seed and policy
RNG are derived from ``SeedSequence([seed, i])``. So a recording is the same whether made in
one go, with several workers, or interrupted and resumed with a larger frame budget: resuming
simply continues at the first episode the store does not hold yet.
"""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from farsight.config import RecipeBook, to_dict
from farsight.data.policies import PolicyConfig, make_policy
from farsight.data.store import SplitSpec, StoreWriter
from farsight.envs import EnvConfig, make_env


@dataclass
class RecordConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    split: SplitSpec = field(default_factory=SplitSpec)
    frames: int = 20_000
    """Record whole episodes until the store holds at least this many frames."""
    seed: int = 0
    workers: int = 1
    shard_frames: int = 4096
    """Frames per shard file; a crash loses at most the episodes not yet in a shard."""


RECORD_RECIPES = RecipeBook("record")


@RECORD_RECIPES.register
def arena() -> RecordConfig:
    return RecordConfig()


@RECORD_RECIPES.register
def arena_noisy() -> RecordConfig:
    """The arena with per-frame pixel noise: high-frequency detail that carries no motion."""
    cfg = RecordConfig()
    cfg.env.arena.pixel_noise = 12.0
    return cfg


@RECORD_RECIPES.register
def atari() -> RecordConfig:
    cfg = RecordConfig(env=EnvConfig(id="ALE/Breakout-v5", max_episode_steps=2000))
    cfg.policy.max_repeat = 6
    return cfg


@RECORD_RECIPES.register
def crafter() -> RecordConfig:
    return RecordConfig(env=EnvConfig(id="crafter", max_episode_steps=1000))


@RECORD_RECIPES.register
def doom() -> RecordConfig:
    return RecordConfig(env=EnvConfig(id="vizdoom/health_gathering", max_episode_steps=1000))


def episode_seeds(seed: int, episode: int) -> tuple[int, np.random.Generator]:
    env_seq, policy_seq = np.random.SeedSequence([seed, episode]).spawn(2)
    return int(env_seq.generate_state(1)[0] & 0x7FFFFFFF), np.random.default_rng(policy_seq)


def record_episode(env, cfg: RecordConfig, episode: int) -> tuple[dict[str, np.ndarray], bool]:
    """One episode: frames x_0..x_{T-1}, actions a_0..a_{T-1} (a_{T-1} is padding)."""
    env_seed, rng = episode_seeds(cfg.seed, episode)
    policy = make_policy(cfg.policy, env.action_space.n, rng)
    frame, info = env.reset(seed=env_seed)
    frames, actions, rewards, states = [frame], [], [], [info.get("state", {})]
    terminated = False
    limit = cfg.env.max_episode_steps or None
    while limit is None or len(frames) < limit:
        action = policy(frame)
        frame, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        rewards.append(reward)
        frames.append(frame)
        states.append(info.get("state", {}))
        if terminated or truncated:
            break
    length = len(frames)
    arrays = {
        "frames": np.stack(frames),
        "actions": np.array([*actions, 0], dtype=np.int64),
        "rewards": np.array([*rewards, 0.0], dtype=np.float32),
        "dones": np.zeros(length, dtype=bool),
    }
    arrays["dones"][-1] = terminated
    for key, (_, dtype) in env.state_spec.items():
        arrays[f"state.{key}"] = np.stack([np.asarray(s[key], dtype=dtype) for s in states])
    return arrays, bool(terminated)


_worker_env = None


def _worker_init(env_cfg: EnvConfig) -> None:
    global _worker_env
    _worker_env = make_env(env_cfg)


def _worker_record(cfg: RecordConfig, episode: int):
    return record_episode(_worker_env, cfg, episode)


def store_arrays(env) -> dict[str, tuple[tuple[int, ...], str]]:
    arrays = {
        "frames": (env.observation_space.shape, "uint8"),
        "actions": ((), "int64"),
        "rewards": ((), "float32"),
        "dones": ((), "bool"),
    }
    arrays.update({f"state.{k}": (tuple(s), d) for k, (s, d) in env.state_spec.items()})
    return arrays


def record(cfg: RecordConfig, out: str | Path, progress: bool = True) -> StoreWriter:
    """Record (or continue recording) into ``out`` until it holds >= ``cfg.frames`` frames."""
    env = make_env(cfg.env)
    make_policy(cfg.policy, env.action_space.n, np.random.default_rng())  # fail before writing
    meta = {
        "env": env.env_meta(),
        "env_config": to_dict(cfg.env),
        "policy": to_dict(cfg.policy),
        "seed": cfg.seed,
        "split": to_dict(cfg.split),
    }
    writer = StoreWriter(out, meta, store_arrays(env), shard_frames=cfg.shard_frames)
    bar = tqdm(
        total=cfg.frames,
        initial=min(writer.num_frames, cfg.frames),
        unit="frame",
        desc=f"record {cfg.env.id}",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        if cfg.workers <= 1:
            while writer.num_frames < cfg.frames:
                arrays, terminated = record_episode(env, cfg, writer.num_episodes)
                writer.add_episode(arrays, terminated)
                bar.update(min(len(arrays["actions"]), cfg.frames - bar.n))
        else:
            _record_parallel(cfg, writer, bar)
    finally:
        # Also on Ctrl-C: whole episodes already recorded are kept, the store stays valid.
        writer.close()
        bar.close()
        env.close()
    return writer


def _record_parallel(cfg: RecordConfig, writer: StoreWriter, bar: tqdm) -> None:
    ctx = mp.get_context("spawn")  # emulators do not survive fork reliably
    with ProcessPoolExecutor(
        cfg.workers, ctx, initializer=_worker_init, initargs=(cfg.env,)
    ) as pool:
        pending: deque[Future] = deque()
        next_episode = writer.num_episodes
        try:
            while writer.num_frames < cfg.frames:
                while len(pending) < 2 * cfg.workers:
                    pending.append(pool.submit(_worker_record, cfg, next_episode))
                    next_episode += 1
                # Results are written in episode order, so the store matches a 1-worker run.
                arrays, terminated = pending.popleft().result()
                writer.add_episode(arrays, terminated)
                bar.update(min(len(arrays["actions"]), cfg.frames - bar.n))
        finally:
            for f in pending:
                f.cancel()
