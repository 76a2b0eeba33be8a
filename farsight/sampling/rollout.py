"""Generation state and the functions that advance it: prime, sample a chunk, generate.

A rollout is a ``RolloutState`` (KV cache, recent frames, frame counter, random generator)
advanced by plain functions over (model, schedule, state):

    prime(model, state, latents, actions_in, policy)   commit real prompt frames as context
    sample_chunk(model, state, actions_in, levels, policy, ...)   denoise F new frames along a
                                                       level matrix, commit each once final
    generate(model, state, actions_in, cfg, objective)   a whole rollout, chunk by chunk

How the context reaches the model (the three paths, all giving the same numbers where they
should, see tests/test_sampling.py):

- KV cache (``clean``/``stable`` with ``kv_cache``): a finished frame is *committed* once, at
  the policy's context levels: its temporal keys/values go into a ring of W frames. That
  model call is deferred to the first denoising step of the next frame, which runs both
  frames in one call and writes only the finished one's keys/values (causal: the new frame
  cannot change them), so a frame costs its denoising steps and no extra call. Each denoising
  step then runs the new frame(s) only, reading the ring: O(W N) per frame however long the
  rollout.
- Window recompute (``kv_cache`` off, or the ``dynamic`` policy): every denoising step runs the
  last W-1 committed frames together with the new ones, the context at the policy's levels for
  that step. ``dynamic`` must do this: its context levels change at every step, so no keys or
  values of the context can be reused. Costs ~W times the cached step.
- Full history (``full_history=True``, for tests): as the window recompute but with every frame
  since the prompt, O(t) per step. With a sliding window a cache is *not* the same as
  recomputing the last W frames (through the blocks its receptive field grows to depth x (W-1)
  frames); it is the same as recomputing everything, which is what this path checks.

Memory: the ring holds W frames and the state at most W recent latents (``clean``, ``inputs``),
so the state is the same size at frame 50 and at frame 10,000 (full history excepted).

Randomness comes only from ``state.generator``: same seed, same rollout.

Dimension legend: B batch, F frames of a chunk, P prompt frames, G generated frames,
T frames in a model call, C H W latent channels and grid, R rows of a level matrix, W window.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from farsight import diffusion
from farsight.models.dynamics import DynamicsModel, KVCache
from farsight.sampling.config import SamplingConfig
from farsight.sampling.context import ContextLevels, ContextPolicy
from farsight.sampling.samplers import denoise_row
from farsight.sampling.schedules import chunk_levels, plan_chunks


@dataclass
class RolloutState:
    """Everything a rollout carries from one frame to the next."""

    generator: torch.Generator
    cache: KVCache | None
    """None: no KV cache (every step recomputes its context)."""
    clean: deque[Tensor]
    """The last committed latents (B, C, H, W), clean (as generated or encoded)."""
    actions_in: deque[Tensor]
    """(B,) the action leading into each frame of ``clean``."""
    inputs: deque[Tensor] = field(default_factory=deque)
    """``clean`` as shown to the model under ``input_levels`` (noised where the policy says)."""
    input_levels: ContextLevels | None = None
    """Levels ``inputs`` were made at; None: not made (a ``dynamic`` context renoises each step)."""
    cache_levels: ContextLevels | None = None
    """Levels the cache's keys/values were computed at; None: stale, rebuilt before next use."""
    next_frame: int = 0
    """Absolute index of the next frame to be committed (RoPE positions are absolute)."""
    pending: int = 0
    """How many of the newest ``inputs`` are committed but not yet in the cache: their
    keys/values are written by the next model call, together with that call's new frames."""

    @property
    def context_frames(self) -> int:
        return len(self.clean)

    def tensor_bytes(self) -> int:
        """Bytes held in tensors (cache ring + recent latents): flat over a long rollout."""
        total = sum(t.numel() * t.element_size() for q in (self.clean, self.inputs) for t in q)
        if self.cache is not None:
            for ring in self.cache.rings:
                for t in (ring.keys, ring.values, ring.frames):
                    total += 0 if t is None else t.numel() * t.element_size()
        return total


