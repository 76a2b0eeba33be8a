"""The dynamics backbone: shapes, causality of every head, sliding window, KV cache, configs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from farsight.config import ConfigError, apply_overrides
from farsight.dynamics_config import (
    DYNAMICS_SIZES,
    HEADS_PRESETS,
    DynamicsConfig,
    HeadsConfig,
    dynamics_quickstart,
    dynamics_tiny,
)
from farsight.models.dynamics import DynamicsModel, actions_into_frames

B, T, EXTRA = 2, 7, 7


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(seed: int = 0, heads: HeadsConfig | None = None, **sizes) -> DynamicsModel:
    """A tiny model with every parameter perturbed: at DiT's init the adaLN-Zero gates and the
    output layers are zero, so every output is 0 and no dependence could be seen."""
    cfg = dynamics_tiny()
    cfg = dataclasses.replace(cfg, heads=heads or HeadsConfig(), **sizes)
    torch.manual_seed(seed)
    model = DynamicsModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def make_inputs(model: DynamicsModel, t: int = T, extra: int = EXTRA, seed: int = 1):
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    clean = torch.randn(B, t + extra, cfg.latent_channels, *cfg.latent_size, generator=g)
    x = torch.randn(B, t, cfg.latent_channels, *cfg.latent_size, generator=g)
    tau = torch.rand(B, t, generator=g)
    actions = torch.randint(0, cfg.num_actions, (B, t + extra), generator=g)
    return x, tau, actions, clean


def test_output_shapes_follow_the_cascade():
    model = make_model()
    x, tau, actions, clean = make_inputs(model)
    out = model(x, tau, actions)
    assert out.main.shape == x.shape
    assert {k: tuple(v.shape) for k, v in out.far.items()} == {
        2: (B, T, 4, 4, 4),
        4: (B, T, 4, 2, 2),
        8: (B, T, 4, 1, 1),
    }
    full_res = make_model(heads=HEADS_PRESETS.get("heads_full_res"))
    assert all(v.shape == x.shape for v in full_res(x, tau, actions).far.values())
    assert make_model(heads=HEADS_PRESETS.get("heads_next_frame"))(x, tau, actions).far == {}


def test_action_shift_puts_start_token_first():
    actions = torch.tensor([[3, 1, 4, 1]])
    assert actions_into_frames(actions, 9).tolist() == [[9, 3, 1, 4]]


def _changed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, T, ...) -> (T,) bool: did position t change anywhere in the batch."""
    return ((a - b).abs().flatten(2).amax(-1) > 1e-6).any(0)


def _reached_by(model: DynamicsModel, frame: int) -> list[bool]:
    """Which of the trunk's outputs change when input frame ``frame`` does."""
    x, tau, actions, _ = make_inputs(model)
    ain = actions_into_frames(actions[:, :T], model.start_action)
    x2 = x.clone()
    x2[:, frame] += 1.0
    with torch.no_grad():
        return _changed(model.trunk(x2, tau, ain).main, model.trunk(x, tau, ain).main).tolist()


INPUT_VARIANTS = [
    {},
    {"prev_frame_input": True, "spatial_rope": True},
    {"prev_frame_input": True, "prev_frame_kernel": 3, "action_input": True},
    {"prev_frame_input": True, "prev_frame_per_action": True, "action_input": True},
    {"prev_frame_input": True, "prev_frame_count": 2, "prev_frame_kernel": 3},
    {"prev_frame_input": True, "residual_output": True, "shift_reference": 1},
    {"residual_output": True, "shift_reference": 1, "shift_learned": True},
    {"residual_output": True, "shift_reference": 1, "shift_hard": True},
]
INPUT_IDS = [
    "plain",
    "prev+rope",
    "prev3+action",
    "prev-per-action",
    "two-prev",
    "shifted-copy",
    "learned-shifts",
    "hard-shift",
]


