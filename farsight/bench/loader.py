"""Clip loader throughput (clips/s, frames/s) against what a dynamics training step consumes.

Two stores are read: the recorded frames (what the autoencoder trains on) and latent clips of
the quickstart geometry (16x16x8 float16, what the dynamics model trains on; synthetic values,
same layout and size as a real latent cache). The consumer is one training step of the
quickstart dynamics model (forward, backward, AdamW) on a batch of such clips, timed here.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time

import numpy as np

from farsight.bench import Row
from farsight.data.recorder import RecordConfig, record
from farsight.data.store import EpisodeStore, StoreWriter
from farsight.dynamics_config import ObjectiveConfig, dynamics_quickstart


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="store to read (default: record a temporary arena store)")
    p.add_argument("--frames", type=int, default=20_000, help="frames of the temporary store")
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--extra", type=int, default=7, help="target-only frames (K_max - 1)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=200, help="batches timed per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--step-repeats", type=int, default=5, help="timed training steps")


def loader_rate(store, args, workers: int, key: str) -> list[float]:
    # lazy: torch, when the benchmark runs; `farsight bench loader --help` imports this module.
    from farsight.data.loader import ClipDataset, make_loader

    ds = ClipDataset(store, args.clip_len, extra=args.extra, split="train")
    loader = make_loader(ds, args.batch_size, workers=workers, seed=0, rank=0, world=1)
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    rates = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for batch in itertools.islice(it, args.batches):
            assert batch[key].shape[0] == args.batch_size
        rates.append(args.batches * args.batch_size / (time.perf_counter() - t0))
    return rates


def latent_store(path, frames_store) -> None:
    """A latent store shaped like the quickstart cache, episode for episode."""
    rng = np.random.default_rng(0)
    arrays = {"latents": ((8, 16, 16), "float16"), "actions": ((), "int64")}
    writer = StoreWriter(path, frames_store.meta, arrays)
    for ep in frames_store.episodes:
        latents = rng.standard_normal((ep.length, 8, 16, 16)).astype(np.float16)
        actions = frames_store.read(ep.id, keys=("actions",))["actions"]
        writer.add_episode({"latents": latents, "actions": actions}, ep.terminated)
    writer.close()


def step_seconds(args, num_actions: int) -> list[float]:
    """Seconds per training step of the quickstart dynamics model on one batch of clips."""
    # lazy: torch, when the benchmark runs; `farsight bench loader --help` imports this module.
    import torch

    from farsight.models.dynamics import DynamicsModel
    from farsight.objectives import make_objective

    cfg = dynamics_quickstart()
    cfg.num_actions = num_actions
    model = DynamicsModel(cfg)
    objective = make_objective(ObjectiveConfig())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    clip = args.clip_len + cfg.heads.max_offset - 1
    batch = {
        "latents": torch.randn(args.batch_size, clip, 8, 16, 16),
        "actions": torch.randint(0, num_actions, (args.batch_size, clip)),
    }
    times = []
    for i in range(args.step_repeats + 1):
        t0 = time.perf_counter()
        loss, _ = objective(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i:  # the first step warms up allocators
            times.append(time.perf_counter() - t0)
    return times


def run(args: argparse.Namespace) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        path = args.data
        if path is None:
            path = f"{tmp}/frames"
            record(RecordConfig(frames=args.frames), path, progress=False)
        store = EpisodeStore(path)
        latent_store(f"{tmp}/latents", store)
        latents = EpisodeStore(f"{tmp}/latents")
        h, w, c = store.arrays["frames"][0]
        clip = args.clip_len + args.extra
        rows = []
        best_latent = 0.0
        for workers in args.workers:
            rate = statistics.median(loader_rate(store, args, workers, "frames"))
            what = f"batch {args.batch_size}, clip {clip} frames of {h}x{w}x{c} uint8"
            rows.append(Row(f"frame clips/s, {workers} workers", rate, "clips/s", what))
            rows.append(Row(f"frames/s, {workers} workers", rate * clip, "frames/s", what))
            rate = statistics.median(loader_rate(latents, args, workers, "latents"))
            what = f"batch {args.batch_size}, clip {clip} latents of 16x16x8 float16"
            rows.append(Row(f"latent clips/s, {workers} workers", rate, "clips/s", what))
            best_latent = max(best_latent, rate)
        step = statistics.median(step_seconds(args, len(store.meta["env"]["action_meanings"])))
        consumed = args.batch_size / step
        rows.append(
            Row(
                "quickstart dynamics training step",
                step,
                "s/step",
                f"batch {args.batch_size}, fwd+bwd+AdamW, fp32, heads (1,2,4,8)",
            )
        )
        rows.append(Row("clips consumed by training", consumed, "clips/s", "batch / step time"))
        rows.append(
            Row(
                "loader / training consumption",
                best_latent / consumed,
                "x",
                "latent clips, best worker count; goal >= 20",
            )
        )
    return rows
