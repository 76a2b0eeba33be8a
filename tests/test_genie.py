"""The Genie path end to end: FSQ autoencoder -> LAM -> MaskGIT dynamics on true, latent or no
actions (also from a store recorded without actions) -> a world model env that plays it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from farsight.action_labels import labels_path
from farsight.action_source import ActionSourceError, relabel, store_for_model
from farsight.cli import main
from farsight.data.store import EpisodeStore, StoreWriter
from farsight.play.keymap import keymap
from farsight.train.dynamics import train_dynamics
from farsight.train.lam import train_lam
from farsight.train.recipes.dynamics import DYNAMICS_RECIPES
from farsight.train.recipes.lam import LAM_RECIPES
from farsight.world_env import WorldModelEnv
from farsight.world_model import load_world_model

# Every test here trains an autoencoder, a LAM and dynamics runs end to end.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def genie_world(tmp_path_factory, world_maker) -> Path:
    """A 32 x 32 arena store, the same video without actions (``noact``), an FSQ autoencoder
    and a LAM trained on the store."""
    root = world_maker(
        tmp_path_factory.mktemp("genie"),
        frames=800,
        episode_steps=100,
        size=32,
        kind="fsq",
        fsq_levels=(4, 3),
    )
    # The same video without actions (and without action names): what Genie trains on.
    store = EpisodeStore(root / "store")
    env = {k: v for k, v in store.meta["env"].items() if k != "action_meanings"}
    writer = StoreWriter(
        root / "noact", {**store.meta, "env": env}, {"frames": ((32, 32, 3), "uint8")}
    )
    for e in range(store.num_episodes):
        writer.add_episode(store.read(e, keys=("frames",)), terminated=False)
    writer.close()
    lam = LAM_RECIPES.get("lam_tiny")
    lam.data.path = str(root / "store")
    train_lam(lam, root / "lam", progress=False)
    return root


def maskgit(world: Path, store: str = "store", **data):
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


def test_maskgit_with_joint_logits_trains_and_plays(genie_world, tmp_path):
    cfg = maskgit(genie_world)
    cfg.objective.token_logits = "joint"
    result = train_dynamics(cfg, tmp_path / "run", progress=False)
    assert result.step == 6 and all(np.isfinite(result.losses))
    wm = load_world_model(tmp_path / "run")
    assert wm.objective.token_logits == "joint"
    assert wm.dynamics.cfg.out_channels == 12  # one logit per code of levels (4, 3)
    frames = play_a_few_steps(wm, genie_world / "store", action=8)
    assert frames.dtype == np.uint8


def test_maskgit_on_true_actions_plays(genie_world, tmp_path, capsys):
    result = train_dynamics(maskgit(genie_world), tmp_path / "run", progress=False)
    assert result.step == 6 and all(np.isfinite(result.losses))
    wm = load_world_model(tmp_path / "run")
    assert wm.objective.kind == "maskgit" and wm.objective.fsq_levels == (4, 3)
    assert wm.dynamics.cfg.latent_channels == 3 and wm.dynamics.cfg.out_channels == 7
    assert len(wm.meta["action_meanings"]) == 9
    assert list((tmp_path / "run" / "samples").glob("rollout_step*.mp4"))
    play_a_few_steps(wm, genie_world / "store", action=8)
    env = WorldModelEnv(wm, genie_world / "store")
    assert set(env.controls) == {"steps", "temperature", "kv_cache"}
    env.configure(steps=2, temperature=0.0)
    # The rollout command names MaskGIT's own sampling, not a diffusion sampler's.
    args = ["rollout", "--ckpt", str(tmp_path / "run"), "--data", str(genie_world / "store")]
    assert main([*args, "--steps", "2", "--out", str(tmp_path / "r.mp4"), "--scale", "1"]) == 0
    printed = capsys.readouterr().out
    assert "MaskGIT steps, temperature" in printed and "ddim" not in printed


def test_maskgit_on_latent_actions_plays_with_digit_keys(genie_world, tmp_path):
    cfg = maskgit(genie_world, actions="latent", lam=str(genie_world / "lam"))
    train_dynamics(cfg, tmp_path / "run", progress=False)
    wm = load_world_model(tmp_path / "run")
    names = wm.meta["action_meanings"]
    assert names == [f"LATENT_{i}" for i in range(8)] and wm.dynamics.cfg.num_actions == 8
    assert wm.meta["action_source"] == "latent" and len(wm.meta["true_action_meanings"]) == 9
    assert [row["key"] for row in keymap(names)] == list("12345678")
    store = store_for_model(wm, EpisodeStore(genie_world / "store"))
    actions = store.read(0, keys=("actions",))["actions"]
    assert actions.max() < 8 and len(actions) == store.episodes[0].length
    play_a_few_steps(wm, genie_world / "store", action=7)
    # Training labelled the store once, beside it (the world model env only reads the labels).
    assert labels_path(EpisodeStore(genie_world / "store"), genie_world / "lam").exists()


def test_store_without_actions_trains_on_none_or_latent_actions(genie_world, tmp_path):
    noact = EpisodeStore(genie_world / "noact")
    with pytest.raises(ActionSourceError, match="data.actions=latent"):
        relabel(noact, "true")
    for source, extra in (("none", {}), ("latent", {"lam": str(genie_world / "lam")})):
        out = tmp_path / source
        result = train_dynamics(
            maskgit(genie_world, "noact", actions=source, **extra), out, progress=False
        )
        assert result.step == 6 and all(np.isfinite(result.losses))
        wm = load_world_model(out)
        assert wm.meta["action_source"] == source
        play_a_few_steps(wm, genie_world / "noact", action=0)
