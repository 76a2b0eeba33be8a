"""Evaluation instruments on inputs with known answers: frame metrics, pooling, Delta-PSNR,
arena position readback, and the coverage of the confidence intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from farsight.envs.arena import OBJECT_COLORS, ArenaEnv
from farsight.envs.base import ArenaConfig
from farsight.eval import stats
from farsight.eval.metrics import delta_psnr, horizons, latent_mse_rows, rollout_metrics
from farsight.eval.positions import position_metrics, read_entities
from farsight.eval.stats import bootstrap_ci, mean_ci, paired_diff_ci
from farsight.metrics import downsample, psnr, psnr_from_mse, ssim, ssim_window, to_frames


def smooth_frames(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """uint8 frames in [40, 215] built from 8x8 blocks: room for +-40 offsets without clipping."""
    *lead, h, w, c = shape
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 216, (*lead, h // 8, w // 8, c))
    return coarse.repeat(8, axis=-3).repeat(8, axis=-2).astype(np.uint8)


def by(rows, metric, scale=1):
    return {r.horizon: r for r in rows if r.metric == metric and r.scale == scale}


# --------------------------------------------------------------------------------------------
# Frame metrics


def test_identical_frames_give_infinite_psnr_and_unit_ssim():
    gt = smooth_frames((3, 4, 64, 64, 3))
    assert np.all(np.isinf(psnr(gt, gt)))
    assert np.allclose(ssim(gt, gt), 1.0)

    rows = rollout_metrics(gt, gt.copy())
    for scale in (1, 4, 8):
        assert all(math.isinf(r.value) and r.value > 0 for r in by(rows, "psnr", scale).values())
        assert all(r.value == 0.0 for r in by(rows, "mse", scale).values())
        assert all(r.value == pytest.approx(1.0) for r in by(rows, "ssim", scale).values())

    # One clip off by a constant 4 at horizon 1: the horizon's PSNR is that of the clip-averaged
    # MSE (16 / 3), finite, not the mean of per-clip PSNRs (which would be inf).
    gen = gt.copy()
    gen[1, 0] += 4
    row = by(rollout_metrics(gt, gen), "psnr")[1]
    assert row.value == pytest.approx(10 * math.log10(255**2 / (16 / 3)))
    assert math.isinf(by(rollout_metrics(gt, gen), "psnr")[2].value)


def test_constant_offset_gives_the_analytic_psnr_at_every_scale():
    gt = smooth_frames((2, 4, 64, 64, 3))
    gen = gt + np.uint8(10)
    expected = 10 * math.log10(255**2 / 100)  # 28.13 dB
    assert np.allclose(psnr(gt, gen), expected)
    rows = rollout_metrics(gt, gen, horizons=[1, 3])
    for scale in (1, 4, 8):  # a constant survives pooling unchanged
        for h in (1, 3):
            assert by(rows, "psnr", scale)[h].value == pytest.approx(expected)
            assert by(rows, "mse", scale)[h].value == pytest.approx(100.0)


def test_checkerboard_noise_hurts_full_resolution_but_vanishes_when_pooled():
    """The post's argument: high-frequency error dominates a full-resolution metric although it
    says nothing about where things are; area pooling removes it. An error of the same energy
    at low frequency survives pooling."""
    gt = smooth_frames((2, 2, 64, 64, 3), seed=1)
    yy, xx = np.mgrid[:64, :64]
    checker = np.where((yy + xx) % 2 == 0, 20, -20)[..., None]
    fine = (gt.astype(int) + checker).astype(np.uint8)
    coarse_pattern = np.where((yy // 16 + xx // 16) % 2 == 0, 20, -20)[..., None]
    coarse = (gt.astype(int) + coarse_pattern).astype(np.uint8)

    full = 10 * math.log10(255**2 / 400)  # 22.11 dB for both perturbations
    rows_fine = rollout_metrics(gt, fine)
    rows_coarse = rollout_metrics(gt, coarse)
    assert by(rows_fine, "psnr", 1)[1].value == pytest.approx(full)
    assert by(rows_coarse, "psnr", 1)[1].value == pytest.approx(full)
    for scale in (4, 8):
        assert math.isinf(by(rows_fine, "psnr", scale)[1].value)
        assert by(rows_fine, "ssim", scale)[1].value == pytest.approx(1.0)
        assert by(rows_coarse, "psnr", scale)[1].value == pytest.approx(full)
    # Strided subsampling would keep the checkerboard (every sample lands on a +20 pixel):
    # pooling must average, not pick.
    assert np.abs(downsample(fine, 4) - downsample(gt, 4)).max() == 0.0
    assert np.abs(fine[..., ::4, ::4, :].astype(int) - gt[..., ::4, ::4, :]).max() == 20


def test_downsample_is_an_area_average_and_checks_divisibility():
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1).repeat(3, -1)
    pooled = downsample(x, 2)
    assert pooled.shape == (1, 2, 2, 3)
    assert pooled[0, :, :, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]
    with pytest.raises(ValueError, match="not divisible"):
        downsample(np.zeros((6, 6, 3)), 4)


def test_ssim_windows_shrink_for_small_images():
    assert ssim_window(64, 64) == 7
    assert ssim_window(8, 8) == 7  # 1/8 of 64 px still takes the default window
    assert ssim_window(6, 6) == 5
    assert ssim_window(4, 4) == 3
    assert ssim_window(2, 2) is None
    a = smooth_frames((16, 16, 3))[:4, :4]
    b = (a.astype(int) + 30).astype(np.uint8)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, b) < 1.0
    with pytest.raises(ValueError, match="too small"):
        ssim(a[:2, :2], a[:2, :2])
    with pytest.warns(UserWarning, match="no SSIM at scale 8"):
        rows = rollout_metrics(np.zeros((1, 1, 16, 16, 3), np.uint8), np.ones((1, 1, 16, 16, 3)))
    assert {r.metric for r in rows if r.scale == 8} == {"mse", "psnr"}


def test_horizons():
    assert horizons(64) == (1, 2, 4, 8, 16, 32, 64)
    assert horizons(50) == (1, 2, 4, 8, 16, 32)
    assert horizons(1) == (1,)
    assert horizons(10, extra=(3, 10, 4)) == (1, 2, 3, 4, 8, 10)
    with pytest.raises(ValueError, match="horizon 12"):
        horizons(10, extra=(12,))
    with pytest.raises(ValueError):
        horizons(0)


def test_rows_are_indexed_by_horizon_and_complete():
    gt = smooth_frames((2, 8, 32, 32, 3))
    gen = gt.copy()
    gen[:, 3] += 5  # only the 4th generated frame (horizon 4) differs
    rows = rollout_metrics(gt, gen, scales=(1, 4))
    assert len(rows) == 4 * 2 * 3  # horizons 1, 2, 4, 8 x scales x {mse, psnr, ssim}
    p = by(rows, "psnr")
    assert [h for h, r in p.items() if math.isfinite(r.value)] == [4]
    assert all(r.n == 2 for r in rows)
    with pytest.raises(ValueError, match="outside"):
        rollout_metrics(gt, gen, horizons=[9])
    with pytest.raises(ValueError, match="does not match"):
        rollout_metrics(gt, gen[:, :4])


def test_latent_mse():
    z = np.zeros((3, 4, 8, 2, 2))
    zhat = z.copy()
    zhat[:, 1] = 2.0  # horizon 2: every element off by 2
    zhat[0, 3] = 1.0  # horizon 4: one clip of three off by 1
    rows = {r.horizon: r for r in latent_mse_rows(z, zhat, [1, 2, 4])}
    assert rows[1].value == 0.0
    assert rows[2].value == pytest.approx(4.0)
    assert rows[4].value == pytest.approx(1 / 3)
    gt = smooth_frames((3, 4, 16, 16, 3))
    out = rollout_metrics(gt, gt, gt_latents=z, gen_latents=zhat, scales=(1,))
    assert {r.horizon: r.value for r in out if r.metric == "latent_mse"}[2] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="both"):
        rollout_metrics(gt, gt, gt_latents=z)


def test_frame_inputs_are_validated_and_tensors_accepted():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="gen values span"):
        rollout_metrics(np.zeros((1, 1, 8, 8, 3)), -np.ones((1, 1, 8, 8, 3)))
    with pytest.raises(ValueError, match="channel-last"):
        to_frames(np.zeros((1, 3, 8, 8)), "gen")
    gt = smooth_frames((1, 2, 16, 16, 3))
    gen = torch.from_numpy(gt + np.uint8(5)).float()
    rows = rollout_metrics(torch.from_numpy(gt), gen, scales=(1, 4))
    assert by(rows, "psnr")[1].value == pytest.approx(10 * math.log10(255**2 / 25))


# --------------------------------------------------------------------------------------------
# Delta-PSNR with constructed models


def arena_rollouts(n: int, t: int, actions: np.ndarray, noise_seed: int) -> np.ndarray:
    """A 'model' that simulates the arena exactly and adds pixel noise: it uses its actions."""
    env = ArenaEnv(ArenaConfig(), size=32)
    rng = np.random.default_rng(noise_seed)
    out = np.empty((n, t, 32, 32, 3), np.uint8)
    for i in range(n):
        env.reset(seed=i)
        for j in range(t):
            frame = env.step(int(actions[i, j]))[0].astype(int)
            out[i, j] = np.clip(frame + rng.normal(0, 6, frame.shape), 0, 255)
    return out


def test_delta_psnr_is_zero_for_a_model_that_ignores_actions():
    rng = np.random.default_rng(0)
    n, t = 6, 8
    true_actions = rng.integers(9, size=(n, t))
    random_actions = rng.integers(9, size=(n, t))
    gt = arena_rollouts(n, t, true_actions, noise_seed=1)

    def blind_model(actions: np.ndarray) -> np.ndarray:
        # Repeats the first true frame whatever the actions: its output cannot depend on them.
        del actions
        return np.repeat(gt[:, :1], t, axis=1)

    rows = delta_psnr(gt, blind_model(true_actions), blind_model(random_actions), scales=(1, 4))
    assert len(rows) == len(horizons(t)) * 2
    for r in rows:  # horizon 1 is exact for both generations: 0 by convention, not inf - inf
        assert r.value == 0.0 and r.ci_low == 0.0 and r.ci_high == 0.0

    # A stochastic blind model (fresh noise per call): ~0, and the interval contains 0.
    noisy = [
        np.clip(blind_model(a) + np.random.default_rng(s).normal(0, 8, gt.shape), 0, 255)
        for s, a in ((2, true_actions), (3, random_actions))
    ]
    for r in delta_psnr(gt, *noisy, horizons=[4]):
        assert abs(r.value) < 0.2 and r.ci_low <= 0.0 <= r.ci_high


def test_delta_psnr_is_positive_for_a_model_that_uses_actions():
    rng = np.random.default_rng(0)
    n, t = 6, 8
    true_actions = rng.integers(9, size=(n, t))
    random_actions = rng.integers(9, size=(n, t))
    gt = arena_rollouts(n, t, true_actions, noise_seed=1)
    gen_true = arena_rollouts(n, t, true_actions, noise_seed=2)
    gen_random = arena_rollouts(n, t, random_actions, noise_seed=3)
    rows = {r.horizon: r for r in delta_psnr(gt, gen_true, gen_random)}
    assert rows[4].value > 2.0 and rows[4].ci_low > 0.0
    # Random actions drift further from the truth with time: the gap grows with horizon.
    assert rows[8].value > rows[1].value


# --------------------------------------------------------------------------------------------
# Position readback


def disc_frame(view_xy: np.ndarray, colors: np.ndarray, size: int = 64) -> np.ndarray:
    """Grey frame with a radius-3.5 disc of each colour at integer-centred view positions."""
    frame = np.full((size, size, 3), 110, np.uint8)
    yy, xx = np.mgrid[:size, :size] + 0.5
    for (x, y), c in zip(view_xy, colors, strict=True):
        frame[(xx - x) ** 2 + (yy - y) ** 2 <= 3.5**2] = c
    return frame


def scene(view_objects: np.ndarray, camera=(30.0, 50.0), player_view=(32.0, 32.0)):
    """One clip, one step: state arrays (N=1, T=1, ...) in world px for given view positions."""
    cam = np.asarray(camera)
    player = (np.asarray(player_view) + cam)[None, None]
    objects = (np.asarray(view_objects, dtype=np.float64) + cam)[None, None]
    return player, cam[None, None], objects


def test_a_known_shift_gives_a_known_position_error():
    view_objects = np.array([[12.0, 14.0], [40.0, 20.0], [25.0, 45.0]])
    colors = OBJECT_COLORS[:3]
    player, camera, objects = scene(view_objects)
    palette = np.concatenate([[[255, 255, 255]], colors])
    everything = np.concatenate([[[32.0, 32.0]], view_objects])
    gt = disc_frame(everything, palette)
    shifted = disc_frame(everything + [3.0, 4.0], palette)  # a 3-4-5 triangle

    rows = {r.metric: r for r in position_metrics(gt[None, None], player, camera, objects)}
    assert rows["object_error"].value == pytest.approx(0.0, abs=1e-6)
    rows = {r.metric: r for r in position_metrics(shifted[None, None], player, camera, objects)}
    assert rows["object_error"].value == pytest.approx(5.0, abs=1e-6)
    assert rows["player_error"].value == pytest.approx(5.0, abs=1e-6)
    assert rows["object_miss_rate"].value == 0.0 and rows["object_error"].n == 3
    assert rows["object_hit_rate"].value == 0.0  # 5 px is beyond the 2 px hit radius


def test_missing_objects_count_as_misses_and_out_of_view_ones_are_excluded():
    # Objects 0-2 in view, 3 clipped by the left edge, 4 far outside the view.
    view_objects = np.array([[12.0, 14.0], [40.0, 20.0], [25.0, 45.0], [1.0, 30.0], [90.0, 30.0]])
    colors = OBJECT_COLORS[:5]
    player, camera, objects = scene(view_objects)
    palette = np.concatenate([[[255, 255, 255]], colors])
    everything = np.concatenate([[[32.0, 32.0]], view_objects])

    gen = disc_frame(everything[[0, 1, 2, 4]], palette[[0, 1, 2, 4]])  # drops object 1 (green)
    rb = read_entities(gen[None, None], player, camera, objects)
    assert rb.visible[0, 0].tolist() == [True, True, True, True, False, False]
    assert rb.out_of_view[0, 0].tolist() == [False] * 5 + [True]
    rows = {r.metric: r for r in position_metrics(gen[None, None], player, camera, objects)}
    assert rows["object_miss_rate"].value == pytest.approx(1 / 3)
    assert rows["object_miss_rate"].n == 3  # the clipped and the far object are not counted
    assert rows["object_error"].value == pytest.approx(0.0, abs=1e-6)
    assert rows["object_error"].n == 2
    assert rows["object_hit_rate"].value == pytest.approx(2 / 3)
    assert rows["object_spurious_rate"].value == 0.0

    # The generation draws the far-away object (index 4) inside the view: spurious.
    hallucinating = disc_frame(
        np.concatenate([everything[:4], [[50.0, 50.0]]]), palette[[0, 1, 2, 3, 5]]
    )
    rows = {
        r.metric: r for r in position_metrics(hallucinating[None, None], player, camera, objects)
    }
    assert rows["object_spurious_rate"].value == 1.0 and rows["object_spurious_rate"].n == 1

    # An empty generation: every visible entity missed, the error undefined (NaN), not 0.
    blank = np.full((1, 1, 64, 64, 3), 110, np.uint8)
    rows = {r.metric: r for r in position_metrics(blank, player, camera, objects)}
    assert rows["object_miss_rate"].value == 1.0 and rows["player_miss_rate"].value == 1.0
    assert math.isnan(rows["object_error"].value) and rows["object_error"].n == 0


def arena_clips(n: int, t: int, size: int = 64):
    env = ArenaEnv(ArenaConfig(), size=size)
    rng = np.random.default_rng(0)
    frames, player, camera, objects = [], [], [], []
    for i in range(n):
        env.reset(seed=i)
        steps = [env.step(int(a)) for a in rng.integers(9, size=t)]
        frames.append([s[0] for s in steps])
        player.append([s[4]["state"]["player"] for s in steps])
        camera.append([s[4]["state"]["camera"] for s in steps])
        objects.append([s[4]["state"]["objects"] for s in steps])
    return tuple(np.asarray(x) for x in (frames, player, camera, objects))


def test_arena_ground_truth_reads_back_and_a_shifted_rollout_reads_its_shift():
    frames, player, camera, objects = arena_clips(n=6, t=8)
    rows = position_metrics(frames, player, camera, objects, gt_frames=frames)
    for r in rows:
        if r.metric.endswith("_error"):
            assert r.value < 0.5  # the instrument's own floor (sub-pixel centroids)
        if r.metric.endswith("_miss_rate"):
            assert r.value == 0.0
    assert sum(r.n for r in rows if r.metric == "object_miss_rate") > 10  # objects were seen

    # Shift every generated frame 2 px right. A wide margin keeps wrapped pixels away.
    shifted = np.roll(frames, 2, axis=-2)
    rows = position_metrics(shifted, player, camera, objects, gt_frames=frames, margin=8)
    errs = {r.metric: r.value for r in rows if r.horizon == 4}
    assert errs["player_error"] == pytest.approx(2.0, abs=0.4)
    assert errs["object_error"] == pytest.approx(2.0, abs=0.4)


def test_position_inputs_are_validated():
    frames, player, camera, objects = arena_clips(n=1, t=2)
    with pytest.raises(ValueError, match="camera"):
        position_metrics(frames, player, camera[:, :1], objects)
    with pytest.raises(ValueError, match="objects must be"):
        position_metrics(frames, player, camera, objects[..., 0])


# --------------------------------------------------------------------------------------------
# Confidence intervals


def test_t_quantiles_match_scipy_and_the_exact_fallback():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 7, 10, 29, 120):
        for p in (0.025, 0.6, 0.975, 0.999):
            want = scipy_stats.t.ppf(p, df)
            assert stats.t_quantile_exact(p, df) == pytest.approx(want, rel=1e-9)
            assert stats.t_cdf_exact(want, df) == pytest.approx(p, rel=1e-9)


def coverage(n: int, trials: int, quantile) -> float:
    rng = np.random.default_rng(123)
    x = rng.normal(3.0, 2.0, (trials, n))
    half = quantile * x.std(axis=1, ddof=1) / math.sqrt(n)
    return float(np.mean(np.abs(x.mean(axis=1) - 3.0) <= half))


def test_t_interval_covers_the_true_mean_at_the_nominal_rate():
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(1000):
        ci = mean_ci(rng.normal(3.0, 2.0, 3))  # 3 seeds: the usual ablation
        hits += ci.low <= 3.0 <= ci.high
    assert 0.92 <= hits / 1000 <= 0.98
    # The same check fails for a normal-quantile interval at n = 3 (it covers ~0.80): the
    # check can tell a right interval from a wrong one.
    assert coverage(3, 1000, stats.t_quantile(0.975, 2)) >= 0.92
    assert coverage(3, 1000, 1.96) < 0.9


def test_mean_ci_edge_cases():
    ci = mean_ci([1.0, 2.0, 3.0, math.nan])
    assert ci.n == 3 and ci.estimate == 2.0
    assert ci.high - ci.estimate == pytest.approx(stats.t_quantile(0.975, 2) / math.sqrt(3))
    one = mean_ci([5.0])
    assert one.estimate == 5.0 and math.isnan(one.low) and math.isnan(one.high)
    assert mean_ci([]).n == 0


def test_bootstrap_interval_covers_the_true_mean():
    rng = np.random.default_rng(11)
    hits = 0
    trials = 400
    for k in range(trials):
        ci = bootstrap_ci(rng.normal(1.0, 1.0, 40), n_boot=500, seed=k)
        hits += ci.low <= 1.0 <= ci.high
    assert 0.90 <= hits / trials <= 0.985
    # A statistic over paired columns: the ratio of sums.
    pairs = np.stack([np.full(10, 2.0), np.ones(10)], -1)
    ci = bootstrap_ci(pairs, lambda x: x[..., 0].sum(1) / x[..., 1].sum(1), n_boot=100)
    assert ci.estimate == 2.0 and ci.low == 2.0 and ci.high == 2.0


def test_paired_difference_removes_shared_seed_variation():
    rng = np.random.default_rng(5)
    seed_effect = rng.normal(0.0, 3.0, 5)  # some seeds are much better for every variant
    a = 20.0 + seed_effect + rng.normal(0.0, 0.1, 5)
    b = 19.5 + seed_effect + rng.normal(0.0, 0.1, 5)
    paired = paired_diff_ci(a, b)
    assert paired.low > 0.0  # a real 0.5 dB improvement, detected with 5 seeds
    # Comparing the two unpaired intervals would see nothing: they overlap widely.
    ca, cb = mean_ci(a), mean_ci(b)
    assert ca.low < cb.high
    with pytest.raises(ValueError, match="a has 5 values but b has 4"):
        paired_diff_ci(a, b[:4])


def test_psnr_from_mse():
    assert psnr_from_mse(255.0**2) == pytest.approx(0.0)
    assert math.isinf(psnr_from_mse(0.0))