@pytest.mark.parametrize("action_mode", ["sum", "frame"])
@pytest.mark.parametrize("branch_layer", [-1, 1])
@pytest.mark.parametrize("inputs", INPUT_VARIANTS, ids=INPUT_IDS)
def test_no_position_sees_later_frames(action_mode, branch_layer, inputs):
    heads = HeadsConfig(action_mode=action_mode, branch_layer=branch_layer, depths=(1, 2, 0))
    model = make_model(heads=heads, **inputs)
    x, tau, actions, clean = make_inputs(model)
    with torch.no_grad():
        base = model(x, tau, actions, clean=clean)
        for cut in (0, 3, T - 2):
            # Frames > cut: their noisy input, noise level, and the actions leading into them.
            x2, tau2, actions2 = x.clone(), tau.clone(), actions.clone()
            x2[:, cut + 1 :] += torch.randn_like(x2[:, cut + 1 :])
            tau2[:, cut + 1 :] = torch.rand_like(tau2[:, cut + 1 :])
            actions2[:, cut:] = (actions2[:, cut:] + 1) % model.cfg.num_actions
            main = model(x2, tau2, actions2[:, :T], clean=clean, heads=False).main
            changed = _changed(main, base.main)
            assert not changed[: cut + 1].any(), f"head 1 at <= {cut} saw a later frame"
            assert changed[cut + 1 :].all(), "perturbation had no effect: test is vacuous"

            far = model(x2, tau2, actions, clean=clean).far
            for k, pred in far.items():
                changed = _changed(pred, base.far[k])
                assert not changed[: cut + 1].any(), f"head {k} at <= {cut} saw a later frame"
                assert changed[cut + 1 :].any()


def test_far_heads_read_exactly_their_actions_and_frames():
    """sum: head k at t reads a_t .. a_{t+k-2}; frame: true frame t+k-2 and a_{t+k-2}; nothing
    later (in frame mode the true frame t+k-2 may lie past t: teacher forcing, as in MTP)."""
    t = 2
    for mode in ("sum", "frame"):
        model = make_model(heads=HeadsConfig(action_mode=mode))
        x, tau, actions, clean = make_inputs(model)
        with torch.no_grad():
            base = model(x, tau, actions, clean=clean).far
            for k in (2, 4, 8):
                last = t + k - 2  # last action (and, in frame mode, frame) head k at t reads
                later_a, later_c = actions.clone(), clean.clone()
                later_a[:, last + 1 :] = (later_a[:, last + 1 :] + 1) % model.cfg.num_actions
                later_c[:, last + 1 :] += 1.0
                pred = model(x, tau, later_a, clean=later_c).far[k]
                assert not _changed(pred, base[k])[: t + 1].any(), (mode, k)

                used_a = actions.clone()
                used_a[:, last] = (used_a[:, last] + 1) % model.cfg.num_actions
                pred = model(x, tau, used_a, clean=clean).far[k]
                assert _changed(pred, base[k])[t], f"{mode} head {k} ignores a_(t+k-2)"
                if mode == "frame":
                    used_c = clean.clone()
                    used_c[:, last] += 1.0
                    pred = model(x, tau, actions, clean=used_c).far[k]
                    assert _changed(pred, base[k])[t], f"frame head {k} ignores frame t+k-2"


def test_sliding_window_limits_the_receptive_field():
    # Two blocks of window 2: frame 0 reaches position 1 in block 1 and position 2 in block 2.
    model = make_model(heads=HeadsConfig(offsets=(1,)))
    model.cfg.window = 2
    for block in model.blocks:
        block.time.window = 2
    assert _reached_by(model, 0) == [True] * 3 + [False] * (T - 3)


