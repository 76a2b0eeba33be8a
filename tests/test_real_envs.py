"""Contract tests for the real-game wrappers: ALE, Crafter, ViZDoom.

Each game package is an optional dependency (``farsight[games]``); its tests are skipped when
it is missing. Crafter resets take about a second each, so its rollouts are kept few.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from farsight.envs import EnvConfig, FarsightEnv, make_env


def _atari(env_id: str = "ALE/Pong-v5", **kw) -> FarsightEnv:
    pytest.importorskip("ale_py")
    from farsight.envs.atari import AtariEnv

    return AtariEnv(env_id, **kw)


def _crafter(**kw) -> FarsightEnv:
    pytest.importorskip("crafter")
    from farsight.envs.crafter import CrafterEnv

    return CrafterEnv(**kw)


def _vizdoom(scenario: str, **kw) -> FarsightEnv:
    pytest.importorskip("vizdoom")
    from farsight.envs.vizdoom import VizDoomEnv

    return VizDoomEnv(scenario, **kw)


# name -> (factory, game package, steps per determinism rollout, expected number of actions)
ENVS: dict[str, tuple[Callable[..., FarsightEnv], str, int, int]] = {
    "ALE/Pong-v5": (_atari, "ale_py", 60, 6),
    # Crafter diverged across processes within ~25 steps before its despawn order was fixed.
    "crafter": (_crafter, "crafter", 100, 17),
    "vizdoom/basic": (lambda **kw: _vizdoom("basic", **kw), "vizdoom", 40, 6),
    "vizdoom/health_gathering": (
        lambda **kw: _vizdoom("health_gathering", **kw),
        "vizdoom",
        40,
        6,
    ),
}


@pytest.fixture(params=list(ENVS))
def env_name(request: pytest.FixtureRequest) -> str:
    return request.param


def _check_state(env: FarsightEnv, info: dict) -> None:
    state = info["state"]
    assert set(state) == set(env.state_spec)
    for key, (shape, dtype) in env.state_spec.items():
        assert state[key].shape == shape and state[key].dtype == np.dtype(dtype), key


def _rollout(
    env: FarsightEnv, seed: int | None, actions: np.ndarray
) -> tuple[np.ndarray, list[float]]:
    frame, _ = env.reset(seed=seed)
    frames, rewards = [frame], []
    for a in actions:
        frame, reward, terminated, truncated, _ = env.step(int(a))
        frames.append(frame)
        rewards.append(reward)
        if terminated or truncated:
            break
    return np.stack(frames), rewards


@pytest.mark.slow
def test_contract(env_name: str) -> None:
    make, _, _, n_actions = ENVS[env_name]
    env = make(size=48)
    try:
        assert env.observation_space.shape == (48, 48, 3)
        assert env.observation_space.dtype == np.uint8
        assert env.observation_space.low.min() == 0 and env.observation_space.high.max() == 255
        assert env.action_space.n == n_actions
        assert len(env.action_meanings) == n_actions
        assert len(set(env.action_meanings)) == n_actions
        assert all(isinstance(m, str) and m for m in env.action_meanings)

        frame, info = env.reset(seed=0)
        assert frame.shape == (48, 48, 3) and frame.dtype == np.uint8
        assert frame.flags.c_contiguous and env.observation_space.contains(frame)
        assert frame.std() > 0, "blank first frame"
        _check_state(env, info)
        rng = np.random.default_rng(0)
        for _ in range(10):
            frame, reward, terminated, truncated, info = env.step(int(rng.integers(n_actions)))
            assert env.observation_space.contains(frame)
            assert type(reward) is float
            assert type(terminated) is bool and type(truncated) is bool
            _check_state(env, info)

        meta = json.loads(json.dumps(env.env_meta()))
        assert meta["env_id"] == env_name
        assert meta["size"] == 48
        assert meta["action_meanings"] == list(env.action_meanings)
        assert isinstance(meta["frame_skip"], int) and meta["frame_skip"] >= 1
    finally:
        env.close()


@pytest.mark.slow
def test_determinism(env_name: str) -> None:
    make, _, steps, n_actions = ENVS[env_name]
    actions = np.random.default_rng(1).integers(n_actions, size=steps)
    first, second = make(), make()
    try:
        a1, ra1 = _rollout(first, 3, actions)
        # An unseeded reset continues the seeded sequence of episodes.
        a2, _ = _rollout(first, None, actions)
        c1, _ = _rollout(second, 4, actions)
        # Reseeding a used env replays the episode of a fresh one.
        b1, rb1 = _rollout(second, 3, actions)
        b2, _ = _rollout(second, None, actions)
        np.testing.assert_array_equal(a1, b1)
        assert ra1 == rb1
        np.testing.assert_array_equal(a2, b2)
        k = min(len(a1), len(c1))
        assert not np.array_equal(a1[:k], c1[:k]), "seeds 3 and 4 gave the same episode"
    finally:
        first.close()
        second.close()


@pytest.mark.slow
def test_registry_builds_each_env(env_name: str) -> None:
    pytest.importorskip(ENVS[env_name][1])
    env = make_env(EnvConfig(id=env_name, size=32))
    try:
        assert env.observation_space.shape == (32, 32, 3)
        assert env.env_meta()["env_id"] == env_name
    finally:
        env.close()


@pytest.mark.parametrize("bad_id", ["ALE/NoSuchGame-v5", "ALE/Pong-v4", "ALE/Pong"])
def test_unknown_atari_game_is_named(bad_id: str) -> None:
    pytest.importorskip("ale_py")
    with pytest.raises(ValueError, match=bad_id):
        make_env(EnvConfig(id=bad_id))


def test_unknown_vizdoom_scenario_is_named() -> None:
    with pytest.raises(ValueError, match="no_such_map.*basic"):
        _vizdoom("no_such_map")


@pytest.mark.slow
def test_atari_episode_terminates_and_ram_is_state() -> None:
    env = _atari("ALE/Breakout-v5")
    try:
        _, info = env.reset(seed=0)
        rams = [info["state"]["ram"]]
        rng = np.random.default_rng(0)
        for _ in range(3000):
            _, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
            rams.append(info["state"]["ram"])
            if terminated or truncated:
                break
        assert terminated and not truncated, "random Breakout should lose all lives"
        assert not np.array_equal(rams[0], rams[-1])
        meta = env.env_meta()
        assert meta["repeat_action_probability"] == 0.25 and meta["frame_skip"] == 4
    finally:
        env.close()


@pytest.mark.slow
def test_crafter_truncates_at_length() -> None:
    env = _crafter(length=5)
    try:
        _, info = env.reset(seed=0)
        assert info["state"]["inventory"][0] == 9  # full health
        flags = [env.step(0)[2:4] for _ in range(5)]
        assert flags == [(False, False)] * 4 + [(False, True)]
    finally:
        env.close()


@pytest.mark.slow
def test_crafter_death_terminates() -> None:
    env = _crafter()
    try:
        env.reset(seed=0)
        env._env._player.health = 0  # no quick way to die by playing
        _, _, terminated, truncated, info = env.step(0)
        assert terminated and not truncated
        assert info["state"]["inventory"][0] == 0
    finally:
        env.close()


@pytest.mark.slow
def test_vizdoom_basic_timeout_truncates_and_kill_terminates() -> None:
    env = _vizdoom("basic")
    try:
        frame, info = env.reset(seed=0)
        assert info["state"]["ammo2"][0] == 50
        ends, last = [], frame
        for step in range(1, 1000):
            frame, _, terminated, truncated, _ = env.step(0)  # noop until the timeout
            if terminated or truncated:
                ends.append((step, terminated, truncated))
                break
            last = frame
        assert ends == [(300 // 4, False, True)]  # episode_timeout = 300 tics, 4 tics a step
        np.testing.assert_array_equal(frame, last)  # no screen after the end: repeated

        attack = env.action_meanings.index("attack")
        _, info = env.reset()
        env.step(attack)  # the shot leaves on the second step's tics
        assert env.step(attack)[4]["state"]["ammo2"][0] == 49
        # Random play kills the single monster in some episodes: that is a terminal state.
        rng = np.random.default_rng(0)
        outcomes = set()
        for _ in range(30):
            env.reset()
            while True:
                _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
                if terminated or truncated:
                    outcomes.add((terminated, truncated))
                    break
        assert (True, False) in outcomes
    finally:
        env.close()


@pytest.mark.slow
def test_vizdoom_health_gathering_death_terminates() -> None:
    env = _vizdoom("health_gathering")
    try:
        _, info = env.reset(seed=0)
        start_health = info["state"]["health"][0]
        for _ in range(600):  # the acid floor kills an idle player before the 2100-tic timeout
            _, reward, terminated, truncated, info = env.step(0)
            if terminated or truncated:
                break
        assert terminated and not truncated
        assert info["state"]["health"][0] < start_health
        assert reward < 0  # death_penalty
    finally:
        env.close()


@pytest.mark.slow
def test_vizdoom_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = _vizdoom("basic")
    env.reset(seed=0)
    env.step(0)
    scratch = Path(env._tmp.name)
    assert scratch.exists()
    env.close()
    assert list(tmp_path.iterdir()) == []
    assert not scratch.exists()