def new_state(
    model: DynamicsModel,
    generator: torch.Generator | None = None,
    *,
    kv_cache: bool = True,
    full_history: bool = False,
) -> RolloutState:
    """An empty rollout. ``full_history`` keeps every frame (tests only: O(t) per step)."""
    # The window's frames plus the inputs the oldest of them stacks (``prev_frame_count``).
    keep = None if full_history else model.cfg.window + _history(model) - 1
    if generator is None:
        generator = torch.Generator(device=_device(model)).manual_seed(0)
    return RolloutState(
        generator=generator,
        cache=model.new_cache() if kv_cache else None,
        clean=deque(maxlen=keep),
        actions_in=deque(maxlen=keep),
        inputs=deque(maxlen=keep),
    )


def fork_state(state: RolloutState) -> RolloutState:
    """A copy of ``state`` that can be rolled on without touching it: its own cache, latents
    and a generator at the same position (so the fork samples exactly what ``state`` would)."""
    generator = torch.Generator(device=state.generator.device)
    generator.set_state(state.generator.get_state())
    return copy.deepcopy(state, memo={id(state.generator): generator})


def _device(model: DynamicsModel) -> torch.device:
    return next(model.parameters()).device


def _noise_like(x: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def noised(latents: Tensor, level: float, generator: torch.Generator, schedule: str) -> Tensor:
    """latents (B, T, C, H, W) noised to ``level`` (returned as they are at level 0)."""
    if level <= 0:
        return latents
    tau = latents.new_full(latents.shape[:2], level)
    return diffusion.add_noise(latents, _noise_like(latents, generator), tau, schedule)


def _context_level(model: DynamicsModel, like: Tensor, label: float) -> Tensor | None:
    """The context level ``label`` per frame (B, T) for models with ``context_level_embed``."""
    if not model.cfg.context_level_embed:
        return None
    return like.new_full(like.shape[:2], label)


def _last(frames: deque[Tensor]) -> Tensor | None:
    """The newest per-frame tensor (B, ...), or None when there is none."""
    return frames[-1] if frames else None


def _history(model: DynamicsModel) -> int:
    """How many inputs before a call's first frame the model reads (``prev_frame_count``;
    1 also for a model that reads the previous frame only for ``residual_output``)."""
    return model.cfg.prev_frame_count


def _before(frames: deque[Tensor], end: int, count: int) -> Tensor | None:
    """Up to ``count`` per-frame tensors before index ``end`` of ``frames``, oldest first,
    as (B, K, ...) (the ``prev`` of ``DynamicsModel.trunk``), or None when there is none."""
    items = list(frames)[max(0, end - count) : max(0, end)]
    return torch.stack(items, dim=1) if items else None


def _stack(frames: deque[Tensor] | list[Tensor], count: int) -> Tensor:
    """The last ``count`` per-frame tensors (B, ...) -> (B, count, ...)."""
    items = list(frames)[len(frames) - count :]
    return torch.stack(items, dim=1)


# -- keeping the context ready --------------------------------------------------------------
def _sync_inputs(state: RolloutState, levels: ContextLevels, schedule: str) -> None:
    """Make ``inputs`` match ``levels`` (after a policy change, or the first time)."""
    if state.input_levels == levels and len(state.inputs) == len(state.clean):
        return
    state.inputs.clear()
    if state.clean:
        clean = torch.stack(list(state.clean), dim=1)
        state.inputs.extend(noised(clean, levels.noise, state.generator, schedule).unbind(1))
    state.input_levels = levels
    state.cache_levels = None  # keys/values of other inputs
    state.pending = 0


def _sync_cache(model: DynamicsModel, state: RolloutState, levels: ContextLevels) -> None:
    """Rebuild the cache from the recent frames if it was computed at other levels. (For a
    model with ``prev_frame_input`` the oldest of them is rebuilt without those of its own
    earlier frames the state no longer holds: zeros, as at the start of a training clip.)"""
    if state.cache is None or state.cache_levels == levels:
        return
    state.cache.reset()
    state.pending = 0
    count = len(state.inputs)
    if count:
        x = _stack(state.inputs, count)
        _write(model, state, x, _stack(state.actions_in, count), None, levels)
    state.cache_levels = levels


def _write(
    model: DynamicsModel,
    state: RolloutState,
    x: Tensor,
    actions_in: Tensor,
    prev: Tensor | None,
    levels: ContextLevels,
) -> None:
    """Run context frames x (B, F, C, H, W), the last F committed ones (``next_frame`` is
    already past them), at the committed levels and write their keys/values to the cache;
    ``prev``: the input before them (None: zeros)."""
    model.trunk(
        x,
        x.new_full(x.shape[:2], levels.label),
        actions_in,
        context_level=_context_level(model, x, levels.label),
        start_frame=state.next_frame - x.shape[1],
        cache=state.cache,
        commit=True,
        prev=prev,
    )


@torch.inference_mode()
def commit(
    model: DynamicsModel,
    state: RolloutState,
    latents: Tensor,
    actions_in: Tensor,
    policy: ContextPolicy,
    schedule: str = "linear",
) -> None:
    """Make finished frames (B, F, C, H, W) context. Under a cached policy the frames are run
    once at the policy's context levels and their keys/values written to the ring (by the next
    model call, ``flush``); ``dynamic`` only remembers them (it renoises the context at every
    step anyway)."""
    count = latents.shape[1]
    if policy.recomputes_context:
        state.clean.extend(latents.unbind(1))
        state.actions_in.extend(actions_in.unbind(1))
        state.inputs.clear()
        state.input_levels = state.cache_levels = None
        state.pending = 0
        state.next_frame += count
        return
    levels = policy.committed
    _sync_inputs(state, levels, schedule)
    shown = noised(latents, levels.noise, state.generator, schedule)
    # An empty cache can take the frames directly; a stale one is rebuilt at its next use.
    first_fill = state.cache is not None and state.cache_levels is None and not state.clean
    in_sync = state.cache is not None and (state.cache_levels == levels or first_fill)
    limit = state.inputs.maxlen
    # Deferred unless the deque would then drop a pending frame or an input before them.
    defer = in_sync and (limit is None or state.pending + count + _history(model) - 1 < limit)
    if in_sync and not defer:
        flush(model, state, levels)
    prev = _before(state.inputs, len(state.inputs), _history(model))
    state.clean.extend(latents.unbind(1))
    state.actions_in.extend(actions_in.unbind(1))
    state.inputs.extend(shown.unbind(1))
    state.next_frame += count
    if in_sync:
        state.cache_levels = levels
        if defer:
            state.pending += count
        else:
            _write(model, state, shown, actions_in, prev, levels)


def _pending(model: DynamicsModel, state: RolloutState) -> tuple[Tensor, Tensor, Tensor | None]:
    """The pending frames' inputs (B, F, C, H, W) and actions (B, F), and the inputs before
    them (B, K, C, H, W; None: zeros)."""
    n = state.pending
    before = _before(state.inputs, len(state.inputs) - n, _history(model))
    return _stack(state.inputs, n), _stack(state.actions_in, n), before


@torch.inference_mode()
def flush(model: DynamicsModel, state: RolloutState, levels: ContextLevels) -> None:
    """Write the pending frames' keys/values to the cache in a call of their own."""
    if not state.pending or state.cache is None:
        return
    x, actions_in, before = _pending(model, state)
    _write(model, state, x, actions_in, before, levels)
    state.pending = 0


def prime(
    model: DynamicsModel,
    state: RolloutState,
    latents: Tensor,
    actions_in: Tensor,
    policy: ContextPolicy,
    schedule: str = "linear",
) -> None:
    """Start a rollout from real frames: latents (B, P, C, H, W) and the actions leading into
    them (B, P); the first is normally ``model.start_action``, as for the first frame of every
    training clip."""
    if state.clean or state.next_frame:
        raise ValueError("prime() starts a rollout: use a new state (new_state)")
    commit(model, state, latents, actions_in, policy, schedule)


def truncate_context(state: RolloutState, keep: int) -> None:
    """Forget all but the last ``keep`` context frames (chunked generation conditioned on the
    last k frames only); the cache is rebuilt from them at its next use."""
    for q in (state.clean, state.actions_in, state.inputs):
        while len(q) > keep:
            q.popleft()
    state.cache_levels = None
    state.pending = 0


# -- one model evaluation ---------------------------------------------------------------------
def _reference(model: DynamicsModel, state: RolloutState, x: Tensor, count: int) -> Tensor | None:
    """What head 1 adds its output to, for a call of ``count`` context frames then the new
    frame x (B, 1, C, H, W): the newest committed clean latent (zeros before the first
    frame, as in training). None: the model's own default (each frame's previous input)."""
    if not model.cfg.clean_residual:
        return None
    last = _last(state.clean)
    last = torch.zeros_like(x[:, 0]) if last is None else last.to(x.dtype)
    # The context frames' outputs are discarded: zeros stand in for their references.
    return torch.cat([x.new_zeros((x.shape[0], count, *x.shape[2:])), last.unsqueeze(1)], dim=1)


def predict(
    model: DynamicsModel,
    state: RolloutState,
    x: Tensor,
    tau: Tensor,
    actions_in: Tensor,
    target: float,
    policy: ContextPolicy,
    schedule: str = "linear",
) -> Tensor:
    """Head 1's output for the new frames x (B, T, C, H, W) at levels tau (B, T), which come
    right after the committed ones; ``target``: the level that sets a ``dynamic`` context."""
    if state.cache is not None and not policy.recomputes_context:
        levels = policy.committed
        _sync_inputs(state, levels, schedule)
        _sync_cache(model, state, levels)
        if not state.pending:
            return model.trunk(
                x,
                tau,
                actions_in,
                context_level=_context_level(model, x, levels.label),
                start_frame=state.next_frame,
                cache=state.cache,
                commit=False,
                prev=_before(state.inputs, len(state.inputs), _history(model)),
                reference=_reference(model, state, x, 0),
            ).main
        # The pending frames lead the call, and only they are committed.
        done, done_actions, before = _pending(model, state)
        n = state.pending
        full = torch.cat([done, x], dim=1)
        out = model.trunk(
            full,
            torch.cat([tau.new_full(done.shape[:2], levels.label), tau], dim=1),
            torch.cat([done_actions, actions_in], dim=1),
            context_level=_context_level(model, full, levels.label),
            start_frame=state.next_frame - n,
            cache=state.cache,
            commit=True,
            commit_frames=n,
            prev=before,
            reference=_reference(model, state, x, n),
        )
        state.pending = 0
        return out.main[:, n:]
    # Recompute the context with the new frames. A window of W frames sees W-1 past frames.
    full_history = state.clean.maxlen is None
    count = len(state.clean) if full_history else min(len(state.clean), model.cfg.window - 1)
    levels = policy(target)
    # The frames before the window, for models that stack earlier frames on their input.
    start = len(state.clean) - count
    prev = None
    if policy.recomputes_context:
        ctx = x[:, :0]
        if count:
            ctx = noised(_stack(state.clean, count), levels.noise, state.generator, schedule)
        stacked = _before(state.clean, start, _history(model))
        if stacked is not None and (model.cfg.prev_frame_input or model.cfg.residual_output):
            prev = noised(stacked, levels.noise, state.generator, schedule)
    else:
        _sync_inputs(state, levels, schedule)
        ctx = _stack(state.inputs, count) if count else x[:, :0]
        prev = _before(state.inputs, start, _history(model))
    labels = tau.new_full((tau.shape[0], count), levels.label)
    past_actions = _stack(state.actions_in, count) if count else actions_in[:, :0]
    full = torch.cat([ctx, x], dim=1)
    out = model.trunk(
        full,
        torch.cat([labels, tau], dim=1),
        torch.cat([past_actions, actions_in], dim=1),
        context_level=_context_level(model, full, levels.label),
        start_frame=state.next_frame - count,
        prev=prev,
        reference=_reference(model, state, x, count),
    )
    return out.main[:, count:]


# -- chunks and rollouts ----------------------------------------------------------------------
@torch.inference_mode()
def sample_chunk(
    model: DynamicsModel,
    state: RolloutState,
    actions_in: Tensor,
    levels: Tensor,
    policy: ContextPolicy,
    *,
    sampler: str = "ddim",
    prediction: str = "v",
    schedule: str = "linear",
    guidance: float = 1.0,
    on_frame: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """Generate F frames after the committed ones, along ``levels`` (R, F) (row 0 all 1, last
    row all 0, columns non-increasing), with the actions leading into them (B, F).
    ``guidance`` != 1: classifier-free guidance on the actions (``SamplingConfig``).

    Frames are committed as soon as they and all frames before them are clean (so a pyramid's
    finished frames become cached context while later ones are still denoising), and frames
    that have not started yet are left out of the model call (the model is causal: they cannot
    affect earlier frames). ``on_frame(index, latent (B, C, H, W))`` sees each committed frame.
    Returns the clean latents (B, F, C, H, W).
    """
    levels = levels.detach().cpu().float()
    rows, frames = levels.shape
    batch = actions_in.shape[0]
    if actions_in.shape[1] != frames:
        raise ValueError(f"{frames} frames scheduled but {actions_in.shape[1]} actions given")
    if not bool((levels[0] == 1).all()) or not bool((levels[-1] == 0).all()):
        raise ValueError("a level matrix must start at 1 (pure noise) and end at 0 (clean)")
    if bool((levels[1:] > levels[:-1]).any()):
        raise ValueError("noise levels must not increase along a frame's column")
    if frames > 1 and model.cfg.clean_residual:
        raise ValueError(
            "model.residual_reference='clean' needs each frame's predecessor finished before it "
            f"starts: sample one frame at a time (sampling.scheduling=autoregressive), not {frames}"
        )
    if guidance != 1:
        free_actions = torch.full_like(actions_in, model.null_action)
    cfg = model.cfg
    device = _device(model)
    x = torch.randn(
        (batch, frames, cfg.latent_channels, *cfg.latent_size),
        generator=state.generator,
        device=device,
    )
    done = 0  # frames [0, done) of the chunk are committed
    for m in range(rows - 1):
        cur, nxt = levels[m], levels[m + 1]
        started = ((cur < 1) | (cur > nxt)).nonzero()
        if len(started):
            end = int(started.max()) + 1  # frames past `end` are still pure noise: left out
            active = slice(done, end)

            def call(xa: Tensor, tau: Tensor, target: float, active=active) -> Tensor:
                given = predict(
                    model, state, xa, tau, actions_in[:, active], target, policy, schedule
                )
                if guidance == 1:
                    return given
                # The same frames told no action; the context keeps its true actions. (The
                # first call has written any pending keys/values: this one only reads.)
                free = predict(
                    model, state, xa, tau, free_actions[:, active], target, policy, schedule
                )
                return free + guidance * (given - free)

            x[:, active] = denoise_row(
                call,
                x[:, active],
                cur[active],
                nxt[active],
                sampler=sampler,
                prediction=prediction,
                schedule=schedule,
            )
        finished = done
        while finished < frames and nxt[finished] == 0:
            finished += 1
        if finished > done:
            new = slice(done, finished)
            first = state.next_frame
            commit(model, state, x[:, new], actions_in[:, new], policy, schedule)
            if on_frame is not None:
                for i in range(done, finished):
                    on_frame(first + i - done, x[:, i])
            done = finished
    return x


@torch.inference_mode()
def generate(
    model: DynamicsModel,
    state: RolloutState,
    actions_in: Tensor,
    cfg: SamplingConfig,
    *,
    prediction: str = "v",
    schedule: str = "linear",
    context_level: float = 0.02,
    on_frame: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """G new frames (B, G, C, H, W) after the committed ones, given the actions leading into
    them (B, G), scheduled and sampled as ``cfg`` says. ``prediction``, ``schedule`` and
    ``context_level`` come from the model's objective config (``cfg.context_level``, when set,
    takes the place of the last)."""
    cfg.validate()
    policy = cfg.policy(context_level)
    out = []
    start = 0
    limit_context = cfg.chunk_context and cfg.scheduling in ("chunked", "pyramid")
    for size in plan_chunks(actions_in.shape[1], cfg.scheduling, cfg.chunk):
        if limit_context and start and state.context_frames > cfg.chunk_context:
            truncate_context(state, cfg.chunk_context)
        levels = chunk_levels(cfg.scheduling, size, cfg.steps, cfg.shift, cfg.pyramid_lag)
        out.append(
            sample_chunk(
                model,
                state,
                actions_in[:, start : start + size],
                levels,
                policy,
                sampler=cfg.sampler,
                prediction=prediction,
                schedule=schedule,
                guidance=cfg.action_guidance,
                on_frame=on_frame,
            )
        )
        start += size
    return torch.cat(out, dim=1)


# -- the far heads' sketch --------------------------------------------------------------------
@torch.inference_mode()
def far_head_predictions(
    model: DynamicsModel,
    state: RolloutState,
    future_actions: Tensor,
    policy: ContextPolicy,
) -> dict[int, Tensor]:
    """What the far heads predict from the newest committed frame n: head k sees frames <= n
    and predicts frame n + k - 1 as a clean latent pooled by r_k, {k: (B, C, H/r_k, W/r_k)}.

    ``future_actions`` (B, >= K_max - 1): a_n, a_n+1, ... (the actions taken after frame n,
    n+1, ...). The far heads attend over positions within one call, so this runs the last W
    committed frames (at the policy's committed levels) uncached: one extra window per call.
    """
    if model.heads is None:
        return {}
    if model.heads.frame_mode:
        raise ValueError("far heads in action_mode 'frame' read true future frames: no sketch")
    need = model.cfg.heads.max_offset - 1
    if future_actions.shape[1] < need:
        raise ValueError(f"far heads need {need} future actions, got {future_actions.shape[1]}")
    count = len(state.clean)
    if count == 0:
        raise ValueError("no committed frame to predict from")
    # The context as committed where the state holds it; else clean at the committed label.
    # No noise is drawn, so showing the sketch does not change the rollout.
    levels = policy.committed
    synced = state.input_levels == levels and len(state.inputs) == count
    ctx = _stack(state.inputs if synced else state.clean, count)
    tau = ctx.new_full(ctx.shape[:2], levels.label)
    actions_in = _stack(state.actions_in, count)
    out = model.trunk(
        ctx,
        tau,
        actions_in,
        context_level=_context_level(model, ctx, levels.label),
        start_frame=state.next_frame - count,
        keep_branch=True,
    )
    # The heads read a_t .. a_{t+k-2} at position t: a_t of a context frame is the action
    # leading into the next one.
    actions_after = torch.cat([actions_in[:, 1:], future_actions[:, :need]], dim=1)
    far = model.heads(out.branch, out.cond, actions_after)
    return {k: pred[:, -1] for k, pred in far.items()}
