"""Dynamics backbone: a causal space-time transformer over latent clips, plus its heads.

Input: noisy latents x (B, T, C, H, W), a noise level per frame tau (B, T), and the action
leading into each frame. Each frame is cut into p x p patches (N tokens of width D); each block
runs spatial attention (within a frame), temporal attention (per spatial position, causal over
frames t-W+1 .. t, RoPE on absolute frame indices) and an MLP, all modulated (adaLN-Zero) by the
per-frame conditioning

    c_t = emb(tau_t) + emb(a_{t-1})  [+ emb(ctx_t) with context_level_embed]

with a learned start embedding in place of a_{-1}, and ctx_t the context level (see
``ObjectiveConfig.context_level``). Position t therefore sees frames <= t only, frame t itself
at noise level tau_t.

With ``prev_frame_input`` each frame's tokens also embed the previous frame's input latent
(as the model is shown it: noisy, or context-noised in a rollout; zeros before the first
frame), as DIAMOND and GameNGen stack their context on the input channels; with
``prev_frame_kernel`` k > 1 a token embeds the k x k tokens' worth of the previous frame
around it (a strided convolution). "Copy the last frame, moved as the action says" is then a
local map from the first layer on, instead of a path through a zero-gated temporal attention
followed by a spatial one. ``prev_frame_count`` K > 1 embeds frames t-2 .. t-K the same way
(one embedding per lag): two positions of a moving object give its velocity.

Head 1 (the denoising head) is the final layer after the last block; its output is whatever
the objective trains it for (v or x0). With ``residual_output`` it is added to the previous
frame, and with ``shift_reference`` S to the previous frame moved by a mix of whole-frame
shifts the trunk chooses (a softmax over Q = (2S+1)^2 integer shifts: a scrolling view's
move). The far heads (``heads.py``) branch after block L_b. With ``object_channels`` K, an
object head (a linear map of the last block's tokens) gives K maps on the latent grid for
training-time supervision (``objective.object_maps``); rollouts never compute it.

Two entry points:
    forward(x, tau, actions, clean=...)   training: whole clip, head 1 + far heads
    trunk(x, tau, actions_in, cache=...)   rollout: head 1 only; with a KVCache, frames may
                                           come one (or a few) at a time, same outputs.

Dimension legend:
    B batch, T frames in this call, Ta action frames, N tokens per frame (gh * gw),
    H W latent grid, C latent channels, p patch, D width, L_b branch block, W window,
    Q whole-frame shifts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from farsight.dynamics_config import DynamicsConfig
from farsight.models.heads import MultiFrameHeads
from farsight.models.layers import (
    FinalLayer,
    FrameKVRing,
    NeighbourhoodEmbed,
    NoiseLevelEmbed,
    PatchEmbed,
    SpaceTimeBlock,
    init_weights,
    sincos_2d,
    two_stream_mask,
    unpatchify,
)


def actions_into_frames(actions: Tensor, start: int) -> Tensor:
    """a_t (taken after frame t) -> the action leading into frame t, a_{t-1}; ``start`` for
    frame 0. (B, T) -> (B, T)."""
    first = torch.full_like(actions[:, :1], start)
    return torch.cat([first, actions[:, :-1]], dim=1)


def previous_frames(latents: Tensor, prev: Tensor | None, lag: int = 1) -> Tensor:
    """The frame ``lag`` frames before each frame of a call, (B, T, C, H, W). ``prev``: the
    inputs before the call's first frame, (B, C, H, W) for one or (B, K, C, H, W) oldest
    first; frames before those (or all of them, None) are zeros, as before the first frame
    of a training clip."""
    b, t = latents.shape[:2]
    if prev is None:
        prev = latents[:, :0]
    elif prev.ndim == latents.ndim - 1:
        prev = prev.unsqueeze(1)
    prev = prev[:, prev.shape[1] - min(lag, prev.shape[1]) :].to(latents.dtype)
    pad = latents.new_zeros((b, lag - prev.shape[1], *latents.shape[2:]))
    return torch.cat([pad, prev, latents], dim=1)[:, :t]


class KVCache:
    """Temporal keys and values of the last W committed frames, one ring per block.

    A frame's entries are written when it is processed with ``commit=True`` (e.g. once it is
    final, at its context noise level); calls with ``commit=False`` (denoising steps of the
    frame being generated) only read. Reads only see frames before the first frame of the
    call, so re-processing a committed frame index starts from its past, not from itself.
    (A new frame needs only W - 1 past frames; the W-th slot lets a committed frame be
    re-processed with its full window.)
    """

    def __init__(self, depth: int, window: int):
        self.window = window
        self.rings = [FrameKVRing(window) for _ in range(depth)]

    def reset(self) -> None:
        for ring in self.rings:
            ring.keys = ring.values = ring.frames = None

    @property
    def next_frame(self) -> int:
        """One past the newest committed frame (0 when empty)."""
        frames = self.rings[0].frames if self.rings else None
        return 0 if frames is None else int(frames.max()) + 1


@dataclass
class TrunkOutput:
    main: Tensor
    """Head 1: (B, T, C, H, W)."""
    cond: Tensor
    """Per-frame conditioning c_t (B, T, D)."""
    branch: Tensor | None = None
    """Hidden state after block L_b (B, T, N, D), when asked for."""
    objects: Tensor | None = None
    """The object head's maps (B, T, K, H, W), when asked for."""


