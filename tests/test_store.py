import json

import numpy as np
import pytest

from farsight.data.store import (
    MANIFEST,
    EpisodeStore,
    SplitSpec,
    StoreError,
    StoreWriter,
    split_of,
)
from farsight.errors import UsageError

ARRAYS = {
    "frames": ((4, 4, 3), "uint8"),
    "actions": ((), "int64"),
    "state.pos": ((2,), "float32"),
}


def episode(i: int, length: int) -> dict[str, np.ndarray]:
    t = np.arange(length)
    return {
        # Every frame encodes (episode, t), so a wrong clip cannot pass unnoticed.
        "frames": np.broadcast_to(((i * 1000 + t) % 251)[:, None, None, None], (length, 4, 4, 3))
        .astype(np.uint8)
        .copy(),
        "actions": i * 1000 + t,
        "state.pos": np.stack([np.full(length, i), t], axis=1).astype(np.float32),
    }


def write_store(path, lengths, shard_frames=10, meta=None):
    writer = StoreWriter(path, meta or {"env": {"env_id": "fake"}}, ARRAYS, shard_frames)
    for i, n in enumerate(lengths, start=writer.num_episodes):
        writer.add_episode(episode(i, n), terminated=i % 2 == 0)
    writer.close()
    return writer


def test_round_trip_and_random_access(tmp_path):
    lengths = [7, 3, 12, 5, 9]
    write_store(tmp_path / "s", lengths)
    store = EpisodeStore(tmp_path / "s")
    assert store.num_episodes == 5 and store.num_frames == sum(lengths)
    assert len(store.shards) > 1  # several shards, episodes never split across them
    for i, n in enumerate(lengths):
        full = store.read(i)
        want = episode(i, n)
        for k in ARRAYS:
            np.testing.assert_array_equal(full[k], want[k])
        assert store.episodes[i].terminated == (i % 2 == 0)
    clip = store.read(2, start=1, length=4, stride=3)
    np.testing.assert_array_equal(clip["actions"], 2000 + np.array([1, 4, 7, 10]))
    with pytest.raises(IndexError, match="does not fit episode 2"):
        store.read(2, start=1, length=5, stride=3)


def test_append_continues_and_checks_settings(tmp_path):
    write_store(tmp_path / "s", [4, 4])
    write_store(tmp_path / "s", [6])
    store = EpisodeStore(tmp_path / "s")
    assert [e.length for e in store.episodes] == [4, 4, 6]
    np.testing.assert_array_equal(store.read(2)["actions"], 2000 + np.arange(6))
    with pytest.raises(StoreError, match="other settings.*env"):
        write_store(tmp_path / "s", [3], meta={"env": {"env_id": "other"}})


def test_truncated_shard_is_named(tmp_path):
    write_store(tmp_path / "s", [8, 8])
    store = EpisodeStore(tmp_path / "s")
    path = store.shard_file(0, "frames")
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(StoreError, match=f"{path}.*truncated"):
        EpisodeStore(tmp_path / "s").read(0)


def test_corrupt_shard_is_named(tmp_path):
    write_store(tmp_path / "s", [8, 8])
    path = EpisodeStore(tmp_path / "s").shard_file(0, "actions")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # same size, one flipped byte in the payload
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f"{path}.*corrupt"):
        EpisodeStore(tmp_path / "s").read(0)
    # A size-only check cannot see it, the CRC check can: both are honest about what they do.
    assert EpisodeStore(tmp_path / "s", verify="size").read(0)["actions"].shape == (8,)


def test_manifest_disagreeing_with_shards_is_named(tmp_path):
    write_store(tmp_path / "s", [8, 8])
    manifest = tmp_path / "s" / MANIFEST
    m = json.loads(manifest.read_text())
    m["episodes"][1]["length"] = 50
    manifest.write_text(json.dumps(m))
    with pytest.raises(StoreError, match=f"{manifest}.*episode 1 spans"):
        EpisodeStore(tmp_path / "s")
    manifest.write_text("{not json")
    with pytest.raises(StoreError, match=f"{manifest}.*not valid JSON"):
        EpisodeStore(tmp_path / "s")


def test_shard_shape_disagreeing_with_manifest_is_named(tmp_path):
    write_store(tmp_path / "s", [8])
    store = EpisodeStore(tmp_path / "s")
    path = store.shard_file(0, "actions")
    np.save(path, np.zeros(7, dtype=np.int64))  # a valid .npy, but not what the manifest says
    m = json.loads((tmp_path / "s" / MANIFEST).read_text())
    m["shards"][0]["files"]["actions"]["bytes"] = path.stat().st_size
    (tmp_path / "s" / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(StoreError, match=f"{path}"):
        EpisodeStore(tmp_path / "s", verify="size").read(0)


def test_crash_before_manifest_leaves_valid_store(tmp_path, monkeypatch):
    write_store(tmp_path / "s", [5])
    writer = StoreWriter(tmp_path / "s", {"env": {"env_id": "fake"}}, ARRAYS, 100)
    writer.add_episode(episode(1, 5), terminated=False)

    def crash():
        raise RuntimeError("power cut")

    # The shard folder is renamed into place, then the process dies before the manifest.
    monkeypatch.setattr(writer, "_write_manifest", crash)
    with pytest.raises(RuntimeError):
        writer.flush()
    assert (tmp_path / "s" / "shards" / "000001").is_dir()
    store = EpisodeStore(tmp_path / "s")
    assert store.num_episodes == 1
    store.verify_all()
    # The next writer removes the orphan and continues cleanly.
    write_store(tmp_path / "s", [6])
    store = EpisodeStore(tmp_path / "s")
    assert [e.length for e in store.episodes] == [5, 6]
    store.verify_all()


def test_split_is_stable_seeded_and_balanced():
    spec = SplitSpec(seed=3, val=0.1, test=0.1)
    splits = [split_of(i, spec) for i in range(200)]
    assert splits[:50] == [split_of(i, spec) for i in range(50)]  # appending changes nothing
    for name in ("val", "test"):
        # Low discrepancy: every window of 20 episodes holds about 2 of each held-out split.
        for w in range(0, 200, 20):
            assert 1 <= splits[w : w + 20].count(name) <= 3
    assert splits != [split_of(i, SplitSpec(seed=4, val=0.1, test=0.1)) for i in range(200)]


def test_atomic_write_gives_the_permissions_of_a_plain_open(tmp_path):
    from farsight.io import atomic_write

    (tmp_path / "plain").write_bytes(b"x")
    atomic_write(tmp_path / "atomic", lambda f: f.write(b"x"))
    assert (tmp_path / "atomic").stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_asked_split_refuses_an_unknown_or_empty_split(tmp_path):
    write_store(tmp_path / "s", [3])  # one episode: the other splits are empty
    store = EpisodeStore(tmp_path / "s")
    assert store.asked_split("all") == [0]
    with pytest.raises(UsageError, match="--split: unknown split 'tset'"):
        store.asked_split("tset")
    empty = next(s for s in ("train", "val", "test") if not store.split_episodes(s))
    with pytest.raises(UsageError, match=f"has no '{empty}' episodes; pass --episode"):
        store.asked_split(empty, "; pass --episode")