@pytest.mark.parametrize("chunks", [[1] * 9, [2, 3, 1, 3], [9]])
@pytest.mark.parametrize("inputs", INPUT_VARIANTS, ids=INPUT_IDS)
def test_cached_rollout_equals_full_clip(chunks, inputs):
    """Frames fed a few at a time through the KV cache give the full-clip outputs, with the
    window (3) shorter than the clip, ring slots wrapping, and absolute frame indices > 0.
    A model stacking the previous frame on its input is handed the last committed frame."""
    model = make_model(window=3, **inputs)
    t, start = sum(chunks), 11
    x, tau, actions, _ = make_inputs(model, t=t)
    ain = actions_into_frames(actions[:, :t], model.start_action)
    with torch.no_grad():
        full = model.trunk(x, tau, ain, start_frame=start).main
        cache = model.new_cache()
        outs, pos = [], 0
        for n in chunks:
            s = slice(pos, pos + n)
            # The inputs before the chunk that the model stacks (prev_frame_count).
            prev = x[:, max(0, pos - model.cfg.prev_frame_count) : pos] if pos else None
            # A denoising step that is not committed must leave the cache alone.
            noisier = x[:, s] * 3
            model.trunk(
                noisier,
                tau[:, s],
                ain[:, s],
                start_frame=start + pos,
                cache=cache,
                commit=False,
                prev=prev,
            )
            outs.append(
                model.trunk(
                    x[:, s],
                    tau[:, s],
                    ain[:, s],
                    start_frame=start + pos,
                    cache=cache,
                    commit=True,
                    prev=prev,
                ).main
            )
            pos += n
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.next_frame == start + t
    assert all(ring.keys.shape[2] == 3 for ring in cache.rings)  # the last W frames kept


def test_cache_reads_only_frames_before_the_call():
    """Re-running a committed frame (another denoising step) sees its past, not itself."""
    model = make_model(window=4)
    x, tau, actions, _ = make_inputs(model, t=4)
    ain = actions_into_frames(actions[:, :4], model.start_action)
    with torch.no_grad():
        full = model.trunk(x, tau, ain).main
        cache = model.new_cache()
        model.trunk(x, tau, ain, cache=cache, commit=True)
        again = model.trunk(
            x[:, 3:], tau[:, 3:], ain[:, 3:], start_frame=3, cache=cache, commit=False
        )
    torch.testing.assert_close(again.main, full[:, 3:], atol=1e-5, rtol=1e-5)


def test_input_embedding_is_replaceable_by_tokens():
    """Discrete inputs: a module mapping (B, T) indices to (B, T, N, D) tokens replaces the
    patch embedding, and the trunk sees its input only through it (an index standing for a
    frame gives what that frame gives)."""
    model = make_model()
    x, tau, actions, _ = make_inputs(model)
    actions_in = actions_into_frames(actions[:, :T], model.start_action)
    frames = x.flatten(0, 1)  # index i stands for frame i
    patch = model.input_embed

    class FrameIndexEmbed(nn.Module):
        def forward(self, index: torch.Tensor) -> torch.Tensor:
            return patch(frames[index])

    with torch.no_grad():
        want = model.trunk(x, tau, actions_in).main
        model.input_embed = FrameIndexEmbed()
        got = model.trunk(torch.arange(B * T).view(B, T), tau, actions_in).main
    torch.testing.assert_close(got, want)


def test_bf16_autocast_agrees_with_fp32():
    """bf16 autocast (used where the CPU runs it fast) gives the fp32 outputs to bf16
    precision: within 5% of each output's largest value (another input moves them 20-50%)."""
    model = make_model()
    x, tau, actions, clean = make_inputs(model)
    with torch.no_grad():
        full = model(x, tau, actions, clean=clean)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(x, tau, actions, clean=clean)
    pairs = [(half.main, full.main)] + [(half.far[k], v) for k, v in full.far.items()]
    assert len(pairs) == 4
    for low, exact in pairs:
        error = (low.float() - exact).abs().max()
        assert error <= 0.05 * exact.abs().max(), float(error / exact.abs().max())


