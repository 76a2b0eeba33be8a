import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from farsight.config import ConfigError
from farsight.data.recorder import RecordConfig, record
from farsight.data.store import EpisodeStore, StoreError


def small_cfg(**kw) -> RecordConfig:
    cfg = RecordConfig(frames=400, shard_frames=100, **kw)
    cfg.env.arena.episode_steps = 60
    return cfg


def assert_same_store(a: EpisodeStore, b: EpisodeStore, episodes: int | None = None) -> None:
    n = episodes if episodes is not None else a.num_episodes
    assert a.num_episodes >= n and b.num_episodes >= n
    for i in range(n):
        ca, cb = a.read(i), b.read(i)
        assert ca.keys() == cb.keys()
        for k in ca:
            np.testing.assert_array_equal(ca[k], cb[k], err_msg=f"episode {i} {k}")


def test_record_layout_and_conventions(tmp_path):
    record(small_cfg(), tmp_path / "s", progress=False)
    store = EpisodeStore(tmp_path / "s")
    assert store.num_frames >= 400
    assert store.meta["env"]["env_id"] == "arena" and store.meta["seed"] == 0
    ep = store.read(0)
    # 60 steps -> 61 frames; the last action is padding, the state covers every frame.
    assert ep["frames"].shape == (61, 64, 64, 3) and ep["actions"][-1] == 0
    assert ep["state.player"].shape == (61, 2)
    # Repeated actions: the default policy holds an action for several steps.
    assert (np.diff(ep["actions"][:-1]) == 0).mean() > 0.5


def test_same_seed_same_data_and_workers_agree(tmp_path):
    record(small_cfg(), tmp_path / "a", progress=False)
    record(small_cfg(workers=2), tmp_path / "b", progress=False)
    record(small_cfg(seed=1), tmp_path / "c", progress=False)
    a, b, c = (EpisodeStore(tmp_path / x) for x in "abc")
    assert_same_store(a, b)
    assert not np.array_equal(a.read(0)["frames"], c.read(0)["frames"])


def test_resume_with_more_frames_equals_one_run(tmp_path):
    record(small_cfg(), tmp_path / "one", progress=False)
    short = small_cfg()
    short.frames = 150
    record(short, tmp_path / "two", progress=False)
    assert EpisodeStore(tmp_path / "two").num_frames < 400
    record(small_cfg(), tmp_path / "two", progress=False)
    assert_same_store(EpisodeStore(tmp_path / "one"), EpisodeStore(tmp_path / "two"))
    # Continuing with other settings would mix two datasets: refused, naming what differs.
    with pytest.raises(StoreError, match="other settings.*seed"):
        record(small_cfg(seed=9), tmp_path / "two", progress=False)


def test_killed_recording_leaves_valid_store_and_resumes(tmp_path):
    out = tmp_path / "s"
    args = [
        sys.executable,
        "-m",
        "farsight.cli",
        "record",
        "--out",
        str(out),
        "--frames",
        "100000",
        "env.arena.episode_steps=60",
        "shard_frames=100",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        manifest = out / "manifest.json"
        if manifest.exists() and len(EpisodeStore(out).shards) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait()
    store = EpisodeStore(out)
    store.verify_all()
    held = store.num_frames
    assert 0 < held < 100000
    target = held + 200
    subprocess.run([*args[:7], str(target), *args[8:]], check=True, capture_output=True)
    resumed = EpisodeStore(out)
    resumed.verify_all()
    assert resumed.num_frames >= target
    fresh = small_cfg()
    fresh.frames = target
    record(fresh, tmp_path / "fresh", progress=False)
    assert_same_store(resumed, EpisodeStore(tmp_path / "fresh"))


def test_bad_policy_is_a_config_error(tmp_path):
    cfg = small_cfg()
    cfg.policy.kind = "clever"
    with pytest.raises(ConfigError, match="policy.kind='clever'.*repeat"):
        record(cfg, tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()  # nothing half-made is left behind


def test_cli_names_unknown_key(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "farsight.cli",
            "record",
            "--out",
            str(tmp_path / "s"),
            "env.arena.num_objcts=2",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "env.arena.num_objcts" in r.stderr and "env.arena.num_objects" in r.stderr
