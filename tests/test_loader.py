import numpy as np
import pytest
import torch

from farsight.data.loader import ClipDataset, PartitionSampler, make_loader
from farsight.data.store import EpisodeStore, SplitSpec
from tests.test_store import write_store


@pytest.fixture
def store(tmp_path):
    write_store(tmp_path / "s", [9, 4, 15, 6, 11, 8], shard_frames=16)
    s = EpisodeStore(tmp_path / "s")
    s.split_spec = SplitSpec(val=0.0, test=0.0)  # every episode in train for these tests
    return s


def test_clips_never_cross_episode_ends(store):
    ds = ClipDataset(store, clip_len=4, extra=1, stride=2)
    span = (5 - 1) * 2 + 1
    expected = sum(max(0, e.length - span + 1) for e in store.episodes)
    assert len(ds) == expected
    for i in range(len(ds)):
        item = ds[i]
        actions = item["actions"].numpy()
        # actions encode episode*1000 + t: one episode, consecutive strided frames.
        assert (actions // 1000 == item["episode"]).all()
        np.testing.assert_array_equal(np.diff(actions), 2)
        assert actions[-1] % 1000 < store.episodes[item["episode"]].length
        np.testing.assert_array_equal(item["state"]["pos"][:, 1].numpy(), actions % 1000)
    # The 4-frame episode is too short for a 9-frame span and contributes nothing.
    assert 1 not in set(ds.episodes.tolist())


def test_rank_partitions_are_disjoint_and_complete():
    for n, world in [(10, 2), (11, 2), (7, 3), (100, 4)]:
        shares = [PartitionSampler(n, r, world, seed=1).indices(epoch=3) for r in range(world)]
        joined = np.concatenate(shares)
        assert len(joined) == n and set(joined.tolist()) == set(range(n))
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    a = PartitionSampler(50, 0, 2, seed=1)
    assert not np.array_equal(a.indices(0), a.indices(1))  # reshuffled every epoch
    with pytest.raises(ValueError, match="rank 2"):
        PartitionSampler(10, 2, 2)


def test_loader_batches_with_workers(store):
    ds = ClipDataset(store, clip_len=3)
    loader = make_loader(ds, batch_size=4, workers=2, seed=0, rank=0, world=1)
    batch = next(iter(loader))
    assert batch["frames"].shape == (4, 3, 4, 4, 3) and batch["frames"].dtype == torch.uint8
    assert batch["actions"].shape == (4, 3) and batch["state"]["pos"].shape == (4, 3, 2)
    # Same seed, same batches.
    again = next(iter(make_loader(ds, batch_size=4, workers=0, seed=0, rank=0, world=1)))
    torch.testing.assert_close(batch["actions"], again["actions"])


def test_empty_split_is_a_clear_error(store):
    with pytest.raises(ValueError, match="no clip of 40 frames"):
        ClipDataset(store, clip_len=40)