def test_presets_validate_and_quickstart_is_small():
    for name in DYNAMICS_SIZES.names():
        DYNAMICS_SIZES.get(name).validate()
    for name in HEADS_PRESETS.names():
        DynamicsConfig(heads=HEADS_PRESETS.get(name)).validate()
    n = sum(p.numel() for p in DynamicsModel(dynamics_quickstart()).parameters())
    assert 1e6 < n < 20e6


def test_bad_configs_name_the_key():
    with pytest.raises(ConfigError, match="heads.resolutions"):
        apply_overrides(DynamicsConfig(), ["heads.offsets=[1,2,4,8,16]"]).validate()
    with pytest.raises(ConfigError, match="heads.depths"):
        apply_overrides(
            DynamicsConfig(), ["heads.offsets=[1,2,4,8,16]", "heads.resolutions=[1,2,4,8,8]"]
        ).validate()
    with pytest.raises(ConfigError, match="heads.offsets"):
        apply_overrides(DynamicsConfig(), ["heads.offsets=[2,4]"]).validate()
    with pytest.raises(ConfigError, match="branch_layer"):
        apply_overrides(DynamicsConfig(), ["heads.branch_layer=9"]).validate()
    with pytest.raises(ConfigError, match="action_mode"):
        apply_overrides(DynamicsConfig(), ["heads.action_mode=concat"]).validate()
    ok = apply_overrides(
        DynamicsConfig(), ["heads.offsets=[1,2,3,4]", "heads.branch_layer=-3", "depth=4"]
    )
    ok.validate()
    assert ok.branch_index() == 2
    # Aligned tuples are prefixes: offsets alone switch heads off (or keep the first ones).
    short = apply_overrides(DynamicsConfig(), ["heads.offsets=[1,2]"])
    short.validate()
    assert short.heads.head_resolutions == (1, 2) and short.heads.far_lambdas == (0.3,)
    assert DynamicsModel(apply_overrides(dynamics_tiny(), ["heads.offsets=[1]"])).heads is None


def test_previous_frame_reaches_the_next_position_through_the_input():
    """With prev_frame_input, frame t's input carries frame t - 1: removing every temporal
    attention (window 1: each frame sees only itself) still leaves frame t depending on frame
    t - 1, and on nothing earlier."""
    model = make_model(window=1, prev_frame_input=True)
    assert _reached_by(model, 2) == [False, False, True, True] + [False] * (T - 4)
    plain = make_model(window=1)
    assert _reached_by(plain, 2) == [False, False, True] + [False] * (T - 3)


def test_two_earlier_frames_reach_the_next_position_through_the_input():
    """prev_frame_count=2: without temporal attention frame t depends on frames t - 1 and
    t - 2 through the input, and on nothing earlier; ``prev`` hands a call the two inputs
    before its first frame, as if they had led the call."""
    model = make_model(window=1, prev_frame_input=True, prev_frame_count=2)
    assert _reached_by(model, 2) == [False, False, True, True, True] + [False] * (T - 5)
    x, tau, actions, _ = make_inputs(model)
    ain = actions_into_frames(actions[:, :T], model.start_action)
    with torch.no_grad():
        base = model.trunk(x, tau, ain).main
        tail = model.trunk(x[:, 3:], tau[:, 3:], ain[:, 3:], start_frame=3, prev=x[:, 1:3]).main
    torch.testing.assert_close(tail, base[:, 3:], atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="prev_frame_count"):
        make_model(prev_frame_count=2)


def test_spatial_rope_scores_depend_on_relative_offset_only():
    """2D RoPE: a query-key score is unchanged when both tokens move by the same (row, column)
    offset, and changes with the offset between them."""
    from farsight.models.layers import rope_grid

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 16, generator=g), torch.randn(2, 16, generator=g)

    def score(qpos, kpos):
        rows, cols = torch.tensor([qpos[0], kpos[0]]), torch.tensor([qpos[1], kpos[1]])
        both = rope_grid(torch.stack([q[0], k[0]]), rows, cols)
        return float(both[0] @ both[1])

    base = score((1, 2), (3, 1))
    assert abs(score((4, 6), (6, 5)) - base) < 1e-5
    assert abs(score((0, 0), (2, -1)) - base) < 1e-5
    assert abs(score((1, 2), (3, 2)) - base) > 1e-3
    assert abs(score((1, 2), (2, 1)) - base) > 1e-3


