"""WorldModelEnv (the gymnasium env over a world model), the rollout command and play --ckpt."""

from __future__ import annotations

import argparse
import copy

import imageio.v2 as imageio
import numpy as np
import pytest

from farsight.data.store import EpisodeStore, StoreWriter
from farsight.envs.controls import PlayableEnv, check_controls
from farsight.sampling import SamplingConfig
from farsight.world_env import WorldModelEnv
from tests.test_sampling import tiny_dynamics, tiny_world_model

SIZE = 32  # ae_tiny: 32x32 frames -> 8x8x4 latents


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world_model():
    return tiny_world_model()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> EpisodeStore:
    """Four episodes of smooth random frames; half of them held out as test."""
    path = tmp_path_factory.mktemp("store")
    meta = {
        "env": {"env_id": "arena", "size": SIZE, "action_meanings": list("ABCDE")},
        "split": {"seed": 0, "val": 0.0, "test": 0.5},
    }
    arrays = {"frames": ((SIZE, SIZE, 3), "uint8"), "actions": ((), "int64")}
    writer = StoreWriter(path, meta, arrays)
    rng = np.random.default_rng(0)
    for length in (20, 12, 16, 9):
        base = rng.integers(0, 256, (1, SIZE, SIZE, 3))
        frames = (base + 4 * np.arange(length)[:, None, None, None]) % 256
        actions = rng.integers(0, 5, length)
        writer.add_episode({"frames": frames.astype(np.uint8), "actions": actions}, False)
    writer.close()
    return EpisodeStore(path)


def make_env(world_model, store=None, seed=0, **sampling) -> WorldModelEnv:
    return WorldModelEnv(
        world_model, store, sampling=SamplingConfig(steps=2, **sampling), seed=seed
    )


def test_reset_and_step_follow_the_gymnasium_api(world_model, store):
    env = make_env(world_model, store)
    assert isinstance(env, PlayableEnv)
    assert env.action_meanings == ("A0", "A1", "A2", "A3", "A4") and env.action_space.n == 5
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    frame, info = env.reset(options={"prompt": "random"})
    assert env.observation_space.contains(frame)
    assert info["episode"] in store.split_episodes("test")
    assert info["prompt_frames"] == 4  # the clip length it was trained on (window 4)
    for action in range(5):
        frame, reward, terminated, truncated, info = env.step(action)
        assert frame.shape == (SIZE, SIZE, 3) and frame.dtype == np.uint8
        assert (reward, terminated, truncated) == (0.0, False, False)
        assert info["step_ms"] > 0 and info["frame_index"] == 4 + action
    with pytest.raises(ValueError, match="outside"):
        env.step(5)


def test_prompts_from_episodes_arrays_and_a_real_env(world_model, store):
    env = make_env(world_model, store)
    _, info = env.reset(options={"prompt": 3})
    assert info["episode"] == 3
    frames = store.read(1, 0, 6)["frames"]
    first, _ = env.reset(options={"prompt": frames})
    assert np.array_equal(first, frames[-1]) and env.state.next_frame == 4  # last 4 kept
    env.reset(options={"prompt": {"frames": frames[:2], "actions": [1, 2]}})
    assert env.state.next_frame == 2
    arena_model = tiny_world_model(num_actions=9)
    frame, info = make_env(arena_model).reset(seed=1)  # no store: a fresh arena
    assert frame.shape == (SIZE, SIZE, 3) and "arena" in info["prompt"]
    with pytest.raises(ValueError, match="arena has 9 actions, the model 5"):
        make_env(world_model).reset(seed=1)
    for bad, match in [
        ("nonsense", "prompt='nonsense'"),
        (99, "out of range"),
        (frames[:, :8], r"must be \(P, 32, 32, 3\)"),
        ({"frames": frames, "actions": [0]}, "one action per frame"),
    ]:
        with pytest.raises(ValueError, match=match):
            env.reset(options={"prompt": bad})


def rollout_frames(env: WorldModelEnv, seed: int | None, actions=(0, 1, 2, 3, 4, 0)):
    first, _ = env.reset(seed=seed)
    return np.stack([first] + [env.step(a)[0] for a in actions])


