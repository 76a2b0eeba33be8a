"""Generation: schedules, samplers, context policies, the KV-cached rollout and its reference."""

from __future__ import annotations

import copy
import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from farsight import diffusion
from farsight.config import ConfigError
from farsight.dynamics_config import HeadsConfig, ObjectiveConfig, dynamics_tiny
from farsight.envs.arena import ACTION_MEANINGS
from farsight.models.autoencoder import Autoencoder
from farsight.models.dynamics import DynamicsModel
from farsight.sampling import (
    SCHEDULINGS,
    ContextLevels,
    ContextPolicy,
    SamplingConfig,
    chunk_levels,
    denoise_levels,
    denoise_row,
    far_head_predictions,
    flush,
    generate,
    new_state,
    plan_chunks,
    prime,
    pyramid_schedule,
    shift_levels,
)
from farsight.train.recipes.autoencoder import ae_tiny

B, PROMPT, FRAMES = 2, 3, 7  # prompt + frames > window (4): the ring wraps


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_dynamics(seed: int = 0, **sizes) -> DynamicsModel:
    """dynamics_tiny with every parameter perturbed (at DiT's init the adaLN-Zero gates and the
    output layer are zero, so every output would be 0 and nothing could be compared)."""
    cfg = dataclasses.replace(dynamics_tiny(), **sizes)
    torch.manual_seed(seed)
    model = DynamicsModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval().requires_grad_(False)


def tiny_world_model(seed: int = 0, num_actions: int = 5):
    """A WorldModel-like object: tiny dynamics over ae_tiny's 32x32 -> 8x8x4 latents. With 9
    actions it claims to model the arena (and can be prompted from a real one)."""
    dynamics = tiny_dynamics(seed, num_actions=num_actions)
    torch.manual_seed(seed)
    autoencoder = Autoencoder(ae_tiny().model).eval().requires_grad_(False)
    names = list(ACTION_MEANINGS) if num_actions == 9 else [f"A{i}" for i in range(num_actions)]
    return SimpleNamespace(
        dynamics=dynamics,
        autoencoder=autoencoder,
        objective=ObjectiveConfig(),
        meta={"env_id": "arena", "size": 32, "action_meanings": names},
        context_frames=4,
        step=0,
    )


