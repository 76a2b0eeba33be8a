"""Diffusion maths and the denoising objectives: noise levels, determinism, overfitting."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from farsight import diffusion
from farsight.config import ConfigError
from farsight.dynamics_config import HeadsConfig, ObjectiveConfig, dynamics_tiny
from farsight.models.dynamics import DynamicsModel
from farsight.models.layers import pool_latents
from farsight.objectives import DYNAMICS_OBJECTIVES, make_objective
from farsight.objectives.diffusion_forcing import DiffusionForcing
from farsight.objectives.multiframe import (
    frame_mse,
    motion_map,
    weighted_frame_mse,
    worst_frame_mse,
)

KINDS = sorted(DYNAMICS_OBJECTIVES)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(heads: HeadsConfig | None = None, seed: int = 0, **sizes) -> DynamicsModel:
    torch.manual_seed(seed)
    cfg = dataclasses.replace(dynamics_tiny(), heads=heads or HeadsConfig(), **sizes)
    return DynamicsModel(cfg)


def make_batch(model: DynamicsModel, t: int = 6, seed: int = 0) -> dict:
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    total = t + cfg.heads.max_offset - 1
    return {
        "latents": torch.randn(2, total, cfg.latent_channels, *cfg.latent_size, generator=g),
        "actions": torch.randint(0, cfg.num_actions, (2, total), generator=g),
    }


# --- diffusion maths ---------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_noise_parametrisation_inverts_exactly(schedule):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 2, 5, 3, 3, 3, generator=g).double()
    tau = torch.rand(2, 5, generator=g).double()
    tau[0, 0], tau[0, 1] = 0.0, 1.0
    x = diffusion.add_noise(x0, eps, tau, schedule)
    v = diffusion.velocity(x0, eps, tau, schedule)
    torch.testing.assert_close(diffusion.x0_from_v(x, v, tau, schedule), x0)
    torch.testing.assert_close(diffusion.eps_from_v(x, v, tau, schedule), eps)
    torch.testing.assert_close(diffusion.predicted_x0(v, x, tau, "v", schedule), x0)
    inner = tau > 0.01
    v_back = diffusion.v_from_x0(x, x0, tau, schedule)
    torch.testing.assert_close(v_back[inner], v[inner])
    torch.testing.assert_close(x[0, 0], x0[0, 0])  # tau 0: clean
    torch.testing.assert_close(x[0, 1], eps[0, 1], atol=1e-12, rtol=0)  # tau 1: pure noise
    if schedule == "linear":
        torch.testing.assert_close(v, eps - x0)  # the rectified-flow velocity


def test_snr_weights():
    tau = torch.linspace(0, 1, 101)
    for schedule in ("linear", "cosine"):
        for prediction in ("v", "x0"):
            for weighting in ("min_snr", "clamped_snr"):
                w = diffusion.loss_weight(tau, prediction, schedule, weighting, 5.0)
                assert torch.isfinite(w).all() and (w >= 0).all()
        # clamped_snr keeps the pure-noise end at a plain x0 loss; min_snr drops it.
        assert diffusion.loss_weight(tau, "v", schedule, "clamped_snr")[-1] == pytest.approx(1)
        assert diffusion.loss_weight(tau, "v", schedule, "min_snr")[-1] == pytest.approx(0)
    # Cosine + v: Hang et al.'s min(SNR, gamma) / (SNR + 1).
    tau = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    snr = diffusion.log_snr(tau, "cosine", eps=0).exp()
    expected = torch.minimum(snr, torch.full_like(snr, 5.0)) / (snr + 1)
    torch.testing.assert_close(diffusion.loss_weight(tau, "v", "cosine", "min_snr", 5.0), expected)
    snr = diffusion.log_snr(tau, eps=0).exp()
    x0_weight = diffusion.loss_weight(tau, "x0", "linear", "min_snr", 5.0)
    torch.testing.assert_close(x0_weight, snr.clamp(max=5.0))
    x0_weight = diffusion.loss_weight(tau, "x0", "linear", "clamped_snr", 5.0, 1.0)
    torch.testing.assert_close(x0_weight, snr.clamp(1.0, 5.0))
    # v-loss weight w_v is the x0 weight times sigma^2 (linear schedule: sigma = tau).
    v_weight = diffusion.loss_weight(tau, "v", "linear", "clamped_snr", 5.0, 1.0)
    torch.testing.assert_close(v_weight, snr.clamp(1.0, 5.0) * tau**2)
    assert diffusion.loss_weight(tau, "v", "linear", "uniform").eq(1).all()


def test_logit_normal_tau_lies_inside_and_concentrates():
    tau = diffusion.sample_tau(
        (20_000,), "logit_normal", generator=torch.Generator().manual_seed(0)
    )
    assert tau.min() > 0 and tau.max() < 1
    assert ((tau > 0.25) & (tau < 0.75)).float().mean() > 0.6  # uniform would give 0.5


# --- noise levels per objective ------------------------------------------------------------


def _levels(kind: str, **cfg):
    objective = make_objective(ObjectiveConfig(kind=kind, **cfg))
    return objective.noise_levels(64, 8, torch.device("cpu"), torch.Generator().manual_seed(0))


def test_diffusion_forcing_draws_a_level_per_frame():
    lv = _levels("diffusion_forcing")
    assert lv.tau.shape == (64, 8) and lv.main_mask.all() and lv.context_level is None
    assert (lv.tau.std(dim=1) > 0.05).all()  # frames of one clip differ
    assert abs(lv.tau.mean().item() - 0.5) < 0.05


def test_full_sequence_draws_one_level_per_clip():
    lv = _levels("full_sequence")
    assert (lv.tau == lv.tau[:, :1]).all() and lv.main_mask.all()
    assert lv.tau[:, 0].std() > 0.1  # but clips differ


def test_next_frame_keeps_context_clean_ish_and_trains_the_last_frame():
    lv = _levels("next_frame", context_level=0.02)
    assert (lv.tau[:, :-1] == 0.02).all() and lv.tau[:, -1].std() > 0.1
    assert lv.main_mask[:, -1].all() and not lv.main_mask[:, :-1].any()


def test_context_noise_augmentation():
    lv = _levels("next_frame", context_level_max=0.3)
    ctx = lv.context_level
    assert (ctx == ctx[:, :1]).all() and (ctx <= 0.3).all() and ctx.std() > 0.01
    assert (lv.tau[:, :-1] == ctx[:, :-1]).all()
    lv = _levels("diffusion_forcing", context_level_max=0.3)
    assert (lv.tau >= lv.context_level).all() and (lv.tau == lv.context_level).any()


def test_context_noise_share_keeps_the_other_clips_at_the_context_level():
    lv = _levels("next_frame", context_level_max=0.3, context_noise_share=0.5)
    ctx = lv.context_level[:, 0]
    kept = ctx == 0.02
    assert 0.25 < kept.float().mean() < 0.75  # 64 clips, about half each way
    assert (ctx[~kept] <= 0.3).all() and ctx[~kept].std() > 0.01
    assert (lv.tau[:, :-1] == lv.context_level[:, :-1]).all()
    # A share of 1 draws exactly what the plain augmentation draws.
    same = _levels("next_frame", context_level_max=0.3, context_noise_share=1.0)
    plain = _levels("next_frame", context_level_max=0.3)
    assert torch.equal(same.context_level, plain.context_level)


@pytest.mark.parametrize("sampling", ["uniform", "logit_normal"])
def test_tau_min_bounds_the_trained_levels(sampling):
    lv = _levels("next_frame", tau_min=0.5, tau_sampling=sampling)
    last = lv.tau[:, -1]
    assert (last >= 0.5).all() and (last < 1).all() and last.std() > 0.05
    assert (lv.tau[:, :-1] == 0.02).all()  # the context's level is not a trained one


def test_bad_objective_configs_raise():
    with pytest.raises(ConfigError, match="objective.tau_min"):
        make_objective(ObjectiveConfig(kind="next_frame", tau_min=1.0))
    with pytest.raises(ConfigError, match="objective.tau_min"):
        make_objective(ObjectiveConfig(kind="diffusion_forcing", tau_min=0.5))
    with pytest.raises(ConfigError, match="objective.kind"):
        make_objective(ObjectiveConfig(kind="score_matching"))
    with pytest.raises(ConfigError, match="full_sequence"):
        make_objective(ObjectiveConfig(kind="full_sequence", context_level_max=0.1))
    with pytest.raises(ConfigError, match="prediction"):
        make_objective(ObjectiveConfig(prediction="eps"))
    with pytest.raises(ConfigError, match="next_frame"):
        DiffusionForcing(ObjectiveConfig(kind="next_frame"))
    with pytest.raises(ConfigError, match="objective.context_noise_share"):
        make_objective(ObjectiveConfig(context_level_max=0.5, context_noise_share=1.5))
    with pytest.raises(ConfigError, match="context_level_max > 0"):
        make_objective(ObjectiveConfig(context_noise_share=0.5))
    with pytest.raises(ConfigError, match="objective.motion_weight"):
        make_objective(ObjectiveConfig(motion_weight=-1.0))


# --- objectives run, are repeatable, and learn ----------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"prediction": "x0", "weighting": "uniform"},
        {"prediction": "x0", "weighting": "min_snr"},
        {"schedule": "cosine", "tau_sampling": "logit_normal"},
    ],
)
def test_each_objective_trains_a_step(kind, variant):
    model = tiny_model()
    loss, logs = make_objective(ObjectiveConfig(kind=kind, **variant))(model, make_batch(model))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert {"loss/total", "loss/main", "loss/head2", "loss/head4", "loss/head8"} <= set(logs)
    assert all(torch.isfinite(v) and not v.requires_grad for v in logs.values())
    assert model.final.linear.weight.grad.abs().sum() > 0


def test_context_noise_level_reaches_the_model():
    model = tiny_model(context_level_embed=True)
    batch = make_batch(model)
    objective = make_objective(ObjectiveConfig(kind="next_frame", context_level_max=0.5))
    loss, _ = objective(model, batch)
    loss.backward()
    assert model.context_level_embed.mlp[0].weight.grad is not None


def test_same_seed_same_loss():
    model = tiny_model(HeadsConfig(aux_weight=0.1, multires=True))
    batch = make_batch(model)
    objective = make_objective(ObjectiveConfig())

    def run(seed: int):
        return objective(model, batch, torch.Generator().manual_seed(seed))

    (a, logs_a), (b, logs_b), (c, _) = run(7), run(7), run(8)
    assert a.item() == b.item() and all(logs_a[k].item() == logs_b[k].item() for k in logs_a)
    assert a.item() != c.item()
    torch.manual_seed(3)  # without a generator: torch's global RNG
    d = objective(model, batch)[0]
    torch.manual_seed(3)
    assert objective(model, batch)[0].item() == d.item()


def test_clip_without_extra_frames_masks_far_targets():
    model = tiny_model()
    batch = make_batch(model, t=3)  # 3 input frames + 7 extra: 10 frames
    batch["input_frames"] = 10  # use all of them as inputs: far targets run off the end
    _, logs = make_objective(ObjectiveConfig())(model, batch)
    assert logs["mask/head2"].item() == pytest.approx(9 / 10)
    assert logs["mask/head8"].item() == pytest.approx(3 / 10)
    batch["input_frames"] = 11
    with pytest.raises(ValueError, match="input frames"):
        make_objective(ObjectiveConfig())(model, batch)


def ramp_batch(model: DynamicsModel, t: int) -> dict:
    """Frames on a ramp (+ a fixed pattern per clip): frame f is known from any other frame,
    so each head's right answer, and its neighbours' wrong ones, are known."""
    cfg = model.cfg
    total = t + cfg.heads.max_offset - 1
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(-1, 1, total).view(1, total, 1, 1, 1)
    pattern = 0.5 * torch.randn(2, 1, cfg.latent_channels, *cfg.latent_size, generator=g)
    return {
        "latents": ramp + pattern,
        "actions": torch.randint(0, cfg.num_actions, (2, total), generator=g),
    }


def test_tiny_model_overfits_one_batch_and_heads_learn_their_own_frame():
    model = tiny_model()
    t = 6
    batch = ramp_batch(model, t)
    objective = make_objective(ObjectiveConfig())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(120):
        # Same tau and noise every step: one fixed regression problem to memorise.
        loss, logs = objective(model, batch, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 20, losses[:: len(losses) // 6]
    for k in (2, 4, 8):
        assert logs[f"loss/head{k}"] < 0.02

    # End to end, far head k at position t has learnt frame t + k - 1, not a neighbour: the
    # objective hands each position its own target. (Outputs captured on the trained input.)
    captured = {}
    model.register_forward_hook(lambda m, args, out: captured.update(out=out))
    with torch.no_grad():
        objective(model, batch, torch.Generator().manual_seed(0))
    clean = batch["latents"]
    for (k, pred), r in zip(captured["out"].far.items(), (2, 4, 8), strict=True):
        errors = []
        for shift in (-1, 0, 1):
            frames = (torch.arange(t) + k - 1 + shift).clamp(0, clean.shape[1] - 1)
            errors.append((pred - pool_latents(clean[:, frames], r)).pow(2).mean().item())
        assert errors[1] < min(errors[0], errors[2]) / 4, (k, errors)


def test_residual_output_needs_x0_prediction():
    model = tiny_model()
    model.cfg.residual_output = True
    with pytest.raises(ConfigError, match="objective.prediction"):
        make_objective(ObjectiveConfig(kind="next_frame"))(model, make_batch(model))
    loss, _ = make_objective(ObjectiveConfig(kind="next_frame", prediction="x0"))(
        model, make_batch(model)
    )
    assert torch.isfinite(loss)


@pytest.mark.parametrize("kind", ["next_frame", "teacher_forcing", "diffusion_forcing"])
def test_clean_residual_reference_is_the_clean_previous_frame(kind):
    """With ``residual_reference=clean`` an untrained model (zero output layer) predicts each
    frame as the clean frame before it, whatever noise its inputs carry; with ``input`` as
    the noisy one the model was shown."""
    batch = None
    for reference in ("clean", "input"):
        model = tiny_model(residual_output=True, residual_reference=reference)
        batch = batch or make_batch(model)
        outputs = []
        model.register_forward_hook(lambda m, args, out, seen=outputs: seen.append(out))
        objective = make_objective(ObjectiveConfig(kind=kind, prediction="x0"))
        objective(model, batch, torch.Generator().manual_seed(0))
        main = outputs[0].main
        shifted = batch["latents"][:, : main.shape[1] - 1]
        if reference == "clean":
            torch.testing.assert_close(main[:, 1:], shifted)
            assert (main[:, 0] == 0).all()
        else:
            assert (main[:, 1:] - shifted).abs().mean() > 1e-3


def test_action_dropout_replaces_a_share_of_the_actions_by_the_null_action():
    seen = {}
    model = tiny_model(null_action=True)
    model.register_forward_pre_hook(lambda m, args: seen.update(actions=args[2]))
    batch = make_batch(model)
    batch["actions"] = torch.randint(0, model.cfg.num_actions, (64, batch["actions"].shape[1]))
    batch["latents"] = batch["latents"][:1].expand(64, *batch["latents"].shape[1:])
    objective = make_objective(ObjectiveConfig(kind="next_frame", action_dropout=0.25))
    objective(model, batch, torch.Generator().manual_seed(0))
    dropped = seen["actions"] == model.null_action
    assert 0.15 < dropped.float().mean() < 0.35
    torch.testing.assert_close(seen["actions"][~dropped], batch["actions"][~dropped])
    with pytest.raises(ConfigError, match="model.null_action"):
        objective(tiny_model(), make_batch(tiny_model()))
    with pytest.raises(ConfigError, match="action_dropout"):
        ObjectiveConfig(kind="maskgit", fsq_levels=(5, 5), action_dropout=0.1).validate()


def test_motion_weight_weighs_the_positions_that_changed():
    clean = torch.zeros(1, 3, 2, 4, 4)
    clean[:, 2, :, 1, 1] = 1.0  # one position changes between frames 1 and 2
    change = motion_map(clean)
    assert change.shape == (1, 3, 1, 4, 4)
    assert change[:, :2].abs().sum() == 0  # the first frame has no predecessor; frame 1 is still
    assert change[0, 2, 0, 1, 1] > 0 and change[0, 2, 0].sum() == change[0, 2, 0, 1, 1]
    pred, target = torch.randn(1, 3, 2, 4, 4), torch.randn(1, 3, 2, 4, 4)
    uniform = weighted_frame_mse(pred, target, torch.full((1, 3, 1, 4, 4), 3.0))
    torch.testing.assert_close(uniform, frame_mse(pred, target))
    # An error only at the moving position counts more with the weight than without.
    err = torch.zeros_like(target)
    err[:, 2, :, 1, 1] = 1.0
    plain = weighted_frame_mse(err, torch.zeros_like(err), torch.ones(1, 3, 1, 4, 4))
    weighted = weighted_frame_mse(err, torch.zeros_like(err), 1 + 5.0 * change)
    assert weighted[0, 2] > 5 * plain[0, 2]


def test_motion_weight_changes_the_loss_and_trains():
    model = tiny_model()
    batch = make_batch(model)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain, _ = make_objective(ObjectiveConfig(kind="next_frame"))(model, batch, g())
    objective = make_objective(ObjectiveConfig(kind="next_frame", motion_weight=10.0))
    weighted, _ = objective(model, batch, g())
    assert torch.isfinite(weighted) and weighted.item() != plain.item()
    weighted.backward()
    assert model.final.linear.weight.grad.abs().sum() > 0


def test_worst_term_averages_each_frames_worst_positions():
    err = torch.zeros(1, 2, 2, 4, 4)  # 16 positions a frame, 2 channels
    err[0, 0, 0, 1, 1] = 2.0  # frame 0: one position at (4 + 0) / 2 = 2
    err[0, 0, :, 3, 3] = 1.0  # and one at 1
    err[0, 1] = 0.5  # frame 1: 0.25 everywhere
    target = torch.zeros_like(err)
    torch.testing.assert_close(worst_frame_mse(err, target, 2 / 16), torch.tensor([[1.5, 0.25]]))
    torch.testing.assert_close(worst_frame_mse(err, target, 1e-6), torch.tensor([[2.0, 0.25]]))
    torch.testing.assert_close(worst_frame_mse(err, target, 1.0), frame_mse(err, target))
    model = tiny_model()
    batch = make_batch(model)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain, logs = make_objective(ObjectiveConfig(kind="next_frame"))(model, batch, g())
    # worst_share=1: the worst term is the frame's own mean, so head 1's loss doubles exactly.
    cfg = ObjectiveConfig(kind="next_frame", worst=1.0, worst_share=1.0)
    _, doubled = make_objective(cfg)(model, batch, g())
    torch.testing.assert_close(doubled["loss/main"], 2 * logs["loss/main"])
    worst, _ = make_objective(ObjectiveConfig(kind="next_frame", worst=1.0))(model, batch, g())
    assert worst > plain
    worst.backward()
    assert model.final.linear.weight.grad.abs().sum() > 0
    for bad in ({"worst": -1.0}, {"worst_share": 0.0}, {"worst_share": 2.0}):
        with pytest.raises(ConfigError, match=f"objective.{next(iter(bad))}="):
            make_objective(ObjectiveConfig(**bad))
