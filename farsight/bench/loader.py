"""Clip loader throughput (clips/s, frames/s) through torch DataLoader workers."""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time

from farsight.bench import Row


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="store to read (default: record a temporary arena store)")
    p.add_argument("--frames", type=int, default=20_000, help="frames of the temporary store")
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--extra", type=int, default=7, help="target-only frames (K_max - 1)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=200, help="batches timed per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])


def loader_rate(store, args, workers: int) -> list[float]:
    from farsight.data.loader import ClipDataset, make_loader

    ds = ClipDataset(store, args.clip_len, extra=args.extra, split="train")
    loader = make_loader(ds, args.batch_size, workers=workers, seed=0, rank=0, world=1)
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    rates = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for batch in itertools.islice(it, args.batches):
            assert batch["frames"].shape[0] == args.batch_size
        rates.append(args.batches * args.batch_size / (time.perf_counter() - t0))
    return rates


def run(args: argparse.Namespace) -> list:
    import statistics

    from farsight.data.recorder import RecordConfig, record
    from farsight.data.store import EpisodeStore

    with tempfile.TemporaryDirectory() as tmp:
        path = args.data
        if path is None:
            path = tmp
            record(RecordConfig(frames=args.frames), path, progress=False)
        store = EpisodeStore(path)
        h, w, c = store.arrays["frames"][0]
        rows = []
        clip = args.clip_len + args.extra
        for workers in args.workers:
            rate = statistics.median(loader_rate(store, args, workers))
            what = f"{workers} workers, batch {args.batch_size}, clip {clip} frames of {h}x{w}x{c}"
            rows.append(Row(f"loader clips/s ({workers} workers)", rate, "clips/s", what))
            rows.append(Row(f"loader frames/s ({workers} workers)", rate * clip, "frames/s", what))
    return rows