@pytest.mark.parametrize("patch,kernel", [(2, 1), (2, 3), (4, 3)])
def test_neighbourhood_embed_is_a_strided_convolution(patch, kernel):
    """The previous-frame embedding equals a convolution of kernel k * p and stride p (zero
    padding), in fp32 and within bf16 rounding under autocast."""
    from farsight.models.layers import NeighbourhoodEmbed

    torch.manual_seed(0)
    embed = NeighbourhoodEmbed(4, patch, kernel, 16)
    conv = torch.nn.Conv2d(4, 16, kernel * patch, stride=patch, padding=(kernel - 1) // 2 * patch)
    with torch.no_grad():
        w = embed.linear.weight.reshape(16, 4, kernel * patch, kernel * patch)
        conv.weight.copy_(w)
        conv.bias.copy_(embed.linear.bias)
    x = torch.randn(2, 3, 4, 8, 8)
    embed.requires_grad_(False)
    out = embed(x)
    ref = conv(x.flatten(0, 1)).flatten(2).transpose(1, 2).reshape(out.shape)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = embed(x).float()
    assert float((low - out).norm() / out.norm()) < 0.02


def test_neighbourhood_embed_per_index_adds_each_frames_own_matrix():
    """With ``maps`` > 1 a frame's embedding adds its index's own matrix to the shared one:
    output and gradients equal a per-frame loop, and under autocast within bf16 rounding."""
    from farsight.models.layers import NeighbourhoodEmbed

    torch.manual_seed(0)
    embed = NeighbourhoodEmbed(4, 2, 3, 16, maps=5)
    with torch.no_grad():
        embed.per_index.normal_()
    x = torch.randn(2, 3, 4, 8, 8)
    index = torch.tensor([[0, 4, 4], [2, 0, 1]])
    out = embed(x, index)
    cols = torch.nn.functional.unfold(x.flatten(0, 1), kernel_size=6, stride=2, padding=2)
    cols = cols.transpose(1, 2).reshape(2, 3, 16, -1)
    want = torch.stack(
        [
            torch.stack(
                [
                    embed.linear(cols[b, t]) + cols[b, t] @ embed.per_index[index[b, t]]
                    for t in range(3)
                ]
            )
            for b in range(2)
        ]
    )
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, embed.per_index, grad)[0]
    ref = torch.autograd.grad(want, embed.per_index, grad)[0]
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert got[3].abs().max() == 0  # an index no frame uses gets no gradient
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = embed(x, index).float()
    assert float((low - out.detach()).norm() / out.detach().norm()) < 0.02


@pytest.mark.parametrize("inputs", INPUT_VARIANTS, ids=INPUT_IDS)
def test_teacher_forced_pass_equals_rolling_out_each_frame(inputs):
    """Noisy frame t of the two-stream pass gets the output it would get in a rollout: the
    context frames 0..t-1 committed, then frame t alone (window 3 < clip: the window holds)."""
    model = make_model(window=3, **inputs)
    x, tau, actions, _ = make_inputs(model)
    g = torch.Generator().manual_seed(5)
    context = torch.randn(x.shape, generator=g)
    context_levels = torch.full(tau.shape, 0.05)
    ain = actions_into_frames(actions[:, :T], model.start_action)
    with torch.no_grad():
        both = model.trunk_teacher_forced(x, tau, context, context_levels, ain).main
        for t in range(T):
            one = model.trunk(
                torch.cat([context[:, :t], x[:, t : t + 1]], 1),
                torch.cat([context_levels[:, :t], tau[:, t : t + 1]], 1),
                ain[:, : t + 1],
            ).main[:, -1]
            torch.testing.assert_close(both[:, t], one, atol=5e-5, rtol=1e-4)