def test_same_seed_same_rollout(world_model, store):
    env = make_env(world_model, store, seed=7)
    a = rollout_frames(env, seed=11)
    b = rollout_frames(env, seed=11)
    c = rollout_frames(make_env(world_model, store, seed=99), seed=11)
    d = rollout_frames(env, seed=12)
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert not np.array_equal(a, d)
    # Without a reset seed, the construction seed decides.
    e = rollout_frames(make_env(world_model, store, seed=3), seed=None)
    f = rollout_frames(make_env(world_model, store, seed=3), seed=None)
    assert np.array_equal(e, f)


def test_previews_are_the_frames_holding_the_action_makes(world_model, store):
    """Each action's preview is exactly what stepping with it would draw, and previewing
    leaves the env's rollout as it was."""
    env = make_env(world_model, store, seed=5)
    assert not env.latent_actions
    with pytest.raises(RuntimeError, match="reset"):
        env.preview_actions()
    env.reset(seed=5)
    env.step(1)
    previews = env.preview_actions(steps=3)
    assert previews.shape == (5, 3, SIZE, SIZE, 3) and previews.dtype == np.uint8
    assert env.steps_taken == 1
    after = [env.step(a)[0] for a in (2, 2, 2)]
    np.testing.assert_array_equal(np.stack(after), previews[2])
    for action in (0, 4):
        twin = make_env(world_model, store, seed=5)
        twin.reset(seed=5)
        twin.step(1)
        held = np.stack([twin.step(action)[0] for _ in range(3)])
        np.testing.assert_array_equal(held, previews[action])
    assert not np.array_equal(previews[0], previews[4])
    with pytest.raises(ValueError, match="steps"):
        env.preview_actions(steps=0)


def test_controls_and_configure(world_model, store):
    env = make_env(world_model, store)
    check_controls(env.controls)
    assert env.controls["steps"]["value"] == 2
    assert env.controls["context_level"]["value"] == world_model.objective.context_level
    with pytest.raises(ValueError, match="unknown control 'temperature'"):
        env.configure(temperature=1.0)
    with pytest.raises(ValueError, match="'context' takes one of"):
        env.configure(steps=3, context="warm")
    assert env.sampling.steps == 2  # nothing applied
    env.reset(seed=0)
    for settings in (
        {"context": "dynamic", "steps": 3},
        {"context": "stable", "context_level": 0.05, "sampler": "heun"},
        {"kv_cache": False},
        {"kv_cache": True, "context": "clean", "shift": 2.0},
    ):
        env.configure(**settings)
        frame = env.step(1)[0]
        assert frame.shape == (SIZE, SIZE, 3)
        assert all(env.controls[k]["value"] == v for k, v in settings.items())
    assert env.state.cache is not None and env.state.cache_levels == (0.0, 0.0)


def test_action_guidance_is_a_control_of_models_with_a_null_action(world_model, store):
    """Only a model trained with a null action offers the scale; stepping honours it as
    ``generate`` does."""
    assert "action_guidance" not in make_env(world_model, store).controls
    guided = copy.copy(world_model)
    guided.dynamics = tiny_dynamics(num_actions=5, null_action=True)
    env = make_env(guided, store)
    check_controls(env.controls)
    assert env.controls["action_guidance"]["value"] == 1.0
    env.reset(seed=5, options={"prompt": 0})
    plain = np.stack([env.step(a)[0] for a in (1, 2)])
    env.configure(action_guidance=3.0)
    env.reset(seed=5, options={"prompt": 0})
    stepped = np.stack([env.step(a)[0] for a in (1, 2)])
    env.reset(seed=5, options={"prompt": 0})
    assert np.array_equal(env.generate([1, 2]), stepped)
    assert not np.array_equal(plain, stepped)