@dataclass
class DynamicsOutput:
    main: Tensor
    """Head 1 at every position: (B, T, C, H, W)."""
    far: dict[int, Tensor] = field(default_factory=dict)
    """Far head k: (B, T, C, H / r_k, W / r_k), position t predicting frame t + k - 1."""
    objects: Tensor | None = None
    """The object head's maps (B, T, K, H, W) (``object_channels`` > 0), else None."""


RENAMED_MODULES = {"ctx_noise_embed.": "context_level_embed."}
"""Submodules with a new name (old -> new): weights stored under the old name load into the
new one (``model.*`` keys of ``farsight.config.RENAMED_KEYS`` name the modules they build)."""


def shift_kernels(s: int, channels: int) -> Tensor:
    """(Q C, C, 2s+1, 2s+1) convolution kernels, Q = (2s+1)^2: output block q copies every
    channel from the cell (q // (2s+1) - s, q % (2s+1) - s) away (rows, columns)."""
    side = 2 * s + 1
    kernels = torch.zeros(side * side, channels, channels, side, side)
    for q in range(side * side):
        kernels[q, :, :, q // side, q % side] = torch.eye(channels)
    return rearrange(kernels, "q o i y x -> (q o) i y x")


class DynamicsModel(nn.Module):
    def __init__(self, cfg: DynamicsConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        d, p, c = cfg.width, cfg.patch, cfg.latent_channels
        self.grid = cfg.token_grid
        self.branch_index = cfg.branch_index()
        self.input_embed = PatchEmbed(c, p, d)
        self.prev_embed = None
        if cfg.prev_frame_input:
            maps = cfg.action_rows if cfg.prev_frame_per_action else 1
            self.prev_embed = NeighbourhoodEmbed(c, p, cfg.prev_frame_kernel, d, maps)
        # Frames t-2 .. t-K (``prev_frame_count``), one embedding per lag.
        self.older_embeds = None
        if cfg.prev_frame_count > 1:  # validate(): only with prev_frame_input
            self.older_embeds = nn.ModuleList(
                NeighbourhoodEmbed(c, p, cfg.prev_frame_kernel, d)
                for _ in range(cfg.prev_frame_count - 1)
            )
        self.register_buffer("pos_embed", sincos_2d(self.grid, d), persistent=False)
        self.noise_embed = NoiseLevelEmbed(d)
        # Rows: the actions, the clip start, then the null action (``null_action``).
        self.action_embed = nn.Embedding(cfg.action_rows, d)
        # Per-token action input: the same vector added to every token of the frame the action
        # leads into, so the first blocks can combine it with what each token holds.
        self.action_tokens = nn.Embedding(cfg.action_rows, d) if cfg.action_input else None
        self.context_level_embed = NoiseLevelEmbed(d) if cfg.context_level_embed else None
        rope = self.grid if cfg.spatial_rope else None
        self.blocks = nn.ModuleList(
            SpaceTimeBlock(d, cfg.num_heads, cfg.mlp_ratio, cfg.window, cfg.qk_norm, rope)
            for _ in range(cfg.depth)
        )
        self.final = FinalLayer(d, p * p * cfg.output_channels)
        k = cfg.object_channels
        self.object_head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, p * p * k)) if k else None
        self.heads = MultiFrameHeads(cfg) if cfg.heads.far_offsets else None
        s = cfg.shift_reference
        self.shift_head = None
        if s:
            shifts = (2 * s + 1) ** 2
            self.shift_head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, shifts))
            kernels = shift_kernels(s, c)
            if cfg.shift_learned:
                self.shift_kernels = nn.Parameter(kernels)
            else:
                self.register_buffer("shift_kernels", kernels, persistent=False)
        init_weights(self)
        if self.shift_head is not None:
            # Copy by default: the unshifted reference holds 0.9 of the mix at the start.
            nn.init.zeros_(self.shift_head[1].weight)
            nn.init.zeros_(self.shift_head[1].bias)
            with torch.no_grad():
                self.shift_head[1].bias[shifts // 2] = math.log(0.9 * (shifts - 1) / 0.1)
        if self.object_head is not None:
            # Maps start empty (relative error 1), so the head's first steps do not throw the
            # trunk about with random maps many times the targets' size.
            nn.init.zeros_(self.object_head[1].weight)
        for table in (self.action_embed, self.action_tokens):
            if table is not None:
                nn.init.normal_(table.weight, std=cfg.action_embed_std)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # torch's per-module step of load_state_dict: move weights of renamed submodules first.
        for old, new in RENAMED_MODULES.items():
            for key in [k for k in state_dict if k.startswith(prefix + old)]:
                state_dict[prefix + new + key[len(prefix + old) :]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def start_action(self) -> int:
        """Index standing in for the action leading into the first frame of a clip."""
        return self.cfg.num_actions

    @property
    def null_action(self) -> int:
        """Index meaning "no action given" (``null_action`` models only)."""
        if not self.cfg.null_action:
            raise ValueError("this model has no null action (model.null_action=false)")
        return self.cfg.num_actions + 1

    def new_cache(self) -> KVCache:
        return KVCache(self.cfg.depth, self.cfg.window)

    def embed(
        self,
        latents: Tensor,
        prev: Tensor | None = None,
        actions_in: Tensor | None = None,
        past: Tensor | None = None,
    ) -> Tensor:
        """(B, T, C, H, W) -> tokens (B, T, N, D) with spatial positions. With
        ``prev_frame_input`` each frame also embeds the ``prev_frame_count`` frames before it,
        taken from ``past`` (B, T, C, H, W; None: the call's own frames, ``latents``) preceded
        by ``prev`` (the inputs before the call, see ``previous_frames``; None: zeros); with
        ``prev_frame_per_action`` the previous frame through the matrix of the action leading
        into the frame, ``actions_in`` (B, T), which with ``action_input`` is also added to
        every token of its frame."""
        tokens = self.input_embed(latents)
        source = latents if past is None else past
        if self.prev_embed is not None:
            tokens = tokens + self.prev_embed(previous_frames(source, prev), actions_in)
        for lag, older in enumerate(self.older_embeds or (), start=2):
            tokens = tokens + older(previous_frames(source, prev, lag))
        if self.action_tokens is not None and actions_in is not None:
            tokens = tokens + self.action_tokens(actions_in).unsqueeze(2).to(tokens.dtype)
        return tokens + self.pos_embed.to(tokens.dtype)

    def condition(self, tau: Tensor, actions_in: Tensor, context_level: Tensor | None) -> Tensor:
        """c_t (B, T, D) from tau (B, T), the actions leading into the frames (B, T), and
        the context level (B, T) for ``context_level_embed`` (None: 0)."""
        cond = self.noise_embed(tau) + self.action_embed(actions_in)
        if self.context_level_embed is not None:
            level = tau.new_zeros(()) if context_level is None else context_level
            cond = cond + self.context_level_embed(level)
        return cond

    def trunk(
        self,
        x: Tensor,
        tau: Tensor,
        actions_in: Tensor,
        *,
        context_level: Tensor | None = None,
        start_frame: int = 0,
        cache: KVCache | None = None,
        commit: bool = False,
        keep_branch: bool = False,
        prev: Tensor | None = None,
        commit_frames: int | None = None,
        reference: Tensor | None = None,
        objects: bool = False,
    ) -> TrunkOutput:
        """Run the trunk and head 1.

        x (B, T, C, H, W) frames ``start_frame .. start_frame + T - 1`` at noise levels tau
        (B, T); actions_in (B, T): the action leading into each frame (``start_action`` for
        the first frame of an episode or clip); context_level (B, T): the context level, embedded
        with ``context_level_embed`` (None: 0). With ``cache``, the frames also attend to the
        cache's committed earlier frames, and are committed to it only if ``commit`` (pass it
        once a frame is final, not on every denoising step). ``prev`` (B, C, H, W) or
        (B, K, C, H, W): the inputs of frames ``start_frame - K .. start_frame - 1`` as they
        were shown to the model, for ``prev_frame_input`` and ``residual_output`` (None:
        zeros, as before the first frame of a training clip). ``commit_frames``: commit
        only the call's first frames (None: all), so finished frames can be committed in the
        same call as the first denoising step of the next (causal: the later frames cannot
        change their keys and values). ``reference`` (B, T, C, H, W): what ``residual_output``
        adds head 1's output to (None: each frame's previous input). ``objects``: also the
        object head's maps.
        """
        cond = self.condition(tau, actions_in, context_level)
        frames = torch.arange(start_frame, start_frame + x.shape[1], device=x.device)
        before = previous_frames(x, prev)
        h = self.embed(x, prev, actions_in=actions_in)
        branch = None
        for i, block in enumerate(self.blocks):
            ring = cache.rings[i] if cache is not None else None
            h = block(h, cond, frames, ring, commit, commit_frames=commit_frames)
            if keep_branch and i + 1 == self.branch_index:
                branch = h
        base = before if reference is None else reference
        return TrunkOutput(
            main=self.head_one(h, cond, base),
            cond=cond,
            branch=branch,
            objects=self.object_maps(h) if objects else None,
        )

    def head_one(self, h: Tensor, cond: Tensor, base: Tensor) -> Tensor:
        """Head 1 (B, T, C, H, W) from the last block's tokens; with ``residual_output`` added
        to ``base`` (B, T, C, H, W): each frame's previous input, or the caller's reference
        (with ``shift_reference``, moved by the mix of shifts the tokens choose)."""
        main = unpatchify(self.final(h, cond), self.grid, (self.cfg.patch, self.cfg.patch))
        if not self.cfg.residual_output:
            return main
        base = base.to(main.dtype)
        if self.shift_head is not None:
            base = self.shifted(base, h)
        return main + base

    def shift_weights(self, h: Tensor) -> Tensor:
        """(B, T, Q) the mix of whole-frame shifts (``shift_reference``) from the last block's
        tokens h (B, T, N, D); index q is the shift (q // (2S+1) - S, q % (2S+1) - S) in
        (rows, columns) of where each cell reads from."""
        return self.shift_head(h.mean(2)).float().softmax(-1)

    def shifted(self, base: Tensor, h: Tensor) -> Tensor:
        """base (B, T, C, H, W) moved by the mix ``shift_weights(h)`` of the shifts (or, with
        ``shift_learned``, of the learned maps that start as them); with ``shift_hard`` by the
        shift of largest weight alone, its gradient the mix's (straight-through)."""
        b = base.shape[0]
        s = self.cfg.shift_reference
        kernels = self.shift_kernels.to(base.dtype)
        # every shift's copy of every frame at once, zeros past the edge: (B T, Q C, H, W)
        moved = F.conv2d(rearrange(base, "b t c h w -> (b t) c h w"), kernels, padding=s)
        moved = rearrange(moved, "(b t) (q c) h w -> b t q c h w", b=b, c=base.shape[2])
        weights = self.shift_weights(h)
        if self.cfg.shift_hard:
            chosen = F.one_hot(weights.argmax(-1), weights.shape[-1]).to(weights.dtype)
            weights = chosen + weights - weights.detach()
        weights = weights.to(base.dtype)
        return torch.einsum("btqchw,btq->btchw", moved, weights)

    def object_maps(self, h: Tensor) -> Tensor:
        """The object head's maps (B, T, K, H, W) from the last block's tokens."""
        if self.object_head is None:
            raise ValueError("this model has no object head (model.object_channels=0)")
        return unpatchify(self.object_head(h), self.grid, (self.cfg.patch, self.cfg.patch))

    def trunk_teacher_forced(
        self,
        x: Tensor,
        tau: Tensor,
        context: Tensor,
        context_levels: Tensor,
        actions_in: Tensor,
        *,
        context_level: Tensor | None = None,
        keep_branch: bool = False,
        reference: Tensor | None = None,
        objects: bool = False,
    ) -> TrunkOutput:
        """Every frame of a clip denoised with a clean(-ish) past, in one pass.

        x (B, T, C, H, W) noisy frames at tau (B, T); context (B, T, C, H, W) the same frames
        as a rollout would have committed them, each at its level in context_levels (B, T),
        which is also what the context stream's conditioning embeds as tau; context_level
        (B, T) as in ``trunk``, for both streams. The trunk runs both
        streams side by side (``two_stream_mask``): noisy frame t sees context frames < t and
        itself, so its output equals ``trunk`` on context frames 0..t-1 followed by x_t (a
        test checks this). Head 1 and the branch are those of the noisy stream.
        """
        t = x.shape[1]
        cond_ctx = self.condition(context_levels, actions_in, context_level)
        cond = self.condition(tau, actions_in, context_level)
        before = previous_frames(context, None)
        h = torch.cat(
            [
                self.embed(context, actions_in=actions_in),
                self.embed(x, actions_in=actions_in, past=context),
            ],
            dim=1,
        )
        both = torch.cat([cond_ctx, cond], dim=1)
        steps = torch.arange(t, device=x.device)
        frames = torch.cat([steps, steps])
        mask = two_stream_mask(t, self.cfg.window, x.device)
        branch = None
        for i, block in enumerate(self.blocks):
            h = block(h, both, frames, mask=mask)
            if keep_branch and i + 1 == self.branch_index:
                branch = h[:, t:]
        base = before if reference is None else reference
        h = h[:, t:]
        return TrunkOutput(
            main=self.head_one(h, cond, base),
            cond=cond,
            branch=branch,
            objects=self.object_maps(h) if objects else None,
        )

    def forward(
        self,
        x: Tensor,
        tau: Tensor,
        actions: Tensor,
        *,
        clean: Tensor | None = None,
        context_level: Tensor | None = None,
        heads: bool = True,
        context: Tensor | None = None,
        context_levels: Tensor | None = None,
        reference: Tensor | None = None,
    ) -> DynamicsOutput:
        """Training forward over whole clips.

        x (B, T, C, H, W) noisy input frames, tau (B, T); actions (B, Ta >= T) with a_t taken
        after frame t (the far heads read a_t .. a_{t+k-2}, so Ta reaches past the input
        frames when the clip carries extra target frames); clean (B, Tf, C, H, W) the clean
        latents, needed by ``frame`` action mode only; context_level (B, T) the context level
        for ``context_level_embed`` (None: 0). With ``context`` (B, T, C, H, W) at
        ``context_levels`` (B, T), each noisy frame's past is
        the context stream instead (teacher forcing, ``trunk_teacher_forced``). ``reference``
        (B, T, C, H, W): what ``residual_output`` adds head 1's output to (None: each frame's
        previous input).
        """
        t = x.shape[1]
        actions_in = actions_into_frames(actions[:, :t], self.start_action)
        use_heads = heads and self.heads is not None
        objects = self.object_head is not None
        if context is not None:
            if context_levels is None:
                raise ValueError("context=... needs context_levels=... (its noise levels)")
            out = self.trunk_teacher_forced(
                x,
                tau,
                context,
                context_levels,
                actions_in,
                context_level=context_level,
                keep_branch=use_heads,
                reference=reference,
                objects=objects,
            )
        else:
            out = self.trunk(
                x,
                tau,
                actions_in,
                context_level=context_level,
                keep_branch=use_heads,
                reference=reference,
                objects=objects,
            )
        far = {}
        if use_heads:
            frame_tokens = None
            if self.heads.frame_mode:
                if clean is None:
                    raise ValueError("action_mode 'frame' needs clean=... (the clean latents)")
                # Head k at position t reads frame t + k - 2 <= T + K_max - 3.
                n = t + self.cfg.heads.max_offset - 2
                frame_actions = actions_into_frames(actions[:, :n], self.start_action)
                frame_tokens = self.embed(clean[:, :n], actions_in=frame_actions)
            far = self.heads(out.branch, out.cond, actions, frame_tokens)
        return DynamicsOutput(main=out.main, far=far, objects=out.objects)

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every head's loss reaches: embeddings and the blocks before the branch."""
        shared = [
            self.input_embed,
            self.prev_embed,
            self.older_embeds,
            self.noise_embed,
            self.action_embed,
            self.action_tokens,
            self.context_level_embed,
        ]
        shared += list(self.blocks[: self.branch_index])
        return [p for m in shared if m is not None for p in m.parameters()]