def test_teacher_forced_frame_sees_only_the_past_context_and_itself():
    model = make_model(prev_frame_input=True, action_input=True)
    x, tau, actions, _ = make_inputs(model)
    context = torch.randn_like(x)
    context_levels = torch.zeros_like(tau)
    with torch.no_grad():
        base = model(x, tau, actions, context=context, context_levels=context_levels, heads=False)
        cut = 3
        c2 = context.clone()
        c2[:, cut:] += 1.0  # context frames >= cut: visible to noisy frames > cut only
        changed = _changed(
            model(x, tau, actions, context=c2, context_levels=context_levels, heads=False).main,
            base.main,
        )
        assert changed.tolist() == [False] * (cut + 1) + [True] * (T - cut - 1)
        x2 = x.clone()
        x2[:, cut] += 1.0  # noisy frame cut: seen by itself only
        changed = _changed(
            model(
                x2, tau, actions, context=context, context_levels=context_levels, heads=False
            ).main,
            base.main,
        )
        assert changed.tolist() == [t == cut for t in range(T)]


def test_rope_turns_the_pairs_of_each_half():
    """``rotate`` turns each pair (x[i], x[i + Dh/2]) by angle i, as a complex product; the
    grid's rotation does so in each half of the width with the row's, then the column's
    angles. The layout is what every checkpoint was trained with."""
    from farsight.models.layers import grid_angles, rope_angles, rotate, rotate_grid

    def turned(x, cos, sin):
        half = x.shape[-1] // 2
        z = torch.complex(x[..., :half], x[..., half:]) * torch.complex(cos, sin)
        return torch.cat([z.real, z.imag], -1)

    x = torch.randn(3, 2, 12, 16, generator=torch.Generator().manual_seed(0))
    cos, sin = rope_angles(torch.arange(5, 17), 16, 10_000.0)
    torch.testing.assert_close(rotate(x, cos, sin), turned(x, cos, sin))
    a = grid_angles((3, 4), 16)
    want = torch.cat([turned(x[..., :8], a[0], a[1]), turned(x[..., 8:], a[2], a[3])], -1)
    torch.testing.assert_close(rotate_grid(x, a), want)

    # The gradient (its own backward: the inverse rotation) is the complex product's, also
    # for an incoming gradient in a transposed layout, as attention's backward hands over.
    x = x.double().requires_grad_()
    a, cos, sin = a.double(), cos.double(), sin.double()
    torch.autograd.gradcheck(lambda t: rotate_grid(t, a), (x,))
    grad = torch.randn(3, 2, 16, 12, dtype=torch.float64).transpose(-1, -2)
    (got,) = torch.autograd.grad(rotate(x, cos, sin), x, grad)
    (want,) = torch.autograd.grad(turned(x, cos, sin), x, grad)
    torch.testing.assert_close(got, want)


def test_spatial_rope_tables_match_rope_grid():
    """The spatial attention's precomputed tables rotate as ``rope_grid`` does."""
    from farsight.models.layers import grid_angles, rope_grid, rotate_grid

    x = torch.randn(3, 2, 12, 16, generator=torch.Generator().manual_seed(0))
    rows = torch.arange(3).repeat_interleave(4)
    cols = torch.arange(4).repeat(3)
    torch.testing.assert_close(rotate_grid(x, grid_angles((3, 4), 16)), rope_grid(x, rows, cols))


