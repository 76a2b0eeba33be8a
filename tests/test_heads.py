"""Multi-frame heads: target alignment, end-of-clip masks, pyramid, aux loss, every option."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from farsight.dynamics_config import HEADS_PRESETS, HeadsConfig, ObjectiveConfig, dynamics_tiny
from farsight.models.dynamics import DynamicsModel
from farsight.models.heads import HeadGeometry, head_geometry
from farsight.models.layers import pool_latents
from farsight.objectives import make_objective
from farsight.objectives.multiframe import (
    aux_consistency,
    coarser_levels,
    frame_mse,
    head_gradient_cosines,
    head_targets,
    masked_mean,
    pyramid_mse,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def ramp_latents(b: int, t: int, c: int = 2, h: int = 8, w: int = 8) -> torch.Tensor:
    """Frame f: value f everywhere plus a spatial pattern that pooling changes."""
    frames = torch.arange(t, dtype=torch.float32).view(1, t, 1, 1, 1)
    pattern = torch.randn(b, 1, c, h, w, generator=torch.Generator().manual_seed(0))
    return frames + 0.1 * pattern


def test_head_geometry_pools_tokens_then_patches():
    # 16x16 latent, patch 2: 8x8 tokens, pooled by r, each emitting a 2x2 patch.
    assert head_geometry((8, 8), (16, 16), 1) == HeadGeometry((1, 1), (8, 8), (2, 2))
    assert head_geometry((8, 8), (16, 16), 4) == HeadGeometry((4, 4), (2, 2), (2, 2))
    assert head_geometry((8, 8), (16, 16), 8) == HeadGeometry((8, 8), (1, 1), (2, 2))
    # 8x8 latent, patch 2: 4x4 tokens cannot be pooled by 8: one token for a 1x1 target.
    assert head_geometry((4, 4), (8, 8), 8) == HeadGeometry((4, 4), (1, 1), (1, 1))
    # 16x16 latent, patch 4: 4x4 tokens, r = 8 target 2x2: 2x2 tokens of 1x1.
    assert head_geometry((4, 4), (16, 16), 8) == HeadGeometry((2, 2), (2, 2), (1, 1))


def test_head_k_at_position_t_targets_frame_t_plus_k_minus_1_pooled():
    total, n_in = 12, 9
    clean = ramp_latents(2, total)
    targets = head_targets(clean, (1, 2, 4, 8), (1, 2, 4, 8), n_in)
    for tgt in targets:
        k, r = tgt.offset, tgt.resolution
        assert tgt.target.shape == (2, n_in, 2, 8 // r, 8 // r)
        for t in range(n_in):
            inside = t + k - 1 < total
            assert bool(tgt.mask[:, t].all()) == inside and bool(tgt.mask[:, t].any()) == inside
            if inside:
                torch.testing.assert_close(tgt.target[:, t], pool_latents(clean[:, t + k - 1], r))
                # The ramp's frame value survives pooling: the right frame, not a neighbour.
                assert abs(tgt.target[:, t].mean().item() - (t + k - 1)) < 0.1


def test_end_of_clip_positions_are_masked_out_of_the_loss():
    total = 10  # no extra frames: the last k - 1 positions of head k have no target
    clean = ramp_latents(1, total)
    for tgt in head_targets(clean, (2, 4, 8), (2, 4, 8), total):
        k = tgt.offset
        assert int(tgt.mask.sum()) == total - (k - 1)
        # Perfect where a target exists, garbage elsewhere: the masked loss is exactly 0.
        pred = tgt.target.clone()
        pred[:, total - (k - 1) :] = 1e6
        assert masked_mean(frame_mse(pred, tgt.target), tgt.mask).item() == 0.0
        pred[:, 0] += 1.0
        assert masked_mean(frame_mse(pred, tgt.target), tgt.mask).item() > 0.0


def test_invalid_frames_are_masked_too():
    clean = ramp_latents(2, 6)
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[1, 4:] = False  # second clip padded after frame 3
    (tgt,) = head_targets(clean, (2,), (2,), 6, valid)
    assert tgt.mask[0].tolist() == [True] * 5 + [False]
    assert tgt.mask[1].tolist() == [True, True, True, False, False, False]


def test_pyramid_covers_coarser_levels_only():
    assert coarser_levels(1, (1, 2, 4, 8)) == [2, 4, 8]
    assert coarser_levels(2, (1, 2, 4, 8)) == [2, 4]
    assert coarser_levels(8, (1, 2, 4, 8)) == []
    target = torch.randn(2, 3, 2, 8, 8)
    # An error that averages out under 2x2 pooling: invisible to every coarser level.
    checker = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(4, 4)
    assert pyramid_mse(target + checker, target, [2, 4]).abs().max() < 1e-10
    shifted = target + 0.5
    expected = torch.full((2, 3), 0.25)
    torch.testing.assert_close(pyramid_mse(shifted, target, [2, 4, 8]), expected)


def _aux_inputs():
    t, k, r = 8, 4, 2
    main_x0 = ramp_latents(2, t)  # head 1's estimate of frame s, made at position s
    positions = torch.arange(t)
    agree = pool_latents(main_x0[:, (positions + k - 1).clamp(max=t - 1)], r)
    main_mask = torch.ones(2, t, dtype=torch.bool)
    return t, k, r, main_x0, agree, main_mask, torch.ones(2, t)


def test_aux_loss_is_zero_when_heads_agree_and_positive_otherwise():
    t, k, r, main_x0, agree, main_mask, trust = _aux_inputs()
    loss = aux_consistency(agree, main_x0, k, r, main_mask, trust, "main")
    assert loss.item() == 0.0
    # Position t against frame t + k - 2 (off by one): the frames differ by 1.
    off_by_one = torch.cat([agree[:, :1], agree[:, :-1]], 1)
    assert aux_consistency(off_by_one, main_x0, k, r, main_mask, trust, "main").item() > 0.5
    # Positions whose frame t + k - 1 is past the input frames are not compared.
    tail = agree.clone()
    tail[:, t - k + 1 :] = 1e6
    assert aux_consistency(tail, main_x0, k, r, main_mask, trust, "main").item() == 0.0
    # Neither are positions head 1 was not trained on, nor ones it does not trust.
    broken = agree.clone()
    broken[:, 0] += 3.0  # compares with head 1 at position k - 1
    untrained = main_mask.clone()
    untrained[:, k - 1] = False
    assert aux_consistency(broken, main_x0, k, r, untrained, trust, "main").item() == 0.0
    distrust = trust.clone()
    distrust[:, k - 1] = 0.0
    assert aux_consistency(broken, main_x0, k, r, main_mask, distrust, "main").item() == 0.0
    assert aux_consistency(broken, main_x0, k, r, main_mask, trust, "main").item() > 0.0


@pytest.mark.parametrize(
    "stopgrad,far_moves,main_moves",
    [("main", True, False), ("far", False, True), ("none", True, True)],
)
def test_aux_stopgrad_side(stopgrad, far_moves, main_moves):
    t, k, r, main_x0, agree, main_mask, trust = _aux_inputs()
    far = (agree + 0.3).requires_grad_()
    main = main_x0.clone().requires_grad_()
    aux_consistency(far, main, k, r, main_mask, trust, stopgrad).backward()
    assert (far.grad is not None and far.grad.abs().sum() > 0) == far_moves
    assert (main.grad is not None and main.grad.abs().sum() > 0) == main_moves


HEAD_OPTIONS = {
    **{name: HEADS_PRESETS.get(name) for name in HEADS_PRESETS.names()},
    "early_branch_depths": HeadsConfig(branch_layer=1, depths=(2, 1, 0)),
    "multires_full_res": HeadsConfig(resolutions=(1, 1, 1, 1), multires=True),
    "aux_far_uniform": HeadsConfig(aux_weight=0.5, aux_stopgrad="far", aux_trust="uniform"),
    "aux_none_frame": HeadsConfig(aux_weight=0.5, aux_stopgrad="none", action_mode="frame"),
}


def _tiny(heads: HeadsConfig, seed: int = 0) -> DynamicsModel:
    torch.manual_seed(seed)
    return DynamicsModel(dataclasses.replace(dynamics_tiny(), heads=heads))


def _batch(model: DynamicsModel, t: int = 6, seed: int = 0) -> dict:
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    total = t + cfg.heads.max_offset - 1
    return {
        "latents": torch.randn(2, total, cfg.latent_channels, *cfg.latent_size, generator=g),
        "actions": torch.randint(0, cfg.num_actions, (2, total), generator=g),
    }


@pytest.mark.parametrize("option", sorted(HEAD_OPTIONS))
def test_each_head_option_trains_a_step(option):
    heads = HEAD_OPTIONS[option]
    model = _tiny(heads)
    batch = _batch(model)
    loss, logs = make_objective(ObjectiveConfig())(model, batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    loss.backward()
    expected = {"loss/main"} | {f"loss/head{k}" for k in heads.offsets[1:]}
    assert expected <= set(logs)
    assert ("loss/aux" in logs) == (heads.aux_weight > 0)
    # Every head's output layer gets a gradient (DiT init: only output layers, at step 0).
    assert model.final.linear.weight.grad.abs().sum() > 0
    if model.heads is not None:
        for head in model.heads.heads:
            assert head.final.linear.weight.grad.abs().sum() > 0


def test_gradient_cosines_between_heads_on_the_shared_trunk():
    model = _tiny(HeadsConfig(aux_weight=0.1, branch_layer=1))
    objective = make_objective(ObjectiveConfig())
    batch = _batch(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):  # leave DiT's zero init, where the trunk gets no gradient at all
        loss, _ = objective(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    opt.zero_grad()
    terms = objective.terms(model, batch, torch.Generator().manual_seed(1))
    cos = head_gradient_cosines(model, terms)
    names = ["main", "head2", "head4", "head8", "aux"]
    assert set(cos) == {f"grad_norm/{n}" for n in names} | {
        f"grad_cos/{a}~{b}" for i, a in enumerate(names) for b in names[i + 1 :]
    }
    for key, value in cos.items():
        assert torch.isfinite(value)
        if key.startswith("grad_cos"):
            assert -1.0 - 1e-5 <= value.item() <= 1.0 + 1e-5
        else:
            assert value.item() > 0
    # It must not have touched .grad, and the graph is still there for the real backward.
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.parameters())
    terms.total().backward()
    assert model.blocks[0].mlp.fc1.weight.grad.abs().sum() > 0