@pytest.mark.parametrize("scheduling", ["autoregressive", "chunked", "pyramid", "full_sequence"])
def test_generate_follows_the_scheduling(world_model, store, scheduling):
    env = make_env(world_model, store, scheduling=scheduling, chunk=3)
    env.reset(seed=0, options={"prompt": 0})
    seen = []
    frames = env.generate([0, 1, 2, 3, 4], on_frame=lambda i, f: seen.append(i))
    assert frames.shape == (5, SIZE, SIZE, 3) and frames.dtype == np.uint8
    assert seen == [4, 5, 6, 7, 8]


def test_autoregressive_generate_equals_stepping(world_model, store):
    env = make_env(world_model, store)
    env.reset(seed=5, options={"prompt": 0})
    generated = env.generate([1, 2, 3])
    env.reset(seed=5, options={"prompt": 0})
    stepped = np.stack([env.step(a)[0] for a in (1, 2, 3)])
    assert np.array_equal(generated, stepped)


def test_rollout_command_writes_truth_and_generation_side_by_side(world_model, store, tmp_path):
    from farsight.rollout_video import write_rollout_video

    out = tmp_path / "rollout.mp4"
    result = write_rollout_video(
        world_model,
        store,
        out,
        frames=6,
        sampling=SamplingConfig(steps=2),
        scale=2,
        progress=False,
    )
    assert result.episode == store.split_episodes("test")[0]
    assert (result.prompt_frames, result.generated) == (4, 6)
    video = imageio.mimread(out)
    assert len(video) == 10
    height = 2 * SIZE + 14  # upscaled frame + caption strip
    assert video[0].shape == (height, 2 * 2 * SIZE, 3)

    # --heads: one more panel per far head; an episode too short for --steps is cut.
    out = tmp_path / "heads.mp4"
    result = write_rollout_video(
        world_model, store, out, frames=50, episode=3, heads=True, scale=2, progress=False
    )
    assert (result.prompt_frames, result.generated) == (4, 5)  # episode 3 has 9 frames
    video = imageio.mimread(out)
    assert len(video) == 9 and video[0].shape == (height, 5 * 2 * SIZE, 3)


def test_play_ckpt_branch_serves_world_model_envs(world_model, store, monkeypatch):
    import farsight.world_model as world_model_module
    from farsight.cli import build_parser
    from farsight.commands.play import env_factory

    monkeypatch.setattr(world_model_module, "load_world_model", lambda path, device: world_model)
    args = build_parser().parse_args(
        [
            "play",
            "--ckpt",
            "runs/x",
            "--data",
            str(store.path),
            "--device",
            "cpu",
            "--sampling.steps",
            "3",
            "--seed",
            "0",
        ]
    )
    factory, title = env_factory(args)
    assert "world model" in title
    env = factory()
    assert isinstance(env, WorldModelEnv) and env.sampling.steps == 3
    frame, _ = env.reset(seed=None, options={"prompt": "random"})
    assert env.step(0)[0].shape == frame.shape
    bad = build_parser().parse_args(["play", "--ckpt", "x", "--sampling.context", "warm"])
    with pytest.raises(Exception, match="sampling.context='warm'"):
        env_factory(bad)
    both = argparse.Namespace(**{**vars(args), "env": "arena"})
    with pytest.raises(Exception, match="exclude each other"):
        env_factory(both)


def test_the_run_configs_sampling_is_the_default_and_flags_override_it(world_model):
    from types import SimpleNamespace

    from farsight.sampling.config import add_sampling_arguments, model_sampling, sampling_from_args
    from farsight.train.recipes.dynamics import DynamicsRunConfig

    assert model_sampling(world_model) == SamplingConfig()  # no run config: the defaults
    run = DynamicsRunConfig(sampling=SamplingConfig(steps=2, context="clean"))
    own = SimpleNamespace(**{**vars(world_model), "config": run})
    env = WorldModelEnv(own)
    assert (env.sampling.steps, env.sampling.context) == (2, "clean")
    parser = argparse.ArgumentParser()
    add_sampling_arguments(parser)
    flags = parser.parse_args(["--sampling.steps", "3"])
    chosen = sampling_from_args(flags, model_sampling(own))
    assert (chosen.steps, chosen.context) == (3, "clean")
    assert WorldModelEnv(own, sampling=chosen).sampling.steps == 3