def test_cpu_attention_matches_torch_kernel():
    """``attend`` on a CPU (the plain math in training, torch's kernel without autograd, see
    its docstring) matches torch's fused kernel: in fp32 to float rounding, values and
    gradients; under bf16 autocast it returns bf16 within bf16 rounding, with and without a
    mask (a window mask included)."""
    import torch.nn.functional as F

    from farsight.models.layers import attend

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 8, 32, generator=g, requires_grad=True) for _ in range(3))
    causal = torch.ones(8, 8, dtype=torch.bool).tril()
    window = causal & ~torch.ones(8, 8, dtype=torch.bool).tril(-3)
    for m in (None, causal, window):
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        want_grads = torch.autograd.grad(want.square().sum(), (q, k, v))
        got = attend(q, k, v, m)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want)
        got_grads = torch.autograd.grad(got.square().sum(), (q, k, v))
        for a, b in zip(got_grads, want_grads, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), m)
            mixed = attend(q, k, v, m)  # fp32 inputs under autocast: bf16 like a linear's
        with torch.no_grad():  # the rollouts' path: torch's kernel
            torch.testing.assert_close(attend(q, k, v, m), want)
            big = [t.repeat(8, 2, 1, 1) for t in (q, k, v)]  # 1,024 rows: the plain math
            torch.testing.assert_close(attend(*big, m), want.repeat(8, 2, 1, 1))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                fused = attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), m)
        for out in (low, mixed, fused):
            assert out.dtype == torch.bfloat16
            torch.testing.assert_close(out.float(), want, atol=0.03, rtol=0.02)


def test_residual_output_starts_as_copy_the_last_frame():
    """With ``residual_output`` head 1 at initialisation (zero final layer) returns each
    frame's previous input: the clip shifted by one, ``prev`` (or zeros) first; in teacher
    forcing, the context's previous frame; given a ``reference``, that. It stays causal."""
    cfg = dataclasses.replace(dynamics_tiny(), residual_output=True, prev_frame_input=True)
    model = DynamicsModel(cfg).eval()
    x = torch.randn(2, 5, cfg.latent_channels, *cfg.latent_size)
    tau = torch.rand(2, 5)
    ain = torch.zeros(2, 5, dtype=torch.long)
    prev = torch.randn(2, cfg.latent_channels, *cfg.latent_size)
    with torch.no_grad():
        out = model.trunk(x, tau, ain, prev=prev).main
        torch.testing.assert_close(out[:, 0], prev)
        torch.testing.assert_close(out[:, 1:], x[:, :-1])
        ctx = torch.randn_like(x)
        tf = model.trunk_teacher_forced(x, tau, ctx, torch.zeros(2, 5), ain).main
        torch.testing.assert_close(tf[:, 1:], ctx[:, :-1])
        assert (tf[:, 0] == 0).all()
        ref = torch.randn_like(x)
        torch.testing.assert_close(model.trunk(x, tau, ain, prev=prev, reference=ref).main, ref)
        tf = model.trunk_teacher_forced(x, tau, ctx, torch.zeros(2, 5), ain, reference=ref)
        torch.testing.assert_close(tf.main, ref)
    with pytest.raises(ConfigError, match="residual_reference"):
        dataclasses.replace(dynamics_tiny(), residual_reference="noisy").validate()
    with pytest.raises(ConfigError, match="residual_output"):
        dataclasses.replace(dynamics_tiny(), residual_output=True, out_channels=3).validate()


