"""Clip dataset and loader over an episode store (or a latent cache: same format).

A clip is ``clip_len + extra`` frames of one episode taken every ``stride`` frames; ``extra``
frames are there only as targets for far prediction heads. Clips never cross episode ends.

Shapes yielded per batch (B batch, T clip frames incl. extra, H W frame, ...):
    frames  (B, T, H, W, 3) uint8      (or whatever per-frame arrays the store holds)
    actions (B, T) int64               a_t: taken after frame t
    state   {name: (B, T, ...)}        ground truth, where the store has it
    episode, start (B,) int64          where each clip came from

Under torchrun every rank gets a disjoint share of each epoch's shuffled clip order, and the
shares together cover every clip exactly once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from farsight.data.store import EpisodeStore

STATE_PREFIX = "state."


class ClipDataset(Dataset):
    def __init__(
        self,
        store: EpisodeStore,
        clip_len: int,
        extra: int = 0,
        stride: int = 1,
        start_every: int = 1,
        split: str = "train",
        keys: tuple[str, ...] | None = None,
    ):
        if clip_len < 1 or extra < 0 or stride < 1 or start_every < 1:
            raise ValueError(
                f"bad clip settings clip_len={clip_len} extra={extra} stride={stride} "
                f"start_every={start_every}"
            )
        self.store = store
        self.length = clip_len + extra
        self.stride = stride
        self.keys = keys
        span = (self.length - 1) * stride + 1
        episodes, starts = [], []
        for ep in store.split_episodes(split):
            n = store.episodes[ep].length - span + 1
            if n > 0:
                s = np.arange(0, n, start_every)
                starts.append(s)
                episodes.append(np.full_like(s, ep))
        if not starts:
            raise ValueError(
                f"store {store.path} has no clip of {self.length} frames (stride {stride}) in "
                f"split '{split}': {len(store.split_episodes(split))} episodes there"
            )
        self.episodes = np.concatenate(episodes)
        self.starts = np.concatenate(starts)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict:
        ep, start = int(self.episodes[i]), int(self.starts[i])
        arrays = self.store.read(ep, start, self.length, self.stride, self.keys)
        item: dict = {"episode": ep, "start": start}
        state = {}
        for k, v in arrays.items():
            if k.startswith(STATE_PREFIX):
                state[k[len(STATE_PREFIX) :]] = torch.from_numpy(v)
            else:
                item[k] = torch.from_numpy(v)
        if state:
            item["state"] = state
        return item


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size: from torch.distributed, else torchrun's env."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class PartitionSampler(Sampler[int]):
    """Each epoch: one seeded permutation of all clips, rank r takes positions r, r+W, ...

    Unlike DistributedSampler nothing is padded or dropped, so the ranks' shares are disjoint
    and complete (they may differ in size by one). With ``infinite`` it runs epoch after epoch.
    """

    def __init__(
        self,
        n: int,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        infinite: bool = False,
        start_epoch: int = 0,
    ):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} not in world of size {world}")
        self.n, self.rank, self.world = n, rank, world
        self.seed, self.shuffle, self.infinite = seed, shuffle, infinite
        self.epoch = start_epoch

    def indices(self, epoch: int) -> np.ndarray:
        order = (
            np.random.default_rng([self.seed, epoch]).permutation(self.n)
            if self.shuffle
            else np.arange(self.n)
        )
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        while True:
            yield from self.indices(self.epoch).tolist()
            self.epoch += 1
            if not self.infinite:
                return

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


def make_loader(
    dataset: ClipDataset,
    batch_size: int,
    workers: int = 2,
    seed: int = 0,
    shuffle: bool = True,
    infinite: bool = True,
    rank: int | None = None,
    world: int | None = None,
) -> DataLoader:
    if rank is None or world is None:
        rank, world = rank_and_world()
    sampler = PartitionSampler(len(dataset), rank, world, seed, shuffle, infinite)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=infinite,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
