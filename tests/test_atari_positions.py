"""Object-level ground truth for Atari games: the RAM maps against the pixels the emulator draws,
the readback of objects in 64 x 64 frames, and the per-object metrics of ``farsight eval``."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

pytest.importorskip("ale_py")

from farsight.data.recorder import RecordConfig, record  # noqa: E402
from farsight.data.store import EpisodeStore, SplitSpec  # noqa: E402
from farsight.envs.atari import AtariEnv  # noqa: E402
from farsight.envs.atari_ram import (  # noqa: E402
    BREAKOUT,
    NATIVE_HEIGHT,
    NATIVE_WIDTH,
    PONG,
    RamMap,
    ram_map,
)
from farsight.envs.base import EnvConfig  # noqa: E402
from farsight.eval.positions import (  # noqa: E402
    OBJECT_KEYS,
    ObjectState,
    SceneObjects,
    locate_objects,
    object_metrics,
    scene_objects,
    window_mse,
    window_psnr_rows,
)
from farsight.eval.report import row_to_json  # noqa: E402
from farsight.eval.run import EvalConfig, evaluate, write_eval  # noqa: E402
from farsight.sampling import SamplingConfig  # noqa: E402
from tests.test_sampling import tiny_world_model  # noqa: E402

GAMES = {"ALE/Breakout-v5": BREAKOUT, "ALE/Pong-v5": PONG}


def by(rows, metric):
    return {r.horizon: r for r in rows if r.metric == metric}


def record_store(tmp_path_factory, env_id: str, size: int, frames: int, steps: int, **split):
    path = tmp_path_factory.mktemp(env_id.split("/")[1]) / "store"
    cfg = RecordConfig(env=EnvConfig(id=env_id, size=size, max_episode_steps=steps))
    cfg.frames, cfg.shard_frames = frames, 256
    if split:
        cfg.split = SplitSpec(seed=0, **split)
    record(cfg, path, progress=False)
    return EpisodeStore(path)


@pytest.fixture(scope="module", params=list(GAMES))
def store64(request, tmp_path_factory) -> EpisodeStore:
    """Real recordings at 64 x 64 (the default recipe's policy: held random actions)."""
    return record_store(tmp_path_factory, request.param, 64, 600, 300)


def whole_store(store: EpisodeStore) -> tuple[np.ndarray, ObjectState, np.ndarray]:
    """All frames (M, 64, 64, 3), the recorded object state (M, K, ...) and the RAM (M, 128)."""
    reads = [store.read(e, 0, ep.length) for e, ep in enumerate(store.episodes)]
    frames = np.concatenate([r["frames"] for r in reads])
    state = ObjectState(*(np.concatenate([r[k] for r in reads]) for k in OBJECT_KEYS))
    return frames, state, np.concatenate([r["state.ram"] for r in reads])


# --------------------------------------------------------------------------------------------
# The RAM maps against the native screen


@pytest.mark.slow
@pytest.mark.parametrize("env_id", list(GAMES))
def test_ram_boxes_cover_the_objects_on_the_native_screen(env_id: str) -> None:
    """Independent of any readback code: on the emulator's 210 x 160 screen, each visible
    object's RAM box is drawn in the object's colour and the colour's centroid near the box is
    the box centre; an object the RAM says is out of play is not drawn."""
    m = ram_map(env_id)
    fx0, fx1, fy0, fy1 = m.field
    to_native = np.array([NATIVE_WIDTH / 64, NATIVE_HEIGHT / 64])
    env = AtariEnv(env_id, size=64)
    rng = np.random.default_rng(0)
    filled, centred, absent_ok, visible_n = [], [], [], np.zeros(len(m.objects), int)
    try:
        _, info = env.reset(seed=0)
        for _ in range(400):
            # Only the field: Breakout's right wall has a red foot beside the paddle's rows.
            field = env._ale.getScreenRGB()[fy0:fy1, fx0:fx1]
            state = info["state"]
            xy, wh, visible = m.read(state["ram"], 64)
            assert np.array_equal(state["object_xy"], xy, equal_nan=True)
            assert np.array_equal(state["object_visible"], visible)
            native = state["object_xy"] * to_native - (fx0, fy0)  # in field coordinates
            half = state["object_wh"] * to_native / 2
            for k, obj in enumerate(m.objects):
                if not visible[k]:
                    if env_id == "ALE/Pong-v5" and obj.name == "ball":
                        # The ball's white is unique inside Pong's field: none drawn.
                        absent_ok.append(not (field == obj.color).all(-1).any())
                    continue
                visible_n[k] += 1
                color = obj.color_at(native[k, 1] + fy0)
                x0, y0 = np.round(native[k] - half[k]).astype(int)
                x1, y1 = np.round(native[k] + half[k]).astype(int)
                filled.append((field[y0:y1, x0:x1] == color).all(-1).mean())
                gx0, gy0 = max(x0 - 3, 0), max(y0 - 3, 0)
                near = (field[gy0 : y1 + 3, gx0 : x1 + 3] == color).all(-1)
                ys, xs = np.nonzero(near)
                if len(xs) == 0:  # not drawn at all (Pong's paddle, a frame in ~1,500)
                    centred.append(math.inf)
                    continue
                cx, cy = xs.mean() + 0.5 + gx0, ys.mean() + 0.5 + gy0
                centred.append(math.hypot(cx - native[k, 0], cy - native[k, 1]))
            action = 1 if rng.random() < 0.3 else int(rng.integers(env.action_space.n))
            _, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                _, info = env.reset()
    finally:
        env.close()
    assert visible_n.min() >= 100, f"too few sightings per object: {visible_n}"
    filled, centred = np.array(filled), np.array(centred)
    # Pong's ball is drawn one row higher than byte 54 says in ~12% of frames (3 of 4 rows).
    assert np.mean(filled >= 0.75) >= 0.99 and np.mean(filled == 1.0) >= 0.8
    # Same-coloured neighbours (ball and paddle in Breakout) can pull a few centroids.
    assert np.mean(centred <= 1.0) >= 0.98, np.sort(centred)[-10:]
    assert all(absent_ok)


def test_registry_and_meta() -> None:
    assert ram_map("ALE/Breakout-v5") is BREAKOUT and ram_map("ALE/Tetris-v5") is None
    assert BREAKOUT.names == ("paddle", "ball") and PONG.names == ("paddle", "opponent", "ball")
    meta = PONG.meta()
    assert [o["name"] for o in meta["objects"]] == ["paddle", "opponent", "ball"]
    with pytest.raises(ValueError, match="Pong.*128"):
        PONG.read(np.zeros((3, 64), np.uint8), 64)
    # The ball out of play is not visible and has no position; paddles are always in play.
    ram = np.zeros(128, np.uint8)
    ram[72], ram[108] = 100, 8  # paddle left edge at native x 53, 16 wide
    xy, wh, visible = BREAKOUT.read(ram, 64)
    assert visible.tolist() == [True, False] and np.isnan(xy[1]).all() and wh[1].tolist() == [0, 0]
    assert xy[0].tolist() == pytest.approx([61 * 64 / 160, 191 * 64 / 210])
    # Near the right wall the paddle's visible part shrinks and its centre moves left.
    ram[72] = 191  # left edge 144: half of it under the wall at 152
    xy, wh, _ = BREAKOUT.read(ram, 160)
    assert wh[0, 0] == pytest.approx(8.0) and xy[0, 0] == pytest.approx(148.0)


@pytest.mark.slow
def test_unmapped_game_records_only_the_ram() -> None:
    env = AtariEnv("ALE/Tetris-v5", size=32)
    try:
        assert set(env.state_spec) == {"ram"} and env.env_meta()["ram_map"] is None
        _, info = env.reset(seed=0)
        assert set(info["state"]) == {"ram"}
    finally:
        env.close()


# --------------------------------------------------------------------------------------------
# Readback in recorded 64 x 64 frames


@pytest.mark.slow
def test_recorded_positions_match_the_objects_in_recorded_frames(store64: EpisodeStore) -> None:
    """The positions in the store, read from the RAM, are where the objects are in the stored
    64 x 64 frames: the readback finds every kind of object within 1 px almost always. The
    Breakout ball's misses are real ambiguities: in a pixel shared with the wall, or among
    bricks of its own colour."""
    objects = scene_objects(store64)
    assert objects is not None and objects.state_keys(store64.arrays) == OBJECT_KEYS
    frames, state, ram = whole_store(store64)
    # The same positions come from the RAM alone (older stores hold only the RAM).
    from_ram = objects.state({"state.ram": ram})
    assert np.array_equal(from_ram.xy, state.xy, equal_nan=True)
    assert np.array_equal(from_ram.visible, state.visible)

    read = locate_objects(frames, state, objects)
    for k, name in enumerate(objects.names):
        vis = state.visible[:, k]
        err = np.linalg.norm(read[vis, k] - state.xy[vis, k], axis=-1)
        assert vis.sum() >= 150, f"{name}: {vis.sum()} sightings"
        assert np.nanmedian(err) < 0.5, name
        floor = 0.93 if name == "ball" and objects.ram_map is BREAKOUT else 0.98
        assert np.mean(err <= 1.0) >= floor, (name, np.mean(err <= 1.0))
        assert np.mean(err <= 2.0) >= floor  # no sighting between 1 and 2 px off
        assert np.isnan(read[~vis, k]).all()  # never looked for where the truth has none


@pytest.mark.slow
def test_locate_objects_reads_known_shifts_and_absences(store64: EpisodeStore) -> None:
    objects = scene_objects(store64)
    frames, state, _ = whole_store(store64)
    bg = np.array(objects.background, np.uint8)
    # Shift the frames 3 px right: every object found about 3 px right of its truth; the
    # shifted position lies within the search window.
    shifted = np.roll(frames, 3, axis=-2)
    read = locate_objects(shifted, state, objects)
    # Objects clear of the side walls after the shift (the search area ends at them).
    inside = state.visible & (state.xy[..., 0] > 8) & (state.xy[..., 0] < 52)
    dx = read[..., 0] - state.xy[..., 0]
    ok = inside & ~np.isnan(dx)
    assert ok.sum() >= 0.9 * inside.sum()
    assert np.median(dx[ok]) == pytest.approx(3.0, abs=0.15)
    # An empty playfield shows nothing.
    blank = np.broadcast_to(bg, frames.shape)
    assert np.isnan(locate_objects(blank, state, objects)).all()
    with pytest.raises(ValueError, match="same leading shape"):
        locate_objects(frames[:5], state, objects)


@pytest.mark.slow
def test_a_painted_out_ball_is_never_hit_even_under_noise(store64: EpisodeStore) -> None:
    objects = scene_objects(store64)
    frames, state, _ = whole_store(store64)
    k = objects.names.index("ball")
    clean = locate_objects(frames, state, objects)
    readable = np.linalg.norm(clean[:, k] - state.xy[:, k], axis=-1) <= 1.0
    erased = frames.copy()
    for t in np.nonzero(readable)[0]:
        x, y = state.xy[t, k].astype(int)
        erased[t, max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3] = objects.background
    rng = np.random.default_rng(0)
    for source, want in ((frames, True), (erased, False)):
        noisy = np.clip(source + rng.normal(0.0, 8.0, source.shape), 0, 255).astype(np.uint8)
        read = locate_objects(noisy, state, objects)
        near = np.linalg.norm(read[readable, k] - state.xy[readable, k], axis=-1) <= 1.0
        if want:
            assert near.mean() >= 0.97
        else:
            assert not near.any()


def test_a_faint_object_is_a_miss_and_a_full_one_is_found() -> None:
    """Coverage mass decides: a ball drawn at a quarter of its colour is not found."""
    objects = scene_objects_for(PONG, 64)
    frame = np.zeros((1, 64, 64, 3), np.uint8) + np.array(PONG.background, np.uint8)
    truth = ObjectState(
        np.array([[[np.nan, np.nan]] * 2 + [[30.5, 30.5]]], np.float32),
        np.array([[[0, 0]] * 2 + [[1.0, 1.0]]], np.float32),
        np.array([[False, False, True]]),
    )
    full, faint = frame.copy(), frame.copy()
    full[0, 30, 30] = PONG.objects[2].color
    faint[0, 30, 30] = (0.75 * frame[0, 0, 0] + 0.25 * np.array(PONG.objects[2].color)).astype(
        np.uint8
    )
    assert locate_objects(full, truth, objects)[0, 2].tolist() == [30.5, 30.5]
    assert np.isnan(locate_objects(faint, truth, objects)[0, 2]).all()


def scene_objects_for(m: RamMap, size: int) -> SceneObjects:
    return SceneObjects.from_ram_map(m, size)


# --------------------------------------------------------------------------------------------
# Metrics


def clips(store: EpisodeStore, n: int, t: int) -> tuple[np.ndarray, ObjectState]:
    reads = [store.read(e, 0, t) for e in range(n)]
    frames = np.stack([r["frames"] for r in reads])
    state = ObjectState(*(np.stack([r[k] for r in reads]) for k in OBJECT_KEYS))
    return frames, state


@pytest.mark.slow
def test_object_metrics_of_exact_shifted_blank_and_copied_frames(store64: EpisodeStore) -> None:
    objects = scene_objects(store64)
    gt, truth = clips(store64, 2, 128)
    names = objects.names
    rows = object_metrics(gt, truth, objects, gt_frames=gt, n_boot=50)
    for name in names:
        for h, r in by(rows, f"{name}_hit_rate").items():
            if r.n:
                assert r.value == 1.0 and by(rows, f"{name}_miss_rate")[h].value == 0.0
                assert by(rows, f"{name}_error")[h].value < 0.5
                assert math.isinf(by(rows, f"{name}_window_psnr")[h].value)
        assert sum(r.n for r in by(rows, f"{name}_hit_rate").values()) > 0, name

    # 3 px right: found, 3 px off (beyond the 2 px hit radius).
    rows = object_metrics(np.roll(gt, 3, axis=-2), truth, objects, gt_frames=gt, n_boot=50)
    errors = [r for r in rows if r.metric.endswith("_error") and r.n]
    assert errors and all(r.value == pytest.approx(3.0, abs=0.35) for r in errors)
    assert all(r.value == 0.0 for r in rows if r.metric.endswith("_hit_rate") and r.n)

    # Nothing drawn: every measured sighting is a miss, the error undefined.
    blank = np.broadcast_to(np.array(objects.background, np.uint8), gt.shape)
    rows = object_metrics(blank, truth, objects, gt_frames=gt, n_boot=50)
    for r in rows:
        if r.metric.endswith("_miss_rate") and r.n:
            assert r.value == 1.0
        if r.metric.endswith("_error"):
            assert r.n == 0 and math.isnan(r.value)

    # Copy the first frame: the ball moves away from it, the measured share does not change.
    copy_frames = np.repeat(gt[:, :1], gt.shape[1], axis=1)
    rows = object_metrics(copy_frames, truth, objects, gt_frames=gt, horizons=[64], n_boot=50)
    exact = object_metrics(gt, truth, objects, gt_frames=gt, horizons=[64], n_boot=50)
    ball = by(rows, "ball_hit_rate")[64]
    assert ball.n == 0 or ball.value < 1.0
    assert by(rows, "ball_measured")[64].value == by(exact, "ball_measured")[64].value


@pytest.mark.slow
def test_the_autoencoders_readback_scores_its_reconstruction(store64: EpisodeStore) -> None:
    """``ae_<name>_*`` read the objects back from the reconstruction, not from the model's
    frames: an exact reconstruction hits every measured object, a blank one none, whatever
    the model drew."""
    from farsight.eval.run import _object_rows

    objects = scene_objects(store64)
    gt, truth = clips(store64, 2, 64)
    blank = np.broadcast_to(np.array(objects.background, np.uint8), gt.shape).copy()
    cfg = EvalConfig(n_boot=20)
    hs = (1, 8, 64)
    for recon, gen, expected in ((gt, blank, 1.0), (blank, gt, 0.0)):
        rows = _object_rows(objects, gt, gen, recon, truth, hs, cfg)
        for name in objects.names:
            kept = [r for r in by(rows, f"ae_{name}_hit_rate").values() if r.n]
            assert kept and all(r.value == expected for r in kept), name
            assert len([r for r in rows if r.metric == f"ae_{name}_window_psnr"]) == len(hs)


def test_window_psnr_is_the_psnr_of_the_window_mse() -> None:
    gt = np.zeros((2, 3, 64, 64, 3), np.uint8)
    pred = gt.copy()
    pred[:, :, 26:34, 16:24] = 10  # an 8 x 8 square of error 10 around (20, 30)
    xy = np.zeros((2, 3, 2, 2), np.float32)
    xy[..., 0, :] = (20.0, 30.0)
    xy[..., 1, :] = (50.0, 10.0)
    visible = np.ones((2, 3, 2), bool)
    visible[:, :, 1] = False
    truth = ObjectState(xy, np.ones_like(xy), visible)
    rows = window_psnr_rows(gt, pred, truth, ["a", "b"], prefix="ae_", whole_frame=True, n_boot=20)
    assert by(rows, "ae_a_window_psnr")[1].value == pytest.approx(10 * math.log10(255**2 / 100))
    assert by(rows, "ae_a_window_psnr")[1].n == 2
    whole = 100 * 64 / 4096
    assert by(rows, "ae_psnr")[2].value == pytest.approx(10 * math.log10(255**2 / whole))
    b = by(rows, "ae_b_window_psnr")[1]
    assert b.n == 0 and math.isnan(b.value)
    # The window slides to stay inside the frame.
    corner = window_mse(gt[0, 0], pred[0, 0], np.array([[1.0, 1.0]]), 8)
    assert corner[0] == 0.0
    with pytest.raises(ValueError, match="window"):
        window_mse(gt[0, 0], pred[0, 0], np.array([[1.0, 1.0]]), 65)


# --------------------------------------------------------------------------------------------
# farsight eval on an Atari store


@pytest.mark.slow
def test_eval_reports_each_object_beside_copy_and_autoencoder(
    tmp_path_factory, tmp_path, one_thread
):
    # 32 x 32: the tiny test model's frame size.
    store = record_store(tmp_path_factory, "ALE/Breakout-v5", 32, 240, 40, val=0.0, test=0.5)
    model = tiny_world_model(num_actions=4)
    cfg = EvalConfig(clips=2, horizon=8, n_boot=50, sampling=SamplingConfig(steps=2))
    result = evaluate(model, store, cfg, progress=False)
    keys = {(r.metric, r.horizon) for r in result.rows}
    for h in (1, 2, 4, 8):
        for name in ("paddle", "ball"):
            for metric in ("error", "hit_rate", "miss_rate", "measured", "window_psnr"):
                assert (f"{name}_{metric}", h) in keys
            assert (f"ae_{name}_window_psnr", h) in keys
            assert (f"ae_{name}_hit_rate", h) in keys  # the autoencoder's own readback
        assert ("ae_psnr", h) in keys
    assert result.meta["objects"] == ["paddle", "ball"]
    # The paddle is always in play and readable: measured sightings at every horizon.
    assert all(r.n > 0 for r in by(result.rows, "paddle_measured").values())

    # A store holding only the RAM (recorded before positions were) gives the same rows.
    ram_only = copy.copy(store)
    ram_only.arrays = {k: v for k, v in store.arrays.items() if k not in OBJECT_KEYS}
    again = evaluate(model, ram_only, cfg, progress=False)

    def object_rows(rows):
        prefixes = ("paddle_", "ball_", "ae_")
        return [row_to_json(r) for r in rows if r.metric.startswith(prefixes)]

    assert object_rows(result.rows) == object_rows(again.rows)

    text = write_eval(result, tmp_path / "eval", curves=False).read_text()
    section = text.split("## Objects", 1)[1]
    assert "paddle_hit_rate" in section and "ball_window_psnr" in section
    assert "(copy last frame)" in section and "(autoencoder)" in section
