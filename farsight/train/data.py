"""Training batches as a pure function of (seed, rank, world, step): exact resume for free.

The clip order is ``PartitionSampler``'s (one seeded permutation per epoch, rank r takes every
W-th clip), read as one endless stream per rank. Step s of a run consumes positions
[s * B, (s + 1) * B) of that stream, so resuming at step s starts the stream at s * B by index
arithmetic (epoch = pos // L, offset = pos % L), without loading the skipped clips.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from farsight.data.loader import PartitionSampler, rank_and_world
from farsight.data.store import EpisodeStore
from farsight.errors import UsageError


def frame_store(path: str) -> EpisodeStore:
    """The store a frame model (autoencoder, LAM) trains on: given, and holding frames."""
    if not path:
        raise UsageError("no training data: give --data STORE")
    store = EpisodeStore(path)
    if "frames" not in store.arrays:
        raise UsageError(f"store {store.path} holds no 'frames' array (a latent cache?)")
    return store


class ResumableSampler(Sampler[int]):
    """Endless PartitionSampler order for one rank, starting at stream position ``start``."""

    def __init__(self, n: int, rank: int, world: int, seed: int, start: int = 0):
        self.partition = PartitionSampler(n, rank, world, seed, shuffle=True, infinite=True)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        per_epoch = len(self.partition)
        if per_epoch == 0:
            return
        epoch, offset = divmod(self.start, per_epoch)
        while True:
            yield from self.partition.indices(epoch)[offset:].tolist()
            epoch, offset = epoch + 1, 0


def step_batches(
    dataset: Dataset,
    batch_size: int,
    start_step: int = 0,
    seed: int = 0,
    workers: int = 0,
    rank: int | None = None,
    world: int | None = None,
) -> Iterator[Any]:
    """Batches for steps ``start_step``, ``start_step + 1``, ... (endless)."""
    if rank is None or world is None:
        rank, world = rank_and_world()
    if len(dataset) < batch_size * world:
        raise ValueError(
            f"dataset of {len(dataset)} items is smaller than one batch "
            f"({batch_size} x {world} ranks)"
        )
    sampler = ResumableSampler(len(dataset), rank, world, seed, start=start_step * batch_size)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=True,
        prefetch_factor=4 if workers > 0 else None,
        # Its own generator: creating the loader must not draw from the global torch RNG,
        # or a resumed run's randomness would shift by one draw.
        generator=torch.Generator().manual_seed(seed),
    )
    return iter(loader)
