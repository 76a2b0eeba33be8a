"""Layers shared by the dynamics trunk and the multi-frame heads.

Everything here is a pure function of its inputs: no noise sampling, no losses.

Dimension legend:
    B batch, T time (frames in this call), S key frames (cached + new), N tokens per frame,
    gh gw token grid (N = gh * gw), H W latent grid, C latent channels, p patch size,
    D width, h attention heads, Dh head width (D / h), F sinusoid features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import Tensor, nn

# --- normalisation and conditioning ----------------------------------------------------------


class RMSNorm(nn.Module):
    """RMS normalisation over the last axis, in fp32 (bf16 sums of squares drift). Used where
    the design names it (the ``frame`` heads' input norms); the blocks use ``layer_norm``."""

    def __init__(self, dim: int, eps: float = 1e-6, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        out = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)
        return out * self.weight.to(x.dtype) if self.weight is not None else out


def layer_norm(dim: int, affine: bool = False) -> nn.LayerNorm:
    """LayerNorm: the pre-norm of the adaLN blocks (as in DiT) and the QK-norm (as in
    ViT-22B). Chosen over RMSNorm for speed: on CPU it is one fused kernel forward and
    backward, about 4x faster than RMSNorm's decomposed ops at these sizes."""
    return nn.LayerNorm(dim, eps=1e-6, elementwise_affine=affine, bias=False)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x (B, T, N, D) with per-frame shift, scale (B, T, 1, D)."""
    return torch.addcmul(shift, x, 1 + scale)


def gated(x: Tensor, gate: Tensor, branch: Tensor) -> Tensor:
    """Residual update x + gate * branch in one kernel; gate (B, T, 1, D)."""
    return torch.addcmul(x, gate, branch)


class AdaLNModulation(nn.Module):
    """Per-frame conditioning c (B, T, D) -> ``chunks`` vectors (B, T, 1, D).

    Zero-initialised (``init_weights``), so every modulated residual branch starts closed: the
    adaLN-Zero trick of DiT that makes a deep stack start as the identity.
    """

    def __init__(self, cond_dim: int, dim: int, chunks: int):
        super().__init__()
        self.chunks = chunks
        self.linear = nn.Linear(cond_dim, chunks * dim)

    def forward(self, cond: Tensor) -> tuple[Tensor, ...]:
        out = self.linear(F.silu(cond)).unsqueeze(2)  # (B, T, 1, chunks * D)
        return out.chunk(self.chunks, dim=-1)


def sinusoidal_features(values: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """values (...) float -> (..., dim) sin/cos features at geometric frequencies."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half
    )
    angles = values.float().unsqueeze(-1) * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class NoiseLevelEmbed(nn.Module):
    """Noise level tau in [0, 1] (B, T) -> (B, T, D). tau is scaled by 1000 so the sinusoids
    resolve the small levels the context lives at (0.005 .. 0.02)."""

    def __init__(self, dim: int, features: int = 256):
        super().__init__()
        self.features = features
        self.mlp = nn.Sequential(nn.Linear(features, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, tau: Tensor) -> Tensor:
        feats = sinusoidal_features(tau * 1000.0, self.features)
        return self.mlp(feats.to(self.mlp[0].weight.dtype))


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        # Exact (erf) GELU: on CPU about 3x faster than the tanh approximation.
        return self.fc2(F.gelu(self.fc1(x)))


# --- attention ---------------------------------------------------------------------------


def rope_angles(positions: Tensor, width: int, base: float) -> tuple[Tensor, Tensor]:
    """cos and sin (T, width / 2) of the rotary angles of positions (T,), in float32.

    Angles in float64: frame indices of long rollouts times the fastest frequency must not
    round. Computed once per call (temporal) or once per model (the spatial grid), not once
    per query and key: a one-frame rollout step is dominated by such small ops."""
    half = width // 2
    freqs = base ** (-torch.arange(half, device=positions.device, dtype=torch.float64) / half)
    angles = positions.to(torch.float64).unsqueeze(-1) * freqs
    return angles.cos().float(), angles.sin().float()


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (..., T, Dh) rotated by the angles whose cos and sin are (T, Dh / 2): each pair
    (x[i], x[i + Dh/2]) turned by angle i."""
    return _rotate_parts(x, [(cos, sin)])


def _rotate_parts(x: Tensor, parts: list[tuple[Tensor, Tensor]]) -> Tensor:
    """x (..., T, Dh) cut into len(parts) equal parts along Dh, each rotated as ``rotate``
    does by its own (cos, sin) (T, Dh / (2 * parts)).

    As x * [cos, cos] + swap(x) * [-sin, sin] over the whole width (swap exchanging the two
    halves of each part): a few kernels, where half-by-half arithmetic takes a dozen small
    ones per part, which dominated the step time at these widths."""
    c = torch.cat([t for cos, _ in parts for t in (cos, cos)], -1).to(x.dtype)
    s = torch.cat([t for _, sin in parts for t in (-sin, sin)], -1).to(x.dtype)
    return _Rotation.apply(x, c, s, len(parts))


def _turn(x: Tensor, c: Tensor, s: Tensor, parts: int) -> Tensor:
    # roll by one along the (2,) axis swaps the halves: several times faster than flip on CPU.
    halves = x.unflatten(-1, (parts, 2, -1)).roll(1, -2).flatten(-3)
    return torch.addcmul(x * c, halves, s)


class _Rotation(torch.autograd.Function):
    """``_turn`` with its gradient as the inverse rotation (the angles negated) of a
    contiguous copy of the incoming gradient: attention's matmul backward hands the queries'
    and keys' gradients over in transposed layouts, in which autograd's element-wise
    backward of the same formula ran several times slower."""

    @staticmethod
    def forward(x: Tensor, c: Tensor, s: Tensor, parts: int) -> Tensor:
        return _turn(x, c, s, parts)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, c, s, parts = inputs
        ctx.save_for_backward(c, s)
        ctx.parts = parts

    @staticmethod
    def backward(ctx, grad: Tensor):
        c, s = ctx.saved_tensors
        return _turn(grad.contiguous(), c, -s, ctx.parts), None, None, None


TIME_ROPE_BASE = 10_000.0


def rope_time(x: Tensor, frames: Tensor, base: float = TIME_ROPE_BASE) -> Tensor:
    """Rotary position embedding over time. x (..., T, Dh), frames (T,) absolute indices.

    Absolute indices (not 0..T-1 of the call) make a key computed once and cached score the
    same against a later query as it would in a full-clip forward.
    """
    return rotate(x, *rope_angles(frames, x.shape[-1], base))


def temporal_mask(query_frames: Tensor, key_frames: Tensor, window: int) -> Tensor:
    """Boolean (T, S): query frame t may see key frame s iff t - window < s <= t.

    Key slots marked -1 (empty cache slots) are never seen; each query sees at least itself.
    """
    q = query_frames.unsqueeze(1)
    k = key_frames.unsqueeze(0)
    return (k >= 0) & (k <= q) & (k > q - window)


def two_stream_mask(frames: int, window: int, device=None) -> Tensor:
    """Boolean (2T, 2T) temporal mask of a teacher-forced clip laid out as T context frames
    followed by the same T frames noisy.

    Context frame t sees context frames t-W+1 .. t (the ordinary causal window); noisy frame t
    sees context frames t-W+1 .. t-1 and itself: exactly what a rollout's new frame sees
    through the KV cache (W - 1 committed frames, then itself). So every frame of the clip is
    a denoising target with a clean past, in one forward pass.
    """
    t = torch.arange(frames, device=device)
    causal = temporal_mask(t, t, window)  # (T, T): s <= t, within the window
    strict = causal & (t.unsqueeze(1) != t.unsqueeze(0))
    eye = torch.eye(frames, dtype=torch.bool, device=device)
    none = torch.zeros_like(eye)
    top = torch.cat([causal, none], dim=1)
    bottom = torch.cat([strict, eye], dim=1)
    return torch.cat([top, bottom], dim=0)


class FrameKVRing:
    """Keys and values of the last ``capacity`` frames one temporal attention layer has seen.

    Frame f lives in slot f % capacity; ``frames`` records which absolute frame each slot holds
    (-1: empty). Slot order does not matter: keys carry their time through RoPE and the mask is
    built from ``frames``. Holds detached tensors: it is an inference structure.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.keys: Tensor | None = None  # (B*N, h, capacity, Dh)
        self.values: Tensor | None = None
        self.frames: Tensor | None = None  # (capacity,) int64

    def past(self, new_frames: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
        """Cached keys, values and frame indices, with slots not strictly before the first of
        ``new_frames`` marked empty (a tensor comparison: no host sync)."""
        if self.keys is None:
            return None
        frames = torch.where(self.frames < new_frames[0], self.frames, -1)
        return self.keys, self.values, frames

    def write(self, keys: Tensor, values: Tensor, frames: Tensor) -> None:
        if self.capacity == 0:
            return
        keys, values = keys[:, :, -self.capacity :].detach(), values[:, :, -self.capacity :]
        frames = frames[-self.capacity :]
        if self.keys is None or self.keys.shape[0] != keys.shape[0]:
            shape = (*keys.shape[:2], self.capacity, keys.shape[-1])
            self.keys = keys.new_zeros(shape)
            self.values = keys.new_zeros(shape)
            self.frames = torch.full((self.capacity,), -1, dtype=torch.long, device=keys.device)
        slots = frames % self.capacity
        self.keys[:, :, slots] = keys.to(self.keys.dtype)
        self.values[:, :, slots] = values.detach().to(self.values.dtype)
        self.frames[slots] = frames


def compute_dtype(device_type: str, fallback: torch.dtype) -> torch.dtype:
    """The dtype matmuls run in here: autocast's where it is on, else ``fallback``."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return fallback


FUSED_ROWS = 1024
"""Query rows (batch x heads x queries) below which a CPU call without autograd takes torch's
fused attention kernel: a frame of 64 tokens in 4 heads is 256."""


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention, (..., S, Dh) queries over (..., S_k, Dh) keys; ``mask``
    (S, S_k) bool, True where a query may look.

    On a CPU, where autograd records (training) or the call is large, this is the plain math:
    two batched matmuls in the compute dtype and the softmax, which accumulates bf16 in fp32
    itself. At these shapes (a frame's 64 tokens, or a window of a few frames per token, head
    width 32) torch's fused CPU kernel spends its time in per-sequence overhead, and its
    backward most of all: the math is 2 to 5 times faster forward and backward (``farsight
    bench train`` times both), and generating training contexts at a batch of 4 frames takes
    0.8x the time. Below ``FUSED_ROWS`` query rows without autograd (a rollout's one or two
    frames) the fused kernel's single call is faster, by tens of microseconds; it runs bf16
    inputs in fp32, as its bf16 kernel is several times slower at these shapes. Elsewhere
    torch's fused kernel.
    """
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    autocast = torch.is_autocast_enabled("cpu")
    training = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if not training and q.numel() < FUSED_ROWS * q.shape[-1]:
        if autocast or torch.bfloat16 in (q.dtype, k.dtype, v.dtype):
            # Autocast would cast the fp32 inputs straight back to bf16 inside the call.
            with torch.autocast("cpu", enabled=False):
                out = F.scaled_dot_product_attention(
                    q.float(), k.float(), v.float(), attn_mask=mask
                )
            return out.to(compute_dtype("cpu", v.dtype))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    dtype = compute_dtype(
        "cpu", torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    )
    with torch.autocast("cpu", enabled=False):
        scores = torch.matmul((q * q.shape[-1] ** -0.5).to(dtype), k.to(dtype).transpose(-1, -2))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return torch.matmul(torch.softmax(scores, dim=-1), v.to(dtype))


class Attention(nn.Module):
    """Multi-head attention projections (with optional QK-norm); subclasses choose the axis."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        head_dim = dim // num_heads
        self.q_norm = layer_norm(head_dim, affine=True) if qk_norm else nn.Identity()
        self.k_norm = layer_norm(head_dim, affine=True) if qk_norm else nn.Identity()

    def heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (L, S, D) -> q, k, v (L, h, S, Dh)."""
        q, k, v = rearrange(
            self.qkv(x), "l s (three h d) -> three l h s d", three=3, h=self.num_heads
        )
        return self.q_norm(q), self.k_norm(k), v

    def merge(self, out: Tensor) -> Tensor:
        return self.proj(rearrange(out, "l h s d -> l s (h d)"))


GRID_ROPE_BASE = 100.0
"""Spreads the 2D RoPE frequencies over grids of a few to a few tens of tokens."""


def grid_angles(grid: tuple[int, int], width: int, base: float = GRID_ROPE_BASE) -> Tensor:
    """(4, N, width / 4): cos and sin of the row angles, then of the column angles, of the
    N = gh * gw tokens of a grid (row-major), for heads of ``width``."""
    gh, gw = grid
    rows = torch.arange(gh).repeat_interleave(gw)
    cols = torch.arange(gw).repeat(gh)
    return _grid_angles(rows, cols, width, base)


def _grid_angles(rows: Tensor, cols: Tensor, width: int, base: float) -> Tensor:
    return torch.stack([*rope_angles(rows, width // 2, base), *rope_angles(cols, width // 2, base)])


def rotate_grid(x: Tensor, angles: Tensor) -> Tensor:
    """x (..., N, Dh) with 2D RoPE: the first half of each head's width rotated by the token's
    row, the second half by its column; angles from ``grid_angles``."""
    return _rotate_parts(x, [(angles[0], angles[1]), (angles[2], angles[3])])


def rope_grid(x: Tensor, rows: Tensor, cols: Tensor, base: float = GRID_ROPE_BASE) -> Tensor:
    """2D rotary embedding over a token grid: the first half of each head's width rotates with
    the token's row, the second half with its column. x (..., N, Dh), rows and cols (N,).

    Scores then depend on the *relative* offset between two tokens, so a query made
    action-dependent by the adaLN shift can pick "the token d cells to the left" for the
    action's d: the shift that moving the camera asks for. (Absolute position embeddings added
    at the input cannot express an action-dependent relative offset with a per-channel
    modulation.)
    """
    return rotate_grid(x, _grid_angles(rows, cols, x.shape[-1], base))


class SpatialAttention(Attention):
    """Bidirectional attention among the N tokens of each frame, optionally with 2D RoPE over
    the token grid (``grid``)."""

    def __init__(
        self, dim: int, num_heads: int, qk_norm: bool = True, grid: tuple[int, int] | None = None
    ):
        super().__init__(dim, num_heads, qk_norm)
        if grid is not None and (dim // num_heads) % 4:
            raise ValueError(f"2D RoPE needs a head width divisible by 4, got {dim // num_heads}")
        self.grid = grid
        angles = grid_angles(grid, dim // num_heads) if grid is not None else None
        self.register_buffer("rope_angles", angles, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        q, k, v = self.heads(rearrange(x, "b t n d -> (b t) n d"))
        if self.rope_angles is not None:
            q, k = rotate_grid(q, self.rope_angles), rotate_grid(k, self.rope_angles)
        out = self.merge(attend(q, k, v))
        return rearrange(out, "(b t) n d -> b t n d", b=b)


class TemporalAttention(Attention):
    """Causal attention over frames, per spatial position, within a window of W frames.

    x (B, T, N, D) holds frames ``frames`` (T,) (absolute indices, increasing). With a ring, the
    queries also see the ring's earlier frames, so a frame processed alone costs O(W * N).
    """

    def __init__(self, dim: int, num_heads: int, window: int, qk_norm: bool = True):
        super().__init__(dim, num_heads, qk_norm)
        self.window = window

    def forward(
        self,
        x: Tensor,
        frames: Tensor,
        ring: FrameKVRing | None = None,
        commit: bool = False,
        mask: Tensor | None = None,
        commit_frames: int | None = None,
    ) -> Tensor:
        """``mask`` (T, T) bool replaces the causal window mask (no ring then): the
        teacher-forced two-stream layout of ``two_stream_mask``. ``commit`` writes the keys
        and values of the call's first ``commit_frames`` frames (None: all) to the ring."""
        b = x.shape[0]
        q, k, v = self.heads(rearrange(x, "b t n d -> (b n) t d"))  # (B*N, h, T, Dh)
        cos, sin = rope_angles(frames, q.shape[-1], TIME_ROPE_BASE)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        keys, values, key_frames = k, v, frames
        past = ring.past(frames) if ring is not None else None
        if past is not None:
            keys = torch.cat([past[0].to(k.dtype), k], dim=2)
            values = torch.cat([past[1].to(v.dtype), v], dim=2)
            key_frames = torch.cat([past[2], frames])
        if mask is None:
            mask = temporal_mask(frames, key_frames, self.window)
        elif ring is not None:
            raise ValueError("an explicit temporal mask cannot be combined with a KV cache")
        out = self.merge(attend(q, keys, values, mask))
        if ring is not None and commit:
            n = frames.shape[0] if commit_frames is None else commit_frames
            ring.write(k[:, :, :n], v[:, :, :n], frames[:n])
        return rearrange(out, "(b n) t d -> b t n d", b=b)


# --- blocks ------------------------------------------------------------------------------


class SpaceTimeBlock(nn.Module):
    """Spatial attention, causal temporal attention, MLP; each pre-normed, adaLN-Zero modulated
    by the per-frame conditioning (B, T, D). ``rope_grid``: the token grid, for 2D RoPE in
    the spatial attention (None: none)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        window: int,
        qk_norm: bool,
        rope_grid: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.norm_space = layer_norm(dim)
        self.norm_time = layer_norm(dim)
        self.norm_mlp = layer_norm(dim)
        self.space = SpatialAttention(dim, num_heads, qk_norm, rope_grid)
        self.time = TemporalAttention(dim, num_heads, window, qk_norm)
        self.mlp = MLP(dim, mlp_ratio)
        self.modulation = AdaLNModulation(dim, dim, 9)

    def forward(
        self,
        x: Tensor,
        cond: Tensor,
        frames: Tensor,
        ring: FrameKVRing | None = None,
        commit: bool = False,
        mask: Tensor | None = None,
        commit_frames: int | None = None,
    ) -> Tensor:
        (shift_s, scale_s, gate_s, shift_t, scale_t, gate_t, shift_m, scale_m, gate_m) = (
            self.modulation(cond)
        )
        x = gated(x, gate_s, self.space(modulate(self.norm_space(x), shift_s, scale_s)))
        x = gated(
            x,
            gate_t,
            self.time(
                modulate(self.norm_time(x), shift_t, scale_t),
                frames,
                ring,
                commit,
                mask,
                commit_frames,
            ),
        )
        return gated(x, gate_m, self.mlp(modulate(self.norm_mlp(x), shift_m, scale_m)))


class FinalLayer(nn.Module):
    """Norm, per-frame adaLN shift/scale, linear to ``out_dim`` per token (zero-initialised)."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = layer_norm(dim)
        self.modulation = AdaLNModulation(dim, dim, 2)
        self.linear = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        shift, scale = self.modulation(cond)
        return self.linear(modulate(self.norm(x), shift, scale))


# --- patches and grids -------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Continuous latents (B, T, C, H, W) -> tokens (B, T, N, D), one per p x p patch.

    The input piece of the trunk: a token-embedding module with the same output replaces it
    for discrete (MaskGIT) inputs.
    """

    def __init__(self, channels: int, patch: int, dim: int):
        super().__init__()
        self.patch = patch
        self.linear = nn.Linear(channels * patch * patch, dim)

    def forward(self, latents: Tensor) -> Tensor:
        p = self.patch
        return self.linear(
            rearrange(latents, "b t c (h p1) (w p2) -> b t (h w) (p1 p2 c)", p1=p, p2=p)
        )


class NeighbourhoodEmbed(nn.Module):
    """Latents (B, T, C, H, W) -> tokens (B, T, N, D), each token embedding the k x k patches
    centred on its own (zero-padded at the border): a strided convolution of kernel k * p,
    written as unfold + linear because oneDNN's bf16 convolution returns wrong values for
    some such shapes on AMX CPUs (kernel 12, stride 4: relative error ~1), and a matmul is
    what the rest of the trunk runs anyway."""

    def __init__(self, channels: int, patch: int, kernel: int, dim: int, maps: int = 1):
        super().__init__()
        self.patch, self.kernel = patch, kernel
        self.linear = nn.Linear(channels * (kernel * patch) ** 2, dim)
        # ``maps`` > 1: one extra weight matrix per index (an action), added to the shared one.
        self.per_index = (
            nn.Parameter(torch.zeros(maps, self.linear.in_features, dim)) if maps > 1 else None
        )

    def index_weights(self, index: Tensor, dtype: torch.dtype) -> Tensor:
        """Each frame's own matrix (B*T, F, D) in ``dtype``, for index (B, T). The table is
        cast once, then gathered: autograd's backward of a gather from the fp32 table (an
        accumulating index_put of B*T matrices) cost more than the bmm."""
        return self.per_index.to(dtype).index_select(0, index.flatten())

    def forward(self, latents: Tensor, index: Tensor | None = None) -> Tensor:
        """latents (B, T, C, H, W); index (B, T) picks each frame's own matrix (maps > 1)."""
        b, p, k = latents.shape[0], self.patch, self.kernel
        flat = rearrange(latents, "b t c h w -> (b t) c h w")
        cols = F.unfold(flat, kernel_size=k * p, stride=p, padding=(k - 1) // 2 * p)
        cols = rearrange(cols, "(b t) f n -> b t n f", b=b)
        out = self.linear(cols)
        if self.per_index is not None:
            if index is None:
                raise ValueError("a per-index embedding needs index=... (B, T)")
            weight = self.index_weights(index, compute_dtype(cols.device.type, cols.dtype))
            own = torch.bmm(rearrange(cols, "b t n f -> (b t) n f"), weight)
            out = out + rearrange(own, "(b t) n d -> b t n d", b=b)
        return out


def unpatchify(tokens: Tensor, grid: tuple[int, int], patch: tuple[int, int]) -> Tensor:
    """tokens (B, T, N, ph * pw * C) -> latents (B, T, C, gh * ph, gw * pw)."""
    return rearrange(
        tokens,
        "b t (h w) (p1 p2 c) -> b t c (h p1) (w p2)",
        h=grid[0],
        w=grid[1],
        p1=patch[0],
        p2=patch[1],
    )


def sincos_2d(grid: tuple[int, int], dim: int) -> Tensor:
    """Fixed 2D sin/cos position embedding (N, D): half the width for rows, half for columns."""
    rows = torch.arange(grid[0], dtype=torch.float32).repeat_interleave(grid[1])
    cols = torch.arange(grid[1], dtype=torch.float32).repeat(grid[0])
    return torch.cat([sinusoidal_features(rows, dim // 2), sinusoidal_features(cols, dim // 2)], -1)


def pool_latents(x: Tensor, factor: int) -> Tensor:
    """Average-pool the last two axes (..., C, H, W) by ``factor``."""
    if factor == 1:
        return x
    return reduce(x, "... (h f1) (w f2) -> ... h w", "mean", f1=factor, f2=factor)


def pool_tokens(x: Tensor, grid: tuple[int, int], factor: tuple[int, int]) -> Tensor:
    """Average-pool a token grid: (B, T, gh * gw, D) -> (B, T, gh/fh * gw/fw, D)."""
    if factor == (1, 1):
        return x
    return reduce(
        x,
        "b t (h f1 w f2) d -> b t (h w) d",
        "mean",
        h=grid[0] // factor[0],
        f1=factor[0],
        f2=factor[1],
    )


def init_weights(module: nn.Module) -> None:
    """DiT's initialisation: Xavier linears, small embeddings, adaLN and outputs at zero."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
    for m in module.modules():
        if isinstance(m, NoiseLevelEmbed):
            for layer in m.mlp:
                if isinstance(layer, nn.Linear):
                    nn.init.normal_(layer.weight, std=0.02)
        if isinstance(m, AdaLNModulation):
            nn.init.zeros_(m.linear.weight)
            nn.init.zeros_(m.linear.bias)
        if isinstance(m, FinalLayer):
            nn.init.zeros_(m.linear.weight)
            nn.init.zeros_(m.linear.bias)