def test_shift_reference_moves_the_copy_by_the_chosen_shift():
    """``shift_reference``: the reference moved by each whole-frame shift alone is the frame
    read that far away, zeros past the edge, and is what head 1 starts from (its final layer
    at zero) in a rollout and in teacher forcing; at initialisation the unshifted reference
    holds 0.9 of the mix, so head 1 starts close to copy-the-last-frame; learned maps start
    as the shifts and get gradients; ``shift_hard`` copies at the shift of largest weight
    alone, however flat the mix, and passes the mix's gradient to the shift head; bad
    settings are refused, naming the key."""
    cfg = dataclasses.replace(
        dynamics_tiny(), residual_output=True, prev_frame_input=True, shift_reference=1
    )
    model = DynamicsModel(cfg).eval()
    c, (h, w) = cfg.latent_channels, cfg.latent_size
    base = torch.randn(2, 3, c, h, w)
    tokens = torch.randn(2, 3, h * w // cfg.patch**2, cfg.width)
    weights = model.shift_weights(tokens)
    assert weights.shape == (2, 3, 9)
    torch.testing.assert_close(weights[..., 4], torch.full((2, 3), 0.9))
    head = model.shift_head[1]
    x, tau = torch.randn(2, 3, c, h, w), torch.rand(2, 3)
    ain = torch.zeros(2, 3, dtype=torch.long)

    def moved(frames, dy, dx):
        out = torch.zeros_like(frames)
        ys, xs = slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx))
        ys2, xs2 = slice(max(0, dy), h + min(0, dy)), slice(max(0, dx), w + min(0, dx))
        out[..., ys, xs] = frames[..., ys2, xs2]
        return out

    for k, (dy, dx) in enumerate((i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)):
        with torch.no_grad():
            head.bias.fill_(-1e4)
            head.bias[k] = 1e4
            torch.testing.assert_close(model.shifted(base, tokens), moved(base, dy, dx))
            # head 1 (zero final layer) returns the previous frame so moved
            previous = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
            torch.testing.assert_close(model.trunk(x, tau, ain).main, moved(previous, dy, dx))
            ctx = torch.randn_like(x)
            tf = model.trunk_teacher_forced(x, tau, ctx, torch.zeros(2, 3), ain).main
            previous = torch.cat([torch.zeros_like(ctx[:, :1]), ctx[:, :-1]], dim=1)
            torch.testing.assert_close(tf, moved(previous, dy, dx))
    # learned maps start as the shifts, and are trained
    learned = DynamicsModel(dataclasses.replace(cfg, shift_learned=True)).eval()
    missing, unexpected = learned.load_state_dict(model.state_dict(), strict=False)
    assert missing == ["shift_kernels"] and not unexpected
    torch.testing.assert_close(learned.shifted(base, tokens), moved(base, 1, 1))
    learned.shifted(base, tokens).pow(2).sum().backward()
    assert learned.shift_kernels.grad is not None and learned.shift_kernels.grad.abs().sum() > 0
    # the hard choice: the copy at the shift of largest weight alone, however flat the mix,
    # with the mix's gradient reaching the shift head
    hard = DynamicsModel(dataclasses.replace(cfg, shift_hard=True)).eval()
    hard.load_state_dict(model.state_dict())
    head = hard.shift_head[1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[5] = 0.1  # weight about 0.12 against 0.11 for each of the other eight
    assert hard.shift_weights(tokens)[..., 5].max() < 0.13
    torch.testing.assert_close(hard.shifted(base, tokens), moved(base, 0, 1))
    hard.shifted(base, tokens).pow(2).sum().backward()
    assert head.bias.grad is not None and head.bias.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="shift_hard"):
        dataclasses.replace(dynamics_tiny(), residual_output=True, shift_hard=True).validate()
    with pytest.raises(ConfigError, match="shift_reference"):
        dataclasses.replace(dynamics_tiny(), shift_reference=1).validate()
    for bad in (-1, min(dynamics_tiny().latent_size)):
        with pytest.raises(ConfigError, match="shift_reference"):
            dataclasses.replace(
                dynamics_tiny(), residual_output=True, shift_reference=bad
            ).validate()
    with pytest.raises(ConfigError, match="shift_learned"):
        dataclasses.replace(dynamics_tiny(), shift_learned=True).validate()


def test_weights_stored_under_a_renamed_module_load():
    model = make_model(context_level_embed=True)
    old = {
        k.replace("context_level_embed.", "ctx_noise_embed."): v
        for k, v in model.state_dict().items()
    }
    assert any(k.startswith("ctx_noise_embed.") for k in old)
    fresh = make_model(seed=1, context_level_embed=True)
    fresh.load_state_dict(old)
    for name, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
