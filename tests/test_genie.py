"""The Genie path end to end: FSQ autoencoder -> LAM -> MaskGIT dynamics on true, latent or no
actions (also from a store recorded without actions) -> a world model env that plays it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from farsight.action_source import ActionSourceError, relabel, store_for_model
from farsight.data.recorder import RecordConfig, record
from farsight.data.store import EpisodeStore, StoreWriter
from farsight.play.keymap import keymap
from farsight.train.autoencoder import AE_RECIPES, train_autoencoder
from farsight.train.dynamics import DYNAMICS_RECIPES, load_world_model, train_dynamics
from farsight.train.lam import LAM_RECIPES, train_lam
from farsight.world_env import WorldModelEnv


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("genie")
    cfg = RecordConfig(frames=800, shard_frames=400)
    cfg.env.arena.episode_steps = 100
    cfg.env.size = 32
    record(cfg, root / "store", progress=False)
    # The same video without actions (and without action names): what Genie trains on.
    store = EpisodeStore(root / "store")
    env = {k: v for k, v in store.meta["env"].items() if k != "action_meanings"}
    writer = StoreWriter(
        root / "noact", {**store.meta, "env": env}, {"frames": ((32, 32, 3), "uint8")}
    )
    for e in range(store.num_episodes):
        writer.add_episode(store.read(e, keys=("frames",)), terminated=False)
    writer.close()
    ae = AE_RECIPES.get("ae_tiny")
    ae.model.kind, ae.model.fsq_levels = "fsq", (4, 3)
    ae.data.path = str(root / "store")
    train_autoencoder(ae, root / "ae", progress=False)
    lam = LAM_RECIPES.get("lam_tiny")
    lam.data.path = str(root / "store")
    train_lam(lam, root / "lam", progress=False)
    return root


def maskgit(world, store: str = "store", **data):
    cfg = DYNAMICS_RECIPES.get("dyn_maskgit_tiny")
    cfg.data.path, cfg.data.autoencoder = str(world / store), str(world / "ae")
    for key, value in data.items():
        setattr(cfg.data, key, value)
    return cfg


def play_a_few_steps(wm, store, action: int) -> np.ndarray:
    env = WorldModelEnv(wm, store, seed=0)
    frame, info = env.reset(options={"prompt": "random"})
    for _ in range(2):
        frame, *_ = env.step(action)
    frames = env.generate([action, 0])
    assert frame.shape == (32, 32, 3) and frames.shape == (2, 32, 32, 3)
    return frames


def test_maskgit_on_true_actions_plays(world, tmp_path):
    result = train_dynamics(maskgit(world), tmp_path / "run", progress=False)
    assert result.step == 6 and all(np.isfinite(result.losses))
    wm = load_world_model(tmp_path / "run")
    assert wm.objective.kind == "maskgit" and wm.objective.fsq_levels == (4, 3)
    assert wm.dynamics.cfg.latent_channels == 3 and wm.dynamics.cfg.out_channels == 7
    assert len(wm.meta["action_meanings"]) == 9
    assert list((tmp_path / "run" / "samples").glob("rollout_step*.mp4"))
    play_a_few_steps(wm, world / "store", action=8)
    env = WorldModelEnv(wm, world / "store")
    assert set(env.controls) == {"steps", "temperature", "kv_cache"}
    env.configure(steps=2, temperature=0.0)


def test_maskgit_on_latent_actions_plays_with_digit_keys(world, tmp_path):
    cfg = maskgit(world, actions="latent", lam=str(world / "lam"))
    train_dynamics(cfg, tmp_path / "run", progress=False)
    wm = load_world_model(tmp_path / "run")
    names = wm.meta["action_meanings"]
    assert names == [f"LATENT_{i}" for i in range(8)] and wm.dynamics.cfg.num_actions == 8
    assert wm.meta["action_source"] == "latent" and len(wm.meta["true_action_meanings"]) == 9
    assert [row["key"] for row in keymap(names)] == list("12345678")
    store = store_for_model(wm, EpisodeStore(world / "store"))
    actions = store.read(0, keys=("actions",))["actions"]
    assert actions.max() < 8 and len(actions) == store.episodes[0].length
    play_a_few_steps(wm, world / "store", action=7)
    assert list((world / "lam" / "latent_actions").glob("store.npz"))


def test_store_without_actions_trains_on_none_or_latent_actions(world, tmp_path):
    noact = EpisodeStore(world / "noact")
    with pytest.raises(ActionSourceError, match="data.actions=latent"):
        relabel(noact, "true")
    for source, extra in (("none", {}), ("latent", {"lam": str(world / "lam")})):
        out = tmp_path / source
        result = train_dynamics(
            maskgit(world, "noact", actions=source, **extra), out, progress=False
        )
        assert result.step == 6 and all(np.isfinite(result.losses))
        wm = load_world_model(out)
        assert wm.meta["action_source"] == source
        play_a_few_steps(wm, world / "noact", action=0)