def prompt_inputs(model: DynamicsModel, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    latents = torch.randn(B, PROMPT, cfg.latent_channels, *cfg.latent_size, generator=g)
    prompt_actions = torch.randint(0, cfg.num_actions, (B, PROMPT), generator=g)
    prompt_actions[:, 0] = model.start_action
    actions = torch.randint(0, cfg.num_actions, (B, FRAMES), generator=g)
    return latents, prompt_actions, actions


def rollout(
    model: DynamicsModel,
    cfg: SamplingConfig,
    *,
    seed: int = 3,
    kv_cache: bool = True,
    full_history: bool = False,
    objective: ObjectiveConfig | None = None,
    actions: torch.Tensor | None = None,
) -> torch.Tensor:
    """The frames generated after a prompt; ``actions`` replaces the drawn ones."""
    objective = objective or ObjectiveConfig()
    latents, prompt_actions, drawn = prompt_inputs(model)
    actions = drawn if actions is None else actions
    state = new_state(
        model, torch.Generator().manual_seed(seed), kv_cache=kv_cache, full_history=full_history
    )
    policy = cfg.policy(objective.context_level)
    prime(model, state, latents, prompt_actions, policy, objective.schedule)
    return generate(
        model,
        state,
        actions,
        cfg,
        prediction=objective.prediction,
        schedule=objective.schedule,
        context_level=objective.context_level,
    )


# -- schedules ------------------------------------------------------------------------------
def test_denoise_levels_run_from_noise_to_clean():
    levels = denoise_levels(4)
    torch.testing.assert_close(levels, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    shifted = denoise_levels(4, shift=3.0)
    assert shifted[0] == 1 and shifted[-1] == 0
    assert (shifted[1:] < shifted[:-1]).all()
    assert (shifted[1:-1] > levels[1:-1]).all()  # shift > 1: more of the budget at high noise
    torch.testing.assert_close(shift_levels(levels, 1.0), levels)
    with pytest.raises(ValueError, match="steps=0"):
        denoise_levels(0)


@pytest.mark.parametrize("lag", [1, 2])
def test_pyramid_lags_each_frame_behind_the_previous(lag):
    steps, frames = 4, 5
    levels = pyramid_schedule(frames, steps, lag=lag)
    assert levels.shape == (steps + lag * (frames - 1) + 1, frames)
    assert (levels[0] == 1).all() and (levels[-1] == 0).all()
    assert (levels[1:] <= levels[:-1]).all()  # no frame ever gets noisier
    assert (levels[:, 1:] >= levels[:, :-1]).all()  # never cleaner than its predecessor
    grid = denoise_levels(steps)
    for j in range(frames):  # frame j follows the plain grid, started lag * j rows late
        torch.testing.assert_close(levels[lag * j : lag * j + steps + 1, j], grid)


def test_chunk_levels_and_plans():
    assert chunk_levels("autoregressive", 1, 3).shape == (4, 1)
    full = chunk_levels("full_sequence", 6, 3)
    assert full.shape == (4, 6) and (full == full[:, :1]).all()
    assert plan_chunks(10, "autoregressive") == [1] * 10
    assert plan_chunks(10, "chunked", 4) == [4, 4, 2]
    assert plan_chunks(10, "pyramid", 3) == [3, 3, 3, 1]
    assert plan_chunks(10, "full_sequence") == [10]
    with pytest.raises(ValueError, match="scheduling='zigzag'"):
        plan_chunks(3, "zigzag")
    with pytest.raises(ValueError, match="autoregressive chunks hold one frame"):
        chunk_levels("autoregressive", 2, 3)


# -- context policies -----------------------------------------------------------------------
def test_context_policies_map_target_level_to_context_levels():
    assert ContextPolicy("clean")(0.9) == ContextLevels(0.0, 0.0)
    assert ContextPolicy("stable", context_level=0.02)(0.9) == ContextLevels(0.02, 0.02)
    label_only = ContextPolicy("stable", context_level=0.02, noised=False)
    assert label_only(0.9) == ContextLevels(0.02, 0.0)
    dynamic = ContextPolicy("dynamic", cap=0.3)
    assert dynamic(0.9) == ContextLevels(0.3, 0.3)
    assert dynamic(0.1) == ContextLevels(0.1, 0.1)
    assert dynamic.recomputes_context and not ContextPolicy("stable").recomputes_context
    with pytest.raises(ValueError, match="context='warm'"):
        ContextPolicy("warm")


def test_sampling_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="sampling.sampler='rk4'"):
        SamplingConfig(sampler="rk4").validate()
    with pytest.raises(ConfigError, match="sampling.steps=0"):
        SamplingConfig(steps=0).validate()
    assert SamplingConfig().policy(0.05).context_level == 0.05
    assert SamplingConfig(context_level=0.01).policy(0.05).context_level == 0.01


# -- samplers -------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["v", "x0"])
@pytest.mark.parametrize("sampler", ["ddim", "euler", "heun"])
def test_sampler_with_an_oracle_lands_on_the_data(schedule, prediction, sampler):
    """A predictor that knows x0 (as v or x0) must bring pure noise to x0 in a few steps, and
    leave frames whose level does not change untouched."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 2, 3, 4, 4, generator=g)
    eps = torch.randn(1, 2, 3, 4, 4, generator=g)

    def oracle(x, tau, target):
        if prediction == "x0":
            return x0
        # the v that points from x (at tau) to x0: solve x = alpha x0 + sigma e for e
        alpha, sigma = diffusion.alpha_sigma(tau, schedule)
        e = (x - diffusion.per_frame(alpha, x) * x0) / diffusion.per_frame(sigma, x)
        return diffusion.velocity(x0, e, tau, schedule)

    levels = pyramid_schedule(2, 6)  # frame 1 waits at 1 while frame 0 moves first
    x = eps.clone()
    for m in range(len(levels) - 1):
        before = x.clone()
        x = denoise_row(
            oracle,
            x,
            levels[m],
            levels[m + 1],
            sampler=sampler,
            prediction=prediction,
            schedule=schedule,
        )
        still = levels[m] == levels[m + 1]
        assert torch.equal(x[:, still], before[:, still])
    # ddim (and euler, which is ddim there, on the linear schedule) is exact with an oracle;
    # euler on the cosine schedule is a first-order ODE step, heun a second-order one.
    exact = sampler == "ddim" or schedule == "linear"
    tol = 1e-4 if exact else {"euler": 0.25, "heun": 0.02}[sampler]
    torch.testing.assert_close(x, x0, atol=tol, rtol=0)


def test_euler_is_ddim_on_the_linear_schedule_only():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, 2, 4, 4, generator=g)
    pred = torch.randn(1, 1, 2, 4, 4, generator=g)
    cur, nxt = torch.tensor([0.8]), torch.tensor([0.3])

    def step(sampler, schedule):
        return denoise_row(
            lambda *_: pred, x, cur, nxt, sampler=sampler, prediction="v", schedule=schedule
        )

    torch.testing.assert_close(step("euler", "linear"), step("ddim", "linear"))
    assert not torch.allclose(step("euler", "cosine"), step("ddim", "cosine"), atol=1e-3)


# -- rollouts -------------------------------------------------------------------------------
@pytest.mark.parametrize("scheduling", SCHEDULINGS)
@pytest.mark.parametrize(
    "context", [{"context": "clean"}, {"context": "stable"}, {"context_noise": False}]
)
def test_cached_rollout_equals_uncached(scheduling, context):
    """The KV cache (context computed once per committed frame, ring of W frames) gives the same
    frames as recomputing every frame since the prompt at every denoising step."""
    model = tiny_dynamics()
    cfg = SamplingConfig(steps=3, scheduling=scheduling, chunk=3, **context)
    cached = rollout(model, cfg, kv_cache=True)
    uncached = rollout(model, cfg, kv_cache=False, full_history=True)
    assert cached.shape == (B, FRAMES, 4, 8, 8)
    torch.testing.assert_close(cached, uncached, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("context", ["stable", "dynamic"])
@pytest.mark.parametrize("scheduling", ["autoregressive", "pyramid"])
@pytest.mark.parametrize("count", [1, 2])
def test_cached_rollout_equals_uncached_with_the_previous_frame_on_the_input(
    context, scheduling, residual, count
):
    """A model stacking the previous frame (or two) on its input (or adding it to its
    output) is handed the right ones on every path: committed, cached denoising steps and
    full-history recomputation."""
    model = tiny_dynamics(
        prev_frame_count=count,
        prev_frame_input=True,
        prev_frame_kernel=3,
        prev_frame_per_action=True,
        spatial_rope=True,
        action_input=True,
        residual_output=residual,
    )
    objective = ObjectiveConfig(prediction="x0" if residual else "v")
    cfg = SamplingConfig(steps=3, scheduling=scheduling, chunk=3, context=context)
    if context == "dynamic":
        full = rollout(model, cfg, objective=objective, kv_cache=False, full_history=True)
        again = rollout(model, cfg, objective=objective, kv_cache=False, full_history=True)
        torch.testing.assert_close(full, again)
        return
    cached = rollout(model, cfg, objective=objective, kv_cache=True)
    uncached = rollout(model, cfg, objective=objective, kv_cache=False, full_history=True)
    # A residual model adds each frame to the next: rounding differences add up over frames.
    tol = 1e-4 if residual else 1e-5
    torch.testing.assert_close(cached, uncached, atol=tol, rtol=tol)


@pytest.mark.parametrize("context", ["stable", "dynamic"])
def test_clean_reference_rollout_cached_equals_uncached(context):
    """A model adding its output to the previous clean latent gets the same one on every path
    (the cache with its deferred commits, and full recomputation)."""
    model = tiny_dynamics(
        prev_frame_input=True, residual_output=True, residual_reference="clean", window=3
    )
    objective = ObjectiveConfig(prediction="x0")
    cfg = SamplingConfig(steps=3, context=context)
    full = rollout(model, cfg, objective=objective, kv_cache=False, full_history=True)
    if context == "stable":
        cached = rollout(model, cfg, objective=objective, kv_cache=True)
        torch.testing.assert_close(cached, full, atol=1e-4, rtol=1e-4)
    window = rollout(model, cfg, objective=objective, kv_cache=False)
    assert window.shape == full.shape and torch.isfinite(window).all()


@pytest.mark.parametrize("reference", ["input", "clean"])
def test_an_untrained_residual_model_copies_the_clean_frame_only_with_the_clean_reference(
    reference,
):
    """With its output layer at zero a residual model says "nothing changes": with the clean
    reference every generated frame is the prompt's last latent exactly, whatever noise the
    context is shown at; with the input reference it is that noised input instead, so the
    rollout's frames differ from it and from each other."""
    model = tiny_dynamics(prev_frame_input=True, residual_output=True, residual_reference=reference)
    with torch.no_grad():
        model.final.linear.weight.zero_()
        model.final.linear.bias.zero_()
    objective = ObjectiveConfig(prediction="x0")
    cfg = SamplingConfig(steps=2, context_level=0.3)
    made = rollout(model, cfg, objective=objective)
    last = prompt_inputs(model)[0][:, -1:]
    if reference == "clean":
        torch.testing.assert_close(made, last.expand_as(made))
    else:
        assert (made - last).abs().mean() > 0.1
        assert (made[:, 1:] - made[:, :-1]).abs().mean() > 0.1


def test_clean_reference_refuses_frames_sampled_together():
    model = tiny_dynamics(residual_output=True, residual_reference="clean")
    cfg = SamplingConfig(steps=2, scheduling="pyramid", chunk=3)
    with pytest.raises(ValueError, match="scheduling=autoregressive"):
        rollout(model, cfg, objective=ObjectiveConfig(prediction="x0"))


def test_action_guidance_mixes_the_prediction_given_and_without_the_action():
    """One step from pure noise returns the step's clean estimate, so the first frame of a
    guided rollout is free + w (given - free): linear in w, the unguided frame at w = 1, and
    at w = 0 the frame the model makes when told no action."""
    model = tiny_dynamics(null_action=True)
    objective = ObjectiveConfig(prediction="x0")

    def first(w: float, actions=None) -> torch.Tensor:
        cfg = SamplingConfig(steps=1, action_guidance=w)
        return rollout(model, cfg, objective=objective, actions=actions)[:, 0]

    free, given, doubled = first(0.0), first(1.0), first(2.0)
    assert (given - free).abs().mean() > 1e-3  # the action matters to this model
    torch.testing.assert_close(doubled, free + 2 * (given - free), atol=1e-5, rtol=1e-5)
    drawn = prompt_inputs(model)[2]
    torch.testing.assert_close(first(1.0, torch.full_like(drawn, model.null_action)), free)


def test_action_guidance_changes_nothing_for_an_action_blind_model():
    model = tiny_dynamics(null_action=True)
    with torch.no_grad():
        model.action_embed.weight.zero_()
    objective = ObjectiveConfig(prediction="x0")
    plain = rollout(model, SamplingConfig(steps=2), objective=objective)
    guided = rollout(model, SamplingConfig(steps=2, action_guidance=3.0), objective=objective)
    torch.testing.assert_close(guided, plain, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="null_action"):
        rollout(tiny_dynamics(), SamplingConfig(steps=2, action_guidance=2.0))


@pytest.mark.parametrize("scheduling", ["autoregressive", "chunked"])
@pytest.mark.parametrize("count", [1, 2])
def test_committing_more_frames_than_the_window_at_once(scheduling, count):
    """A prompt (and chunks) longer than the window are committed at their own frame indices
    and with the inputs before them, as a full recomputation sees them."""
    model = tiny_dynamics(
        window=2, prev_frame_input=True, prev_frame_per_action=True, prev_frame_count=count
    )
    assert model.cfg.window < PROMPT
    cfg = SamplingConfig(steps=2, scheduling=scheduling, chunk=3)
    cached = rollout(model, cfg, kv_cache=True)
    uncached = rollout(model, cfg, kv_cache=False, full_history=True)
    torch.testing.assert_close(cached, uncached, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("context", ["stable", "dynamic"])
def test_window_recompute_hands_over_the_previous_frame(context, count):
    """With a window of one frame the previous frames reach a new frame only through the
    input: recomputing the window (or a dynamic context) must hand them over as the cache
    does. The dynamic context renoises the previous frame (no cache to compare with): there,
    the same model with its previous-frame weights zeroed must roll out differently."""
    model = tiny_dynamics(
        window=1, prev_frame_input=True, prev_frame_per_action=True, prev_frame_count=count
    )
    cfg = SamplingConfig(steps=2, context=context)
    if context == "stable":
        cached = rollout(model, cfg, kv_cache=True)
        recomputed = rollout(model, cfg, kv_cache=False)
        torch.testing.assert_close(cached, recomputed, atol=1e-5, rtol=1e-5)
    else:
        deaf = copy.deepcopy(model)
        deaf.prev_embed.linear.weight.zero_()
        deaf.prev_embed.per_index.zero_()
        assert not torch.allclose(rollout(model, cfg), rollout(deaf, cfg), atol=1e-4)


def test_cached_rollout_equals_uncached_for_x0_cosine_heun():
    model = tiny_dynamics()
    objective = ObjectiveConfig(prediction="x0", schedule="cosine")
    cfg = SamplingConfig(steps=2, sampler="heun", scheduling="pyramid", chunk=3)
    cached = rollout(model, cfg, objective=objective)
    uncached = rollout(model, cfg, objective=objective, kv_cache=False, full_history=True)
    torch.testing.assert_close(cached, uncached, atol=1e-5, rtol=1e-5)


def test_same_seed_same_rollout_other_seed_other_rollout():
    model = tiny_dynamics()
    cfg = SamplingConfig(steps=2)
    first, again, other = (rollout(model, cfg, seed=s) for s in (5, 5, 6))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("scheduling", SCHEDULINGS)
@pytest.mark.parametrize("context", ["clean", "stable", "dynamic"])
@pytest.mark.parametrize("kv_cache", [True, False])
def test_every_scheduling_and_context_policy_follows_the_actions_causally(
    scheduling, context, kv_cache
):
    """Other actions from generated frame K on: the frames before K are unchanged (whichever
    frames a schedule denoises together), the frames from K on change."""
    model = tiny_dynamics()
    cfg = SamplingConfig(
        steps=2, scheduling=scheduling, context=context, chunk=3, kv_cache=kv_cache
    )
    _, _, actions = prompt_inputs(model)
    k = FRAMES // 2
    other = actions.clone()
    other[:, k:] = (actions[:, k:] + 1) % model.cfg.num_actions
    out = rollout(model, cfg, kv_cache=kv_cache, actions=actions)
    changed = rollout(model, cfg, kv_cache=kv_cache, actions=other)
    assert out.shape == (B, FRAMES, 4, 8, 8)
    torch.testing.assert_close(changed[:, :k], out[:, :k], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(changed[:, k], out[:, k], atol=1e-3)


def test_chunked_generation_can_condition_on_the_last_k_frames_only():
    model = tiny_dynamics()
    base = SamplingConfig(steps=2, scheduling="chunked", chunk=2)
    whole = rollout(model, base)
    last_one = rollout(model, dataclasses.replace(base, chunk_context=1))
    torch.testing.assert_close(whole[:, :2], last_one[:, :2])  # the first chunk: same context
    assert not torch.allclose(whole[:, 2:], last_one[:, 2:])


def call_widths(model: DynamicsModel, cfg: SamplingConfig, kv_cache: bool = True) -> list[int]:
    """Frames in each model call of a rollout."""
    widths = []
    trunk = model.trunk

    def spy(x, *args, **kwargs):
        widths.append(x.shape[1])
        return trunk(x, *args, **kwargs)

    model.trunk = spy
    try:
        rollout(model, cfg, kv_cache=kv_cache)
    finally:
        del model.trunk
    return widths


def test_dynamic_context_recomputes_the_window_at_every_step():
    """stable + cache: each denoising step runs the new frame alone, except the first of each
    frame, which also commits the frame(s) finished before it (no call of its own); dynamic:
    each step reruns the W-1 context frames, and never commits."""
    model = tiny_dynamics()
    window = model.cfg.window
    stable = call_widths(model, SamplingConfig(steps=3))
    assert stable == [PROMPT + 1, 1, 1] + [2, 1, 1] * (FRAMES - 1)
    dynamic = call_widths(model, SamplingConfig(steps=3, context="dynamic"))
    assert window - 1 == PROMPT and dynamic == [window] * (3 * FRAMES)
    # Its output does not depend on whether a cache exists: it never reads one.
    cfg = SamplingConfig(steps=3, context="dynamic")
    torch.testing.assert_close(rollout(model, cfg), rollout(model, cfg, kv_cache=False))


def test_switching_context_policy_mid_rollout_rebuilds_the_cache():
    model = tiny_dynamics()
    latents, prompt_actions, actions = prompt_inputs(model)
    state = new_state(model, torch.Generator().manual_seed(0))
    prime(model, state, latents, prompt_actions, ContextPolicy("stable"))
    for context in ("dynamic", "stable", "clean", "dynamic", "stable"):
        cfg = SamplingConfig(steps=2, context=context)
        out = generate(model, state, actions[:, :2], cfg)
        assert torch.isfinite(out).all()
        if context != "dynamic":
            assert state.cache_levels == cfg.policy().committed
    assert state.next_frame == PROMPT + 10
    # The last frame is committed by the next call; flushed now, the cache holds it.
    assert state.pending == 1
    assert all(int(ring.frames.max()) == state.next_frame - 2 for ring in state.cache.rings)
    flush(model, state, state.cache_levels)
    assert state.pending == 0
    assert all(int(ring.frames.max()) == state.next_frame - 1 for ring in state.cache.rings)


def test_deferred_commit_equals_a_commit_call_of_its_own():
    """Writing a finished frame's keys/values inside the next frame's first denoising call
    gives the same rollout as writing them in a call of their own."""
    model = tiny_dynamics()
    cfg = SamplingConfig(steps=2)
    latents, prompt_actions, actions = prompt_inputs(model)
    outs = []
    for eager in (False, True):
        state = new_state(model, torch.Generator().manual_seed(0))
        prime(model, state, latents, prompt_actions, cfg.policy())
        frames = []
        for i in range(actions.shape[1]):
            if eager:
                flush(model, state, cfg.policy().committed)
            frames.append(generate(model, state, actions[:, i : i + 1], cfg))
        outs.append(torch.cat(frames, dim=1))
    torch.testing.assert_close(outs[0], outs[1])


@pytest.mark.slow
def test_long_rollout_keeps_memory_flat():
    """3,000 frames: the cache ring and the recent latents stay the same size."""
    heads = HeadsConfig(offsets=(1,), pyramid=(1,))
    model = tiny_dynamics(depth=1, latent_size=(4, 4), heads=heads)
    state = new_state(model, torch.Generator().manual_seed(0))
    cfg = SamplingConfig(steps=1)
    prime(model, state, torch.randn(1, 2, 4, 4, 4), torch.full((1, 2), 5), cfg.policy())
    sizes = {}
    for frames in (100, 2900):
        out = generate(model, state, torch.randint(0, 5, (1, frames)), cfg)
        sizes[state.next_frame] = state.tensor_bytes()
        assert torch.isfinite(out).all()
    assert list(sizes) == [102, 3002]
    assert sizes[102] == sizes[3002] > 0
    assert len(state.clean) == model.cfg.window
    assert all(ring.keys.shape[2] == model.cfg.window for ring in state.cache.rings)


def test_far_heads_sketch_the_future_from_the_newest_frame():
    model = tiny_dynamics()
    latents, prompt_actions, actions = prompt_inputs(model)
    state = new_state(model)
    policy = ContextPolicy("stable")
    prime(model, state, latents, prompt_actions, policy)
    generator_state = state.generator.get_state()
    far = far_head_predictions(model, state, actions, policy)
    assert {k: tuple(v.shape) for k, v in far.items()} == {
        2: (B, 4, 4, 4),
        4: (B, 4, 2, 2),
        8: (B, 4, 1, 1),
    }
    assert torch.equal(state.generator.get_state(), generator_state)  # the rollout is untouched
    with pytest.raises(ValueError, match="need 7 future actions"):
        far_head_predictions(model, state, actions[:, :3], policy)


def test_level_matrix_is_checked():
    model = tiny_dynamics()
    state = new_state(model)
    from farsight.sampling import sample_chunk

    bad = torch.tensor([[1.0], [0.5], [0.7], [0.0]])
    with pytest.raises(ValueError, match="must not increase"):
        sample_chunk(model, state, torch.zeros(1, 1, dtype=torch.long), bad, ContextPolicy())
    with pytest.raises(ValueError, match="start at 1"):
        sample_chunk(model, state, torch.zeros(1, 1, dtype=torch.long), bad[1:], ContextPolicy())
    assert math.isclose(float(denoise_levels(2)[1]), 0.5)
