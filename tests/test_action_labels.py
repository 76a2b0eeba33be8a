"""Latent action labels as a data step: ``farsight label`` writes them beside the store once;
a world model env on latent actions only reads them (and names the command when they are
missing), so building one writes no file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from farsight.action_labels import (
    ActionLabelsError,
    label_actions,
    labels_path,
    read_labels,
)
from farsight.cli import main
from farsight.data.store import EpisodeStore, StoreError, StoreWriter
from farsight.latent_actions import label_store
from farsight.models.lam import LatentActionModel
from farsight.train.checkpoint import CheckpointError, save_checkpoint
from farsight.train.lam import load_lam
from farsight.train.recipes.lam import KIND, lam_tiny
from farsight.world_env import WorldModelEnv
from tests.test_sampling import tiny_world_model

SIZE = 32
CODES = lam_tiny().model.num_codes

pytestmark = pytest.mark.usefixtures("one_thread")


def write_store(path: Path, lengths=(9, 6, 7), keys=("frames", "actions")) -> EpisodeStore:
    meta = {"env": {"env_id": "arena", "size": SIZE, "action_meanings": list("ABCDE")}}
    arrays = {"frames": ((SIZE, SIZE, 3), "uint8"), "actions": ((), "int64")}
    writer = StoreWriter(path, meta, {k: arrays[k] for k in keys})
    rng = np.random.default_rng(0)
    for length in lengths:
        episode = {
            "frames": rng.integers(0, 256, (length, SIZE, SIZE, 3), dtype=np.uint8),
            "actions": rng.integers(0, 5, length),
        }
        writer.add_episode({k: episode[k] for k in keys}, False)
    writer.close()
    return EpisodeStore(path)


def write_lam(run: Path, step: int = 3, seed: int = 0) -> Path:
    """An untrained tiny LAM saved as a run's checkpoint (its codes are labels all the same)."""
    cfg = lam_tiny()
    torch.manual_seed(seed)
    model = LatentActionModel(cfg.model)
    return save_checkpoint(run / "checkpoint.pt", kind=KIND, config=cfg, step=step, model=model)


@pytest.fixture
def store(tmp_path) -> EpisodeStore:
    return write_store(tmp_path / "store")


@pytest.fixture
def lam(tmp_path) -> Path:
    write_lam(tmp_path / "lam")
    return tmp_path / "lam"


def files_under(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_label_writes_the_lams_codes_beside_the_store_once(store, lam, capsys):
    assert main(["label", "--lam", str(lam), "--data", str(store.path), "--quiet"]) == 0
    path = labels_path(store, lam)
    assert path.parent == store.path / "action_labels" and path.exists()
    assert "3 episodes, 8 codes" in capsys.readouterr().out
    labels, codes, record = read_labels(store, lam, lam_step=3)
    model, _, _ = load_lam(lam)
    want = label_store(model, store)
    assert codes == CODES and sorted(labels) == [0, 1, 2]
    for e in labels:
        assert np.array_equal(labels[e], want[e]) and labels[e][-1] == 0
    assert record == {"lam": str((lam / "checkpoint.pt").resolve()), "lam_step": 3}
    # Up to date: kept as it is; other LAM weights label the store again.
    before = path.stat().st_mtime_ns
    assert label_actions(lam, store, progress=False) == path
    assert path.stat().st_mtime_ns == before
    write_lam(lam, step=3, seed=1)
    label_actions(lam, store, progress=False)
    assert path.stat().st_mtime_ns != before


def test_label_refuses_a_missing_lam_or_store_and_a_store_without_frames(tmp_path, store, lam):
    with pytest.raises(CheckpointError, match="not found"):
        label_actions(tmp_path / "nolam" / "checkpoint.pt", store, progress=False)
    with pytest.raises(StoreError, match="not found"):
        label_actions(lam, tmp_path / "nostore", progress=False)
    no_frames = write_store(tmp_path / "actions_only", keys=("actions",))
    with pytest.raises(ActionLabelsError, match="has none"):
        label_actions(lam, no_frames, progress=False)


def test_missing_or_stale_labels_name_the_file_and_the_command(tmp_path, store, lam):
    path = labels_path(store, lam)
    with pytest.raises(ActionLabelsError, match="farsight label --lam") as missing:
        read_labels(store, lam)
    assert str(path) in str(missing.value)
    label_actions(lam, store, progress=False)
    with pytest.raises(ActionLabelsError, match="step 3, not 7"):
        read_labels(store, lam, lam_step=7)
    # The store grows: its labels no longer cover it.
    writer = StoreWriter(store.path, store.meta, dict(store.arrays))
    writer.add_episode(store.read(0), False)
    writer.close()
    with pytest.raises(ActionLabelsError, match="changed since"):
        read_labels(EpisodeStore(store.path), lam)


def latent_action_model(lam: Path):
    """A world model trained on ``lam``'s latent actions (as its metadata records them)."""
    wm = tiny_world_model(num_actions=CODES)
    wm.meta = {
        **wm.meta,
        "action_meanings": [f"LATENT_{i}" for i in range(CODES)],
        "action_source": "latent",
        "latent_actions": {"lam": str((lam / "checkpoint.pt").resolve()), "lam_step": 3},
    }
    return wm


def test_a_world_model_env_reads_labels_and_writes_nothing(tmp_path, store, lam):
    wm = latent_action_model(lam)
    before = files_under(tmp_path)
    with pytest.raises(ActionLabelsError, match="farsight label --lam"):
        WorldModelEnv(wm, store.path)
    assert files_under(tmp_path) == before
    label_actions(lam, store, progress=False)
    before = files_under(tmp_path)
    env = WorldModelEnv(wm, store.path, seed=0)
    env.reset(options={"prompt": 1})
    env.step(CODES - 1)
    assert files_under(tmp_path) == before
    labels, _, _ = read_labels(store, lam)
    assert np.array_equal(env.store.read(1, keys=("actions",))["actions"], labels[1])
