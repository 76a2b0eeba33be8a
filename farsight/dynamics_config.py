"""Configs of the dynamics model (backbone + multi-frame heads) and of its training objectives.

Kept apart from the modules so that a command can build, override and print a config without
importing torch. Three dataclasses:

- ``DynamicsConfig``: the causal space-time transformer (sizes, latent geometry, actions) with
  a nested ``HeadsConfig``: the multi-frame prediction heads and their loss weights.
- ``ObjectiveConfig``: which objective, the noise parametrisation, weighting, context noise.

Named presets are plain functions (``dynamics_tiny``, ``dynamics_quickstart``, ``dynamics_S``,
...; ``heads_skip``, ``heads_next_frame``, ...) and are also listed in the recipe books
``DYNAMICS_SIZES`` and ``HEADS_PRESETS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from farsight.config import ConfigError, RecipeBook

ACTION_MODES = ("sum", "frame")
AUX_STOPGRAD = ("main", "far", "none")
AUX_TRUST = ("linear", "uniform")
OBJECTIVE_KINDS = ("diffusion_forcing", "next_frame", "teacher_forcing", "full_sequence", "maskgit")
PREDICTIONS = ("v", "x0")
RESIDUAL_REFERENCES = ("input", "clean")
SCHEDULES = ("linear", "cosine")
WEIGHTINGS = ("clamped_snr", "min_snr", "uniform")
TAU_SAMPLINGS = ("uniform", "logit_normal")
MASK_FRAMES = ("all", "last")


def _choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{name}={value!r}; expected one of {', '.join(options)}")


@dataclass
class HeadsConfig:
    """Multi-frame prediction heads. Head k at position t predicts frame t + k - 1.

    Head 1 (offset 1) is the objective's own denoising head at the end of the trunk; the other
    offsets are far heads. ``resolutions`` is aligned with ``offsets``, the tuples marked
    "far" with ``offsets[1:]``. They are read as prefixes (entries past the last head are
    ignored), so ``heads.offsets=[1]`` alone means next frame only and ``[1,2]`` keeps the
    first far head's settings. Code reads them through ``head_resolutions``, ``far_depths``
    and ``far_lambdas``.
    """

    offsets: tuple[int, ...] = (1, 2, 4, 8)
    """Frame offsets k, increasing, starting at 1. (1,) = next frame only; (1, 2, 3, 4) =
    contiguous."""
    resolutions: tuple[int, ...] = (1, 2, 4, 8)
    """Per head (aligned with offsets): the target is the clean latent average-pooled by r_k.
    resolutions[0] must be 1. All ones = every head at full resolution."""
    action_mode: str = "sum"
    """How a far head gets its extra actions a_t .. a_{t+k-2}: ``sum`` (order-aware sum of
    action embeddings plus a head embedding, the post's form) or ``frame`` (DeepSeek-V3 MTP:
    concat RMSNorm(h) with RMSNorm(embedding of true frame t+k-2 + its action), project)."""
    branch_layer: int = -1
    """Trunk block after which far heads branch off: 1..depth, or negative counting from the
    end (-1 = after the last block, -2 = one block earlier, ...)."""
    depths: tuple[int, ...] = (1, 1, 1)
    """Far: space-time blocks each far head runs after branching (0 allowed)."""
    lambdas: tuple[float, ...] = (0.3, 0.3, 0.3)
    """Far: loss weight lambda_k of each far head (DeepSeek-V3 MTP used 0.3)."""
    multires: bool = False
    """Post, extension 2: each head's loss also covers the coarser pyramid levels of its
    target (head 1: on its clean estimate)."""
    pyramid: tuple[int, ...] = (1, 2, 4, 8)
    """Pooling factors of the per-frame pyramid used by ``multires``."""
    multires_weight: float = 1.0
    """Weight of the mean over coarser levels, relative to the head's own-level loss."""
    aux_weight: float = 0.0
    """mu: weight of the self-consistency loss (post, extension 1). 0 = off."""
    aux_stopgrad: str = "main"
    """Which side of the self-consistency loss is a fixed target: ``main`` (far heads are
    pulled towards head 1's estimate), ``far`` (head 1 pulled towards the far heads), ``none``
    (both move)."""
    aux_trust: str = "linear"
    """Per-position weight of the aux loss: ``linear`` trusts head 1's clean estimate of a
    frame by (1 - tau) of that frame (a pure-noise frame's estimate is only a blurry mean);
    ``uniform`` weights all positions alike."""

    @property
    def far_offsets(self) -> tuple[int, ...]:
        return tuple(self.offsets[1:])

    @property
    def max_offset(self) -> int:
        return max(self.offsets)

    @property
    def head_resolutions(self) -> tuple[int, ...]:
        """r_k of every head, aligned with ``offsets``."""
        return tuple(self.resolutions[: len(self.offsets)])

    @property
    def far_depths(self) -> tuple[int, ...]:
        return tuple(self.depths[: len(self.offsets) - 1])

    @property
    def far_lambdas(self) -> tuple[float, ...]:
        return tuple(self.lambdas[: len(self.offsets) - 1])

    def validate(self) -> None:
        k = self.offsets
        if not k or k[0] != 1 or any(b <= a for a, b in zip(k, k[1:], strict=False)):
            raise ConfigError(f"heads.offsets={k}: must start at 1 and increase")
        if len(self.resolutions) < len(k):
            raise ConfigError(f"heads.resolutions={self.resolutions} needs an entry per offset {k}")
        res = self.head_resolutions
        if res[0] != 1 or any(r < 1 for r in res):
            raise ConfigError(f"heads.resolutions={self.resolutions}: head 1 is full res (1)")
        for name in ("depths", "lambdas"):
            value = getattr(self, name)
            if len(value) < len(k) - 1:
                raise ConfigError(
                    f"heads.{name}={value} needs an entry per far head "
                    f"(offsets[1:] = {tuple(k[1:])})"
                )
        if any(d < 0 for d in self.far_depths):
            raise ConfigError(f"heads.depths={self.depths}: negative depth")
        if not self.pyramid or self.pyramid[0] != 1:
            raise ConfigError(f"heads.pyramid={self.pyramid}: must start at 1")
        _choice("heads.action_mode", self.action_mode, ACTION_MODES)
        _choice("heads.aux_stopgrad", self.aux_stopgrad, AUX_STOPGRAD)
        _choice("heads.aux_trust", self.aux_trust, AUX_TRUST)


