"""The built-in arena: API, determinism, dynamics, colour readback, noise."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from farsight.envs import EnvConfig, make_env
from farsight.envs.arena import (
    ACTION_DIRECTIONS,
    ACTION_MEANINGS,
    OBJECT_COLORS,
    PLAYER_COLOR,
    WALL_WIDTH,
    ArenaEnv,
    locate_by_color,
)
from farsight.envs.base import ArenaConfig


def rollout(env: ArenaEnv, seed: int, actions: list[int]) -> tuple[np.ndarray, list[dict]]:
    frame, info = env.reset(seed=seed)
    frames, states = [frame], [info["state"]]
    for a in actions:
        frame, _, _, _, info = env.step(a)
        frames.append(frame)
        states.append(info["state"])
    return np.stack(frames), states


def random_actions(n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(len(ACTION_MEANINGS), size=n).tolist()


def test_spaces_state_and_meta():
    cfg = ArenaConfig(num_objects=5)
    env = ArenaEnv(cfg, size=48)
    frame, info = env.reset(seed=0)
    assert env.observation_space.shape == (48, 48, 3)
    assert env.action_space.n == len(env.action_meanings) == 9
    assert env.action_meanings[0] == "NOOP"
    for f in (frame, env.step(1)[0]):
        assert f.dtype == np.uint8 and f.shape == (48, 48, 3)
        assert env.observation_space.contains(f)
    assert set(info["state"]) == set(env.state_spec)
    for name, (shape, dtype) in env.state_spec.items():
        assert info["state"][name].shape == shape
        assert info["state"][name].dtype == np.dtype(dtype)
    assert env.state_spec["objects"] == ((5, 2), "float32")

    meta = json.loads(json.dumps(env.env_meta()))
    assert meta["env_id"] == "arena" and meta["size"] == 48 and meta["frame_skip"] == 1
    assert meta["action_meanings"] == list(ACTION_MEANINGS)
    assert meta["arena"] == dataclasses.asdict(cfg)
    assert meta["player_color"] == PLAYER_COLOR.tolist()
    assert meta["object_colors"] == OBJECT_COLORS[:5].tolist()


def test_registry_builds_arena():
    env = make_env(EnvConfig(id="arena", size=32))
    assert isinstance(env, ArenaEnv)
    assert env.reset(seed=0)[0].shape == (32, 32, 3)


def test_palette_is_unique():
    palette = np.concatenate([PLAYER_COLOR[None], OBJECT_COLORS]).astype(int)
    gaps = np.abs(palette[:, None] - palette[None]).max(-1)
    assert gaps[~np.eye(len(palette), dtype=bool)].min() >= 127


@pytest.mark.parametrize("map_seed", [0, -1])
def test_same_seed_same_episode(map_seed: int):
    cfg = ArenaConfig(pixel_noise=4.0, map_seed=map_seed)
    actions = random_actions(60)
    frames_a, states_a = rollout(ArenaEnv(cfg), 7, actions)
    frames_b, states_b = rollout(ArenaEnv(cfg), 7, actions)
    np.testing.assert_array_equal(frames_a, frames_b)
    for sa, sb in zip(states_a, states_b, strict=True):
        for name in sa:
            np.testing.assert_array_equal(sa[name], sb[name])


def test_different_seed_different_episode():
    actions = random_actions(20)
    frames_a, states_a = rollout(ArenaEnv(), 1, actions)
    frames_b, states_b = rollout(ArenaEnv(), 2, actions)
    assert not np.array_equal(frames_a, frames_b)
    assert not np.allclose(states_a[0]["objects"], states_b[0]["objects"])
    assert not np.allclose(states_a[0]["player"], states_b[0]["player"])


def test_reset_without_seed_continues_the_stream():
    env = ArenaEnv()
    first = env.reset(seed=3)[1]["state"]["objects"]
    second = env.reset()[1]["state"]["objects"]
    assert not np.allclose(first, second)
    assert np.allclose(first, ArenaEnv().reset(seed=3)[1]["state"]["objects"])


def test_map_is_fixed_or_per_episode():
    fixed = ArenaEnv(ArenaConfig(map_seed=5))
    fixed.reset(seed=0)
    map_0 = fixed.world_image.copy()
    fixed.reset(seed=1)
    np.testing.assert_array_equal(fixed.world_image, map_0)
    assert not np.array_equal(ArenaEnv(ArenaConfig(map_seed=6)).world_image, map_0)

    per_episode = ArenaEnv(ArenaConfig(map_seed=-1))
    per_episode.reset(seed=0)
    map_0 = per_episode.world_image.copy()
    per_episode.reset(seed=1)
    assert not np.array_equal(per_episode.world_image, map_0)


def test_truncation():
    env = ArenaEnv(ArenaConfig(episode_steps=10))
    env.reset(seed=0)
    for t in range(1, 11):
        _, reward, terminated, truncated, _ = env.step(t % 9)
        assert terminated is False
        assert truncated is (t == 10)
        assert isinstance(reward, float)
    with pytest.raises(RuntimeError):
        env.step(0)
    env.reset(seed=0)
    assert env.step(0)[3] is False


def test_invalid_inputs():
    env = ArenaEnv()
    with pytest.raises(RuntimeError):
        env.step(0)
    env.reset(seed=0)
    for bad in (-1, 9):
        with pytest.raises(ValueError):
            env.step(bad)
    with pytest.raises(ValueError, match="world_size"):
        ArenaEnv(ArenaConfig(world_size=64), size=128)
    with pytest.raises(ValueError, match="num_objects"):
        ArenaEnv(ArenaConfig(num_objects=len(OBJECT_COLORS) + 1))


@pytest.mark.parametrize("action", range(9))
def test_actions_move_player_and_camera(action: int):
    # A big world, so neither the player nor the camera meets a wall in 5 steps.
    env = ArenaEnv(ArenaConfig(world_size=256, num_objects=0, player_speed=2.0))
    _, states = rollout(env, 0, [action] * 5)
    start, end = states[0], states[-1]
    assert start["player"].min() > 50 and start["player"].max() < 206
    expected = 5 * 2.0 * ACTION_DIRECTIONS[action]
    np.testing.assert_allclose(end["player"] - start["player"], expected, atol=1e-4)
    cam_move = end["camera"] - start["camera"]
    np.testing.assert_array_equal(np.sign(cam_move), np.sign(np.round(expected, 6)))
    assert np.abs(cam_move - expected).max() <= 1.0
    # The camera follows the player: it stays (within rounding) at the centre of the view.
    np.testing.assert_allclose(end["player"] - end["camera"], 32.0, atol=0.5)


@pytest.mark.parametrize(("action", "dx", "dy"), [(1, 0, -2), (2, 2, 0), (3, -2, 0), (4, 0, 2)])
def test_view_is_the_world_at_the_camera(action: int, dx: int, dy: int):
    env = ArenaEnv(ArenaConfig(world_size=256, num_objects=0, player_speed=2.0))
    frames, states = rollout(env, 0, [action] * 3)
    cameras = np.stack([s["camera"] for s in states]).astype(int)
    np.testing.assert_array_equal(np.diff(cameras, axis=0), [[dx, dy]] * 3)
    for frame, (cx, cy) in zip(frames, cameras, strict=True):
        world = env.world_image[cy : cy + 64, cx : cx + 64]
        differs = (frame != world).any(-1)
        # Only the player (a square of 7x7 or fewer pixels, in its colour) covers the floor.
        assert 0 < differs.sum() <= 49
        assert (frame[differs] == PLAYER_COLOR).all()


def test_walls_come_into_view_at_the_corner():
    env = ArenaEnv(ArenaConfig(num_objects=0))
    env.reset(seed=0)
    for _ in range(150):
        frame, _, _, _, info = env.step(ACTION_MEANINGS.index("UPLEFT"))
    state = info["state"]
    np.testing.assert_array_equal(state["camera"], [0, 0])
    lo = WALL_WIDTH + env.cfg.object_radius
    np.testing.assert_allclose(state["player"], [lo, lo], atol=1e-6)
    band = frame[:WALL_WIDTH].astype(int)
    assert (band.max(-1) == band.min(-1)).all(), "walls are grey"
    assert not (np.ptp(frame[WALL_WIDTH + 12 :, WALL_WIDTH + 12 :].astype(int), -1) == 0).all()


def test_objects_bounce_inside_the_world_and_keep_moving():
    cfg = ArenaConfig(num_objects=6, episode_steps=3000)
    env = ArenaEnv(cfg)
    _, states = rollout(env, 0, random_actions(3000, seed=1))
    objects = np.stack([s["objects"] for s in states])
    vel = np.stack([s["object_vel"] for s in states])
    camera = np.stack([s["camera"] for s in states])
    lo = WALL_WIDTH + cfg.object_radius
    hi = cfg.world_size - lo
    assert objects.min() >= lo - 1e-4 and objects.max() <= hi + 1e-4
    np.testing.assert_allclose(np.linalg.norm(vel, axis=-1), cfg.object_speed, rtol=1e-5)
    # Momentum: without a bounce or a hit, every step moves an object by its velocity.
    steps = objects[1:] - objects[:-1]
    unchanged = (vel[1:] == vel[:-1]).all(-1)
    assert unchanged.mean() > 0.9
    np.testing.assert_allclose(steps[unchanged], vel[1:][unchanged], atol=1e-4)
    # Every object reverses each velocity component at least once (it hit the walls)...
    flips = (np.sign(vel[1:]) != np.sign(vel[:-1])).sum(0)
    assert (flips >= 1).all(), flips
    # ...and spends time off-screen, where it keeps moving all the same.
    in_view = ((objects >= camera[:, None]) & (objects < camera[:, None] + 64)).all(-1)
    assert 0.05 < in_view.mean() < 0.95


def test_touching_an_object_rewards_and_knocks_it_away():
    # A crowded small world, so contacts are frequent.
    env = ArenaEnv(ArenaConfig(world_size=64, num_objects=8, episode_steps=400))
    env.reset(seed=0)
    rewards = []
    for a in random_actions(400, seed=2):
        _, reward, _, _, info = env.step(a)
        rewards.append(reward)
        if reward > 0:
            state = info["state"]
            away = state["objects"] - state["player"]
            near = np.linalg.norm(away, axis=-1) < 2 * env.cfg.object_radius
            # At least one touching object now moves straight away from the player.
            cos = (away * state["object_vel"]).sum(-1) / (
                np.linalg.norm(away, axis=-1) * env.cfg.object_speed + 1e-9
            )
            assert (cos[near] > 0.999).any()
    rewards = np.array(rewards)
    assert set(np.unique(rewards)) <= {0.0, 1.0, 2.0, 3.0}
    assert 0 < (rewards > 0).sum() < len(rewards) / 2


def test_only_approaching_objects_pay():
    # Objects that overlap the player while moving away (spawned there, or just knocked away)
    # must not pay; approaching ones must. The player stands still, so "approaching" is the
    # object's own velocity pointing at the player.
    cfg = ArenaConfig(world_size=96, num_objects=12)
    env = ArenaEnv(cfg)
    lo = WALL_WIDTH + cfg.object_radius
    hi = cfg.world_size - lo
    leaving_seen = approaching_seen = 0
    for seed in range(150):
        before = env.reset(seed=seed)[1]["state"]
        _, reward, _, _, info = env.step(ACTION_MEANINGS.index("NOOP"))
        after = info["state"]
        away = after["objects"] - after["player"]
        touching = np.linalg.norm(away, axis=-1) < 2 * cfg.object_radius
        near_wall = ((before["objects"] < lo + 3) | (before["objects"] > hi - 3)).any(-1)
        if (touching & near_wall).any():
            continue  # a wall bounce would change the velocity this test reasons with
        approaching = (away * before["object_vel"]).sum(-1) < 0
        assert reward == (touching & approaching).sum()
        leaving_seen += (touching & ~approaching).sum()
        approaching_seen += (touching & approaching).sum()
    assert leaving_seen >= 5 and approaching_seen >= 5


def test_color_readback_matches_state():
    cfg = ArenaConfig(num_objects=6, world_size=128, floor_detail=1.0)
    env = ArenaEnv(cfg)
    frames, states = rollout(env, 0, random_actions(300, seed=3))
    colors = np.concatenate([PLAYER_COLOR[None], OBJECT_COLORS[:6]])
    found = locate_by_color(frames, colors)
    assert found.shape == (301, 7, 2)
    r = cfg.object_radius
    checked = 0
    for t, state in enumerate(states):
        truth = np.concatenate([state["player"][None], state["objects"]]) - state["camera"]
        inside = ((truth > r + 1) & (truth < 64 - r - 1)).all(-1)
        gaps = np.linalg.norm(truth[:, None] - truth[None], axis=-1) + np.eye(7) * 1e9
        alone = gaps.min(-1) > 2 * r + 2
        for k in np.flatnonzero(inside & alone):
            np.testing.assert_allclose(found[t, k], truth[k], atol=0.3)
            # The pixel under the centre is exactly the object's colour.
            x, y = np.floor(truth[k]).astype(int)
            np.testing.assert_array_equal(frames[t, y, x], colors[k])
            checked += 1
        outside = ~((truth > -r - 1) & (truth < 64 + r + 1)).all(-1)
        assert np.isnan(found[t, outside]).all()
    assert checked > 400


def test_floor_and_walls_stay_far_from_the_palette():
    # The margins the module's palette comment promises: >= 100 from saturated colours, >= 79
    # from white.
    for seed in range(3):
        env = ArenaEnv(ArenaConfig(floor_detail=1.0, map_seed=seed, world_size=256))
        pixels = env.world_image.reshape(-1, 1, 3).astype(int)
        assert np.abs(pixels - OBJECT_COLORS[None].astype(int)).max(-1).min() >= 100
        assert np.abs(pixels - PLAYER_COLOR.astype(int)).max(-1).min() >= 79


def test_floor_detail_controls_high_frequency_texture():
    def roughness(detail: float) -> float:
        image = ArenaEnv(ArenaConfig(floor_detail=detail)).world_image.astype(float)
        return float(np.abs(np.diff(image, axis=1)).mean())

    assert roughness(0.0) < roughness(0.3) < roughness(1.0)


def test_pixel_noise():
    # Without noise a frame is a pure function of the state (see also the exact floor match in
    # test_view_is_the_world_at_the_camera); with it, every render draws fresh noise.
    clean_env = ArenaEnv(ArenaConfig(num_objects=0))
    clean, clean_info = clean_env.reset(seed=0)
    np.testing.assert_array_equal(clean_env.render(), clean)

    noisy_env = ArenaEnv(ArenaConfig(num_objects=0, pixel_noise=8.0))
    noisy, noisy_info = noisy_env.reset(seed=0)
    np.testing.assert_array_equal(noisy_info["state"]["player"], clean_info["state"]["player"])
    again = noisy_env.render()
    assert (again != noisy).mean() > 0.5

    diff = np.stack([noisy, again]).astype(float) - clean
    assert abs(diff.mean()) < 0.5
    assert 7.0 < diff.std() < 9.0
