"""Recording frames/s per environment: env, policy, shard writing and checksums together."""

from __future__ import annotations

import argparse
import tempfile
import time

from farsight.bench import Row
from farsight.data.recorder import RecordConfig, record
from farsight.envs import EnvConfig

DEFAULT_ENVS = ["arena", "ALE/Breakout-v5", "crafter", "vizdoom/health_gathering"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--envs", nargs="+", default=DEFAULT_ENVS)
    p.add_argument("--frames", type=int, default=6000, help="frames recorded per env and run")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])


def run(args: argparse.Namespace) -> list:
    rows = []
    for env_id in args.envs:
        for workers in args.workers:
            cfg = RecordConfig(
                env=EnvConfig(id=env_id, max_episode_steps=1000),
                frames=args.frames,
                workers=workers,
            )
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                writer = record(cfg, tmp, progress=False)
                seconds = time.perf_counter() - t0
            rows.append(
                Row(
                    f"record {env_id}, {workers} worker(s)",
                    writer.num_frames / seconds,
                    "frames/s",
                    f"{writer.num_frames} frames in {writer.num_episodes} episodes, "
                    "start-up included",
                )
            )
    return rows