@dataclass
class DynamicsConfig:
    """Causal space-time transformer over latent clips (B, T, C, H, W)."""

    latent_channels: int = 8
    latent_size: tuple[int, int] = (16, 16)
    """Latent grid H, W."""
    num_actions: int = 18
    """Size of the action space (the training command sets it from the store)."""
    patch: int = 2
    """p: a token covers p x p latent cells, N = (H / p) * (W / p) tokens per frame."""
    depth: int = 6
    width: int = 256
    num_heads: int = 4
    mlp_ratio: float = 4.0
    window: int = 16
    """W: temporal attention sees frames t-W+1 .. t."""
    qk_norm: bool = True
    """RMSNorm on queries and keys (stabilises attention logits, costs little)."""
    prev_frame_input: bool = False
    """Embed the previous frame's input latent into each frame's tokens (DIAMOND-style frame
    stacking inside the causal transformer)."""
    prev_frame_kernel: int = 1
    """k (odd): each token embeds the k x k tokens' worth of the previous frame centred on it;
    1 its own patch, 3 its patch and the 8 around it (room for a move of up to a token per
    frame)."""
    prev_frame_count: int = 1
    """How many earlier frames each frame's tokens embed with ``prev_frame_input``: 1 the
    previous one; 2 also the one before it, through a k x k embedding of its own. Two
    positions of a moving object are its velocity, a local feature from the first layer on
    (DIAMOND stacks 4 frames) rather than something temporal attention must learn to fetch.
    In ``dyn_quickstart``'s 15 minutes, and over the first 5,100 steps of ``dyn_arena_2h``
    (Delta-PSNR at h=4 1.75 against 1.51 dB), it changed no figure beyond its interval, nor
    did it bring Breakout's ball into ``dyn_atari``'s 30 minutes (Delta-PSNR at h=4 1.08
    against 1.53 dB; ``docs/results/follow_actions/``), so the recipes keep 1."""
    prev_frame_per_action: bool = False
    """The previous-frame embedding adds one matrix per action (the action leading into the
    frame), zero-initialised: "the last frame as this action moves it" is then a linear
    feature of the input, which is most of what a camera move is."""
    action_input: bool = False
    """Also add an embedding of the action leading into a frame to every token of that frame
    at the input (besides the adaLN conditioning)."""
    action_embed_std: float = 0.02
    """Initial scale of the action embeddings (DiT's 0.02 for class labels). The noise-level
    embedding grows to a norm of ~10 within a few hundred steps; an action embedding started
    at 0.02 stays a small perturbation of the conditioning for much longer."""
    spatial_rope: bool = False
    """2D rotary position embedding in the spatial attention (on top of the absolute sin/cos
    embedding at the input): attention by relative offset, so an action can choose the
    direction the picture shifts in."""
    context_level_embed: bool = False
    """Add an embedding of the context level (``objective.context_level``) to the per-frame
    conditioning, so the model knows how far to trust its context (for context noise
    augmentation, ``objective.context_level_max``)."""
    residual_output: bool = False
    """Head 1 outputs the previous frame's input plus a learned change: "copy the last frame"
    is then what the model says before it has learned anything (the final layer starts at
    zero), and training spends itself on what moves. Its output is a clean-latent estimate:
    train it with ``objective.prediction=x0``."""
    shift_reference: int = 0
    """S > 0: ``residual_output`` adds head 1's output to its reference moved by a learned
    mix of whole-frame shifts of up to S latent cells along each axis: a softmax over the
    (2S+1)^2 integer shifts, from the mean of the last block's tokens (which carry the
    action), weighs the reference's shifted copies (zeros where a shift brings in the edge).
    A view that scrolls with the action by whole cells is then copied by default, as a still
    one is by ``residual_output``, and what is left to learn is what moves in the world. It
    starts at the unshifted reference (0.9 of the mix). With ``sampling.action_guidance``
    the guided output extrapolates the mix too (shifts the action-free model prefers get
    negative weight). 0: the reference as it is."""
    shift_learned: bool = False
    """With ``shift_reference``: each shift is a learned C x C convolution over the
    (2S+1) x (2S+1) neighbourhood that starts as the integer shift, so a view that scrolls by
    a fraction of a latent cell (the arena's 2 px in 4-px cells) can be copied by a map the
    model learns for the autoencoder's latents, not only by a blend of whole-cell shifts.
    The maps are weight-decayed with the other matrices (towards zero)."""
    shift_hard: bool = False
    """With ``shift_reference``: move the reference by the one shift of largest weight instead
    of the mix (straight-through: the forward pass uses the one-hot choice, the gradient flows
    through the softmax), so a view the model is unsure of is copied sharp at one shift, not
    blurred across several. Deterministic: the choice is an argmax, no sampling. On the
    arena's 2-pixel cells in 15 minutes the softmax went flat (the argmax picked by a few
    thousandths) and the copy wrong: under copy-last-frame at every horizon, rollouts broken
    up (``docs/results/follow_actions/``)."""
    null_action: bool = False
    """One more action row meaning "no action given": training replaces a share of the actions
    by it (``objective.action_dropout``), so the model also learns what comes next without
    knowing the action, and sampling can push away from that (``sampling.action_guidance``,
    classifier-free guidance on the action)."""
    residual_reference: str = "input"
    """What ``residual_output`` adds to: ``input``, the previous frame as the model is shown
    it (noisy in training, context-noised in a rollout); ``clean``, the previous frame's clean
    latent (the true one in training, the generated one in a rollout), so no context noise
    passes through the copy. ``clean`` samples one frame at a time (a frame's reference must
    be finished before it starts)."""
    out_channels: int = 0
    """Channels each head emits per latent cell; 0: latent_channels (diffusion predicts in the
    latent space). MaskGIT: sum(fsq_levels) logits (prod(fsq_levels) with
    ``objective.token_logits=joint``), with latent_channels = len(levels) + 1
    (code values + a mask flag), see ``farsight/models/tokens.py``."""
    object_channels: int = 0
    """K > 0: an object head, a linear map from the last block's tokens to K maps on the
    latent grid (one per tracked entity of the store: ``farsight/objectives/object_maps.py``),
    trained by ``objective.object_maps``; rollouts never read it. The training command sets
    K from the store when ``objective.object_maps`` is on. 0: none."""
    heads: HeadsConfig = field(default_factory=HeadsConfig)

    @property
    def clean_residual(self) -> bool:
        """Head 1 adds its output to the previous frame's clean latent (given by the caller)."""
        return self.residual_output and self.residual_reference == "clean"

    @property
    def action_rows(self) -> int:
        """Rows of an action table: the actions, the clip start, and the null action if any."""
        return self.num_actions + 1 + int(self.null_action)

    @property
    def output_channels(self) -> int:
        return self.out_channels or self.latent_channels

    @property
    def token_grid(self) -> tuple[int, int]:
        return self.latent_size[0] // self.patch, self.latent_size[1] // self.patch

    def branch_index(self) -> int:
        """Number of trunk blocks before the far heads branch off (1..depth)."""
        b = self.heads.branch_layer
        index = b if b > 0 else self.depth + 1 + b
        if not 1 <= index <= self.depth:
            raise ConfigError(
                f"heads.branch_layer={b}: must be in 1..{self.depth} or -1..-{self.depth}"
            )
        return index

    def validate(self) -> None:
        self.heads.validate()
        h, w = self.latent_size
        if h % self.patch or w % self.patch:
            raise ConfigError(f"latent_size={self.latent_size} not divisible by patch {self.patch}")
        if self.width % self.num_heads or (self.width // self.num_heads) % 2:
            raise ConfigError(
                f"width={self.width} must split into num_heads={self.num_heads} even head widths"
            )
        if self.residual_output and self.output_channels != self.latent_channels:
            raise ConfigError(
                f"residual_output needs out_channels = latent_channels, got {self.out_channels}"
            )
        if self.residual_reference not in RESIDUAL_REFERENCES:
            raise ConfigError(
                f"residual_reference={self.residual_reference!r}: one of {RESIDUAL_REFERENCES}"
            )
        if self.object_channels < 0:
            raise ConfigError(f"object_channels={self.object_channels} must be >= 0")
        if not 0 <= self.shift_reference < min(h, w):
            raise ConfigError(
                f"shift_reference={self.shift_reference}: must be in 0..{min(h, w) - 1} "
                f"(latent_size={self.latent_size})"
            )
        if self.shift_learned and not self.shift_reference:
            raise ConfigError("shift_learned=true needs shift_reference > 0")
        if self.shift_hard and not self.shift_reference:
            raise ConfigError("shift_hard=true needs shift_reference > 0")
        if self.shift_reference and not self.residual_output:
            raise ConfigError(
                f"shift_reference={self.shift_reference} moves residual_output's reference: "
                "it needs residual_output=true"
            )
        if self.prev_frame_kernel < 1 or self.prev_frame_kernel % 2 == 0:
            raise ConfigError(f"prev_frame_kernel={self.prev_frame_kernel}: must be odd and >= 1")
        if self.prev_frame_count < 1:
            raise ConfigError(f"prev_frame_count={self.prev_frame_count}: must be >= 1")
        if self.prev_frame_count > 1 and not self.prev_frame_input:
            raise ConfigError(f"prev_frame_count={self.prev_frame_count} needs prev_frame_input")
        if self.spatial_rope and (self.width // self.num_heads) % 4:
            raise ConfigError(
                f"spatial_rope needs a head width (width / num_heads = "
                f"{self.width // self.num_heads}) divisible by 4"
            )
        if self.window < 1 or self.depth < 1 or self.num_actions < 1:
            raise ConfigError("window, depth and num_actions must be >= 1")
        for r in (*self.heads.head_resolutions, *self.heads.pyramid):
            if h % r or w % r:
                raise ConfigError(f"resolution factor {r} does not divide latent {h}x{w}")
        self.branch_index()


@dataclass
class ObjectiveConfig:
    """What a denoising objective samples and how it weighs the errors."""

    kind: str = "diffusion_forcing"
    """diffusion_forcing (tau per frame), next_frame (clean-ish context, last frame noisy),
    teacher_forcing (every frame noisy, each with the clean-ish clip as its past; two streams
    in one pass), full_sequence (one tau per clip), maskgit (FSQ tokens, a mask rate per
    frame)."""
    fsq_levels: tuple[int, ...] = ()
    """maskgit: the FSQ levels of the tokens (the training command sets them from the cache)."""
    token_logits: str = "factorized"
    """maskgit: head logits per cell, ``factorized`` (sum(levels): a softmax per FSQ channel,
    whose draws pick each channel's digit independently) or ``joint`` (prod(levels): one
    softmax over the codes, whose draws pick whole tokens), see ``models/tokens.py``."""
    prediction: str = "v"
    """What head 1 outputs: ``v`` (velocity) or ``x0`` (clean latent)."""
    schedule: str = "linear"
    """alpha, sigma of tau: ``linear`` (rectified flow) or ``cosine``."""
    weighting: str = "clamped_snr"
    """Per-frame loss weight, as an x0-equivalent weight of the SNR (``diffusion.loss_weight``):
    ``clamped_snr`` clamp(SNR, snr_floor, gamma), ``min_snr`` min(SNR, gamma) (Hang et al.
    2023; starves the pure-noise end, where a rollout's first step predicts the motion), or
    ``uniform`` (plain MSE of v or x0)."""
    min_snr_gamma: float = 5.0
    """gamma: cap of the SNR weight (easy low-noise levels count no more than this)."""
    snr_floor: float = 1.0
    """clamped_snr only: floor of the SNR weight (Salimans & Ho's truncation at 1)."""
    tau_sampling: str = "uniform"
    """How training noise levels are drawn: ``uniform`` or ``logit_normal`` (SD3)."""
    logit_normal_mean: float = 0.0
    logit_normal_std: float = 1.0
    tau_min: float = 0.0
    """Lowest training noise level: levels are drawn on [tau_min, 1) (the draw above, mapped
    onto that range). A few-step sampler only ever asks the model about its own levels
    (2 DDIM steps: tau = 1 and 0.5), so samples below the lowest are spent on questions a
    rollout never asks. The model is then for that sampler: more steps (or a shift) ask it
    about levels it never trained on."""
    context_level: float = 0.02
    """The context level: the noise level the context frames (the past a frame is denoised
    from: a clip's earlier frames in training, the committed frames in a rollout) are noised
    to and labelled with. next_frame, teacher_forcing train with their clean-ish context at
    this level (DFoT used 0.02); a stable-context rollout uses it unless
    ``sampling.context_level`` says otherwise."""
    context_level_max: float = 0.0
    """Context noise augmentation (DIAMOND, GameNGen): a context level per clip drawn from
    U[0, max] in place of ``context_level``; 0 = off. next_frame, teacher_forcing: the
    context (stream) is noised to it; diffusion_forcing: every frame is noised to at least
    it. The model embeds it with ``model.context_level_embed``. It trades the near horizons
    for the far ones: noise drowns small objects in the context, and at 0.5 the CPU recipes
    erase Breakout's ball; at 0 the same 30 minutes gave Delta-PSNR at h=4 2.7 against 1.5 dB
    and the paddle at h=1 in every clip, but fell under copy-last-frame at h=64 at 1/8
    resolution (``docs/results/follow_actions/``, "What erases the ball"); two hours at 0
    (``dyn_atari_2h``) are above it at every horizon."""
    context_noise_share: float = 1.0
    """Share of the clips whose context noise augmentation is drawn (``context_level_max``);
    the others keep their context at ``context_level``, so the model also learns from
    contexts in which small objects are still visible. 1 = every clip. At 0.5 it did not
    pay: in ``ball_world.py``'s synthetic Breakout the noised half kept the model from
    learning the ball on the clean half too (hit 0.03 at h=1 at 2,400 steps, against 0.90
    with every context clean and 0.01 with every one noised up to 0.5)."""
    motion_weight: float = 0.0
    """Head 1's squared error weighted per latent position by 1 + motion_weight * m, with m
    the change of the clean latent from the frame before (mean over channels), divided by its
    mean over the batch, and the weighted error averaged with these weights, so a frame's loss
    keeps its scale: the few positions where something moves (a disc, the player, an edge as
    the view scrolls) weigh more against the many where the floor only repeats; 0 = plain
    per-frame mean. At 4 in ``dyn_quickstart``'s 15 minutes it halved the action gain and
    kept no more discs (``docs/results/follow_actions/``)."""
    worst: float = 0.0
    """Weight of a second term in head 1's loss: per frame, the mean squared error (mean over
    channels) of its worst ``worst_share`` of latent positions. An object one latent cell in
    size (Breakout's ball) is ~1/256 of a frame's mean error; this term puts the positions the
    model gets most wrong, wherever they are, beside the mean. 0 = off. At 1 in ``dyn_atari``
    (30 minutes, Breakout) it drew no more balls and cost 0.7-2.2 dB of PSNR
    (``docs/results/follow_actions/``)."""
    worst_share: float = 0.02
    """Share of a frame's h*w latent positions the worst term averages (at least one)."""
    mask_frames: str = "all"
    """maskgit: which frames of a clip are masked and scored: ``all`` (each at its own mask
    rate, as diffusion forcing draws a level per frame) or ``last`` (next-frame MaskGIT: the
    context whole, as a rollout shows it, and only each clip's last input frame masked, as
    ``next_frame`` is for diffusion). With ``all`` the previous frame that
    ``model.prev_frame_input`` embeds is itself partly masked in training and whole in a
    rollout. ``last`` tripled Delta-PSNR at h=1 and h=4 in 15 minutes on the arena and
    drifted under copy-last-frame at h=64 (``docs/results/follow_actions/``)."""
    action_dropout: float = 0.0
    """Share of the actions replaced by the null action (each action drawn on its own), so
    the model also learns the next frame without its action: classifier-free guidance on the
    action (``sampling.action_guidance``). Needs ``model.null_action``."""
    object_maps: float = 0.0
    """Weight of the object head's loss: at the frames head 1 is trained on, the squared error
    of its maps of where each entity of the store's ground-truth state is (Gaussian bumps of
    ``object_sigma`` latent cells), relative to the maps' energy
    (``farsight/objectives/object_maps.py``). Training-time supervision only: the state
    is read from the store, a rollout needs none. Needs a store with entity positions
    (the arena; a game with a RAM map). 0 = off."""
    object_sigma: float = 0.5
    """Width of an entity's bump on the latent grid, in latent cells."""

    def validate(self) -> None:
        _choice("objective.kind", self.kind, OBJECTIVE_KINDS)
        _choice("objective.prediction", self.prediction, PREDICTIONS)
        _choice("objective.schedule", self.schedule, SCHEDULES)
        _choice("objective.weighting", self.weighting, WEIGHTINGS)
        _choice("objective.tau_sampling", self.tau_sampling, TAU_SAMPLINGS)
        _choice("objective.mask_frames", self.mask_frames, MASK_FRAMES)
        if self.mask_frames != "all" and self.kind != "maskgit":
            raise ConfigError(f"objective.mask_frames={self.mask_frames!r}: a maskgit option")
        if self.motion_weight < 0:
            raise ConfigError(f"objective.motion_weight={self.motion_weight} must be >= 0")
        if self.worst < 0:
            raise ConfigError(f"objective.worst={self.worst} must be >= 0")
        if not 0.0 < self.worst_share <= 1.0:
            raise ConfigError(f"objective.worst_share={self.worst_share} must lie in (0, 1]")
        if not 0.0 <= self.tau_min < 1.0:
            raise ConfigError(f"objective.tau_min={self.tau_min} must lie in [0, 1)")
        if self.tau_min and self.kind not in ("next_frame", "teacher_forcing"):
            # Elsewhere the drawn levels are also the context's: it would never be clean.
            raise ConfigError(
                f"objective.tau_min={self.tau_min} needs objective.kind next_frame or "
                f"teacher_forcing (their context has levels of its own), got {self.kind}"
            )
        if not 0.0 <= self.context_level < 1.0 or not 0.0 <= self.context_level_max <= 1.0:
            raise ConfigError("objective.context_level and context_level_max must lie in [0, 1)")
        if not 0.0 <= self.context_noise_share <= 1.0:
            raise ConfigError(
                f"objective.context_noise_share={self.context_noise_share} must lie in [0, 1]"
            )
        if self.context_noise_share < 1.0 and self.context_level_max <= 0:
            raise ConfigError(
                f"objective.context_noise_share={self.context_noise_share} needs "
                "objective.context_level_max > 0 (no context noise to share out)"
            )
        if not 0.0 <= self.action_dropout < 1.0:
            raise ConfigError(f"objective.action_dropout={self.action_dropout} must lie in [0, 1)")
        if self.action_dropout and self.kind == "maskgit":
            raise ConfigError("objective.action_dropout: the maskgit objective drops no actions")
        if self.token_logits not in ("factorized", "joint"):
            raise ConfigError(
                f"objective.token_logits={self.token_logits!r}; expected factorized or joint"
            )
        if self.token_logits == "joint" and self.kind != "maskgit":
            raise ConfigError("objective.token_logits=joint: only the maskgit objective has tokens")
        if self.kind == "maskgit" and (not self.fsq_levels or min(self.fsq_levels) < 2):
            raise ConfigError(f"objective.fsq_levels={list(self.fsq_levels)}: maskgit needs them")
        if self.object_maps < 0 or self.object_sigma <= 0:
            raise ConfigError(
                f"objective.object_maps={self.object_maps} must be >= 0 and "
                f"objective.object_sigma={self.object_sigma} > 0"
            )
        if self.object_maps and self.kind == "maskgit":
            raise ConfigError("objective.object_maps: a denoising-objective option, not maskgit")
        if self.kind == "full_sequence" and self.context_level_max > 0:
            raise ConfigError("objective.context_level_max: full_sequence has no context to noise")


# --- presets ---------------------------------------------------------------------------------

DYNAMICS_SIZES = RecipeBook("dynamics size")
HEADS_PRESETS = RecipeBook("heads")


@DYNAMICS_SIZES.register
def dynamics_tiny() -> DynamicsConfig:
    """For tests: a few thousand parameters, milliseconds per step."""
    return DynamicsConfig(
        latent_channels=4,
        latent_size=(8, 8),
        num_actions=5,
        patch=2,
        depth=2,
        width=32,
        num_heads=2,
        window=4,
    )


@DYNAMICS_SIZES.register
def dynamics_quickstart() -> DynamicsConfig:
    """CPU quickstart: ~3 M parameters, 64 tokens a frame, a window of 8 frames (the recipe
    ``dyn_quickstart`` narrows the window to 4 and widens the trunk to three blocks of 192,
    ``wide_trunk``); about a second per training step of 8 clips on one shared core, and a
    rollout frame in a few tens of ms."""
    return DynamicsConfig(depth=4, width=128, num_heads=4, window=8)


@DYNAMICS_SIZES.register
def dynamics_S() -> DynamicsConfig:  # noqa: N802 (DiT's size names)
    return DynamicsConfig(depth=12, width=384, num_heads=6, window=32)


@DYNAMICS_SIZES.register
def dynamics_B() -> DynamicsConfig:  # noqa: N802
    return DynamicsConfig(depth=12, width=768, num_heads=12, window=32)


@DYNAMICS_SIZES.register
def dynamics_L() -> DynamicsConfig:  # noqa: N802
    return DynamicsConfig(depth=24, width=1024, num_heads=16, window=32)


@HEADS_PRESETS.register
def heads_skip() -> HeadsConfig:
    """The post's default: offsets 1, 2, 4, 8 with a resolution cascade."""
    return HeadsConfig()


@HEADS_PRESETS.register
def heads_next_frame() -> HeadsConfig:
    """Baseline: head 1 only."""
    return HeadsConfig(offsets=(1,))


@HEADS_PRESETS.register
def heads_contiguous() -> HeadsConfig:
    """Offsets 1, 2, 3, 4 (no skips), same cascade."""
    return HeadsConfig(offsets=(1, 2, 3, 4))


@HEADS_PRESETS.register
def heads_full_res() -> HeadsConfig:
    """Skips, but every head at full resolution."""
    return HeadsConfig(resolutions=(1, 1, 1, 1))


@HEADS_PRESETS.register
def heads_frame() -> HeadsConfig:
    """Ablation: DeepSeek-V3 style frame conditioning instead of the action sum."""
    return HeadsConfig(action_mode="frame")


@HEADS_PRESETS.register
def heads_post_full() -> HeadsConfig:
    """Every part of the post: early branch, multi-resolution per frame, aux consistency."""
    return HeadsConfig(branch_layer=-2, multires=True, aux_weight=0.1)


def check_objective_fits_model(model: DynamicsConfig, objective: ObjectiveConfig) -> None:
    """What an objective asks of the model it trains (each config is valid on its own)."""
    if model.residual_output and objective.prediction != "x0":
        raise ConfigError(
            "model.residual_output outputs clean latents: "
            f"objective.prediction={objective.prediction!r} must be 'x0'"
        )
    if objective.object_maps and not model.object_channels:
        raise ConfigError(
            f"objective.object_maps={objective.object_maps} needs model.object_channels > 0 "
            "(the object head; the training command sets it from the store)"
        )
    if model.object_channels and not objective.object_maps:
        # A head no loss reaches: wasted work, and DDP stops on its unused parameters.
        raise ConfigError(
            f"model.object_channels={model.object_channels} needs objective.object_maps > 0 "
            "(its loss weight)"
        )
    if objective.action_dropout and not model.null_action:
        raise ConfigError(
            f"objective.action_dropout={objective.action_dropout} needs model.null_action=true "
            "(the row the dropped actions are replaced by)"
        )
