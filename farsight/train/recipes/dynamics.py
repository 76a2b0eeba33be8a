"""The dynamics run's config and its named recipes (``farsight train dynamics RECIPE``).

A recipe is a function returning a whole ``DynamicsRunConfig``; ``DYNAMICS_RECIPES`` lists them
by name for the command line, the ablation grid and the benchmarks. The trainer that runs one
is ``farsight/train/dynamics.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from farsight.config import ConfigError, RecipeBook
from farsight.dynamics_config import (
    DynamicsConfig,
    ObjectiveConfig,
    check_objective_fits_model,
    dynamics_quickstart,
    dynamics_S,
    dynamics_tiny,
)
from farsight.sampling.config import SamplingConfig
from farsight.train.config import ParallelConfig, TrainConfig

KIND = "dynamics"


@dataclass
class DynamicsDataConfig:
    path: str = ""
    """Episode store (``--data``)."""
    autoencoder: str = ""
    """Autoencoder checkpoint or run folder (``--autoencoder``)."""
    cache: str = ""
    """Latent cache folder; empty: the autoencoder run's ``latents/<store name>-<path hash>``."""
    clip_len: int = 16
    """Frames the model sees per clip (the far-head target frames come on top)."""
    min_clip_len: int = 0
    """Shortest clip (0: every clip is ``clip_len`` long). Each step cuts its batch's clips to
    a length drawn uniformly from [min_clip_len, clip_len], keeping their last frames, so the
    frame a next-frame objective trains meets its clip's first frame at every distance in
    that range. A rollout longer than the model's window puts every frame past the first few
    at a distance training with ``clip_len <= model.window`` never shows: a model that
    learned to lean on the clip's first frame (Breakout, ``docs/results/follow_actions/``)
    then predicts over 20x worse than copy-last-frame, from the first frame past the window."""
    stride: int = 1
    start_every: int = 1
    val_clips: int = 64
    """Validation clips (fixed, spread over the val split)."""
    sample_frames: int = 48
    """Frames of the decoded rollout written at each validation (0: none)."""
    actions: str = "true"
    """true (the store's), latent (a latent action model's, ``data.lam``) or none (one action
    for all frames: a store without actions, or actions ignored); see action_source.py."""
    lam: str = ""
    """Latent action model checkpoint or run folder, for ``data.actions=latent``."""


ROLLOUT_CONTEXT_OBJECTIVES = ("next_frame", "teacher_forcing", "maskgit")
"""Objectives that train the last frame only: the generated frames are never targets
(maskgit with ``objective.mask_frames="last"`` only)."""


@dataclass
class RolloutContextConfig:
    """Training on contexts the model generated itself (``farsight/train/rollout_context.py``)."""

    fraction: float = 0.0
    """Share of each batch's clips whose context the model generates itself (0: off)."""
    min_prompt: int = 1
    """Fewest true frames a generated context starts from."""
    start_step: int = 0
    """Steps up to this one learn from true contexts only; later ones generate theirs
    (a curriculum, as scheduled sampling's: its own rollouts teach little before it has
    learned to follow the actions, and cost a generation per step)."""
    steps: int = 0
    """Sampler steps per generated context frame; 0: the run's own (``sampling.steps``).
    Fewer than the rollouts' keep a generating step cheap (MaskGIT: 2 in place of 8)."""

    def validate(
        self, objective: str, clip_len: int, mask_frames: str = "all"
    ) -> RolloutContextConfig:
        if not 0.0 <= self.fraction <= 1.0:
            raise ConfigError(f"rollout_context.fraction={self.fraction} must lie in [0, 1]")
        if self.fraction and objective not in ROLLOUT_CONTEXT_OBJECTIVES:
            raise ConfigError(
                f"rollout_context.fraction={self.fraction} needs objective.kind in "
                f"{', '.join(ROLLOUT_CONTEXT_OBJECTIVES)} (it trains the last frame only); "
                f"got {objective}"
            )
        if self.fraction and objective == "maskgit" and mask_frames != "last":
            raise ConfigError(
                f"rollout_context.fraction={self.fraction} with objective.kind=maskgit needs "
                f"objective.mask_frames=last (it trains the last frame only); got {mask_frames}"
            )
        if self.start_step < 0:
            raise ConfigError(f"rollout_context.start_step={self.start_step} must be >= 0")
        if self.steps < 0:
            raise ConfigError(
                f"rollout_context.steps={self.steps} must be >= 0 (0: the run's sampling.steps)"
            )
        if self.fraction and not 1 <= self.min_prompt <= clip_len - 2:
            raise ConfigError(
                f"rollout_context.min_prompt={self.min_prompt} must lie in [1, the shortest clip"
                f" (data.min_clip_len, else data.clip_len) - 2 = {clip_len - 2}]"
            )
        return self


@dataclass
class DynamicsRunConfig:
    model: DynamicsConfig = field(default_factory=dynamics_quickstart)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DynamicsDataConfig = field(default_factory=DynamicsDataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """How this model's rollouts sample unless told otherwise (rollout, play, eval, the
    validation videos); ``--sampling.<field>`` flags override it."""
    rollout_context: RolloutContextConfig = field(default_factory=RolloutContextConfig)
    """Train on contexts the model generated itself (``train/rollout_context.py``)."""
    grad_cosine_every: int = 0
    """Log the cosine between per-head gradients on the shared trunk every N steps (0: off;
    costs one extra forward and one backward per head; a multiple of train.log_every)."""

    def validate(self) -> DynamicsRunConfig:
        """Each part, and what one part asks of another (before any data is read)."""
        self.model.validate()
        self.objective.validate()
        self.train.validate()
        if self.data.min_clip_len and not 2 <= self.data.min_clip_len <= self.data.clip_len:
            raise ConfigError(
                f"data.min_clip_len={self.data.min_clip_len} must lie in [2, data.clip_len ="
                f" {self.data.clip_len}] (or be 0: every clip data.clip_len long)"
            )
        shortest = self.data.min_clip_len or self.data.clip_len
        self.rollout_context.validate(self.objective.kind, shortest, self.objective.mask_frames)
        check_objective_fits_model(self.model, self.objective)
        return self


DYNAMICS_RECIPES = RecipeBook(KIND)


def follows_actions(model: DynamicsConfig) -> DynamicsConfig:
    """The input options that let a small trunk learn its actions within CPU minutes
    (``docs/results/follow_actions/``): the previous frame's 3 x 3-token neighbourhood on
    every token's input, through a matrix per action; the action also as a per-token input;
    action embeddings at unit scale (at DiT's 0.02 the noise-level embedding drowns them);
    2D RoPE in the spatial attention."""
    model.prev_frame_input = True
    model.prev_frame_kernel = 3
    model.prev_frame_per_action = True
    model.action_input = True
    model.action_embed_std = 1.0
    model.spatial_rope = True
    return model


def wide_trunk(model: DynamicsConfig) -> DynamicsConfig:
    """Three blocks of width 192 (6 heads of 32) in place of the size preset's four of 128:
    1.7x the matmul work per token, in wider matmuls that a CPU runs near its peak while
    the element-wise work per token grows only 1.1x. ``farsight bench train`` on 2 cores
    (AVX512-BF16): 20% to 24% of the bf16 matmul peak at width 128, 27% to 39% (median 34%)
    at 192; in the quickstart's 15 minutes 2,666 steps against 3,133, and Delta-PSNR at h=4
    1.57 against 1.45 dB, PSNR at h=64 19.41 against 19.15 dB, one run each
    (``docs/results/follow_actions/``, "A wider trunk")."""
    model.width, model.depth, model.num_heads = 192, 3, 6
    return model


def narrow_trunk(model: DynamicsConfig) -> DynamicsConfig:
    """The size preset's four blocks of width 128: the trunk that recipes measured before the
    wide trunk keep, so that their documented figures stay theirs."""
    preset = dynamics_quickstart()
    model.width, model.depth, model.num_heads = preset.width, preset.depth, preset.num_heads
    return model


@DYNAMICS_RECIPES.register
def dyn_quickstart() -> DynamicsRunConfig:
    """CPU recipe: learns to follow the built-in arena's actions in 15 minutes on 2 cores.

    Shaped by what a CPU minute buys (``docs/results/follow_actions/``): a small trunk
    (``dynamics_quickstart`` widened by ``wide_trunk``) with the ``follows_actions`` inputs,
    next-frame diffusion (every clip's last frame denoised given its clean-ish past: the pairs
    a rollout meets, at one stream's cost), a window of 4 frames and clips of 5 (the trained
    frame always past its clip's first, as in a rollout), and context noise augmentation up
    to 0.5 with the level embedded (at 0.1, the earlier setting, rollouts blew up into noise
    within 8 frames), and half of each batch's clips with a context the model generated
    itself (``rollout_context``): without it rollouts drifted off the latent distribution and
    broke into coloured noise after about 30 frames, below copy-last-frame from h=16 on. Head 1
    adds its output to the previous frame (``model.residual_output``: copy-last-frame until it
    has learned otherwise) and is trained as a clean-latent estimate, on the noise levels its
    2-step sampler asks about only (``objective.tau_min=0.5``): at 1,000 steps these took
    Delta-PSNR at h=4 from 0.32 to 0.59 dB and PSNR at h=32 from 17.6 to 18.5 dB. The LR
    follows the wall-clock budget (``train.max_minutes``); ``steps`` is only an upper bound.

    Its rollouts sample with 2 DDIM steps and the context noised to 0.1 (0.3 measured worse:
    Delta-PSNR at h=4 0.64 against 0.90 dB). The window of 4 in place of 8 (1.25x the steps
    in the same minutes) took Delta-PSNR at h=4 from 0.84 to 1.24 and 1.32 dB (two runs) and
    PSNR at 1/8 resolution at h=1 above copy-last-frame (31.36 and 31.55 against 31.14 dB);
    a window of 3 (two runs on the wide trunk) kept the player longer but fewer discs, and its
    rollout broke up by frame 122;
    the far heads (``heads.offsets`` 1, 2, 4, 8) keep the far horizons: without them PSNR at
    h=64 fell from 18.19 to 15.94 dB, under copy-last-frame's 16.03."""
    cfg = DynamicsRunConfig(model=follows_actions(wide_trunk(dynamics_quickstart())))
    cfg.model.context_level_embed = True
    cfg.model.residual_output = True
    cfg.model.window = 4
    cfg.data.clip_len = 5
    cfg.objective.kind = "next_frame"
    cfg.objective.prediction = "x0"
    cfg.objective.tau_min = 0.5
    cfg.objective.context_level_max = 0.5
    cfg.rollout_context.fraction = 0.5
    cfg.sampling = SamplingConfig(steps=2, context_level=0.1)
    cfg.train = TrainConfig(
        steps=5000,
        batch_size=8,
        workers=1,
        log_every=20,
        val_every=300,
        ckpt_every=300,
        max_minutes=18.0,
        precision="auto",
    )
    cfg.train.optim.lr = 1e-3
    cfg.train.optim.warmup_steps = 100
    cfg.train.optim.weight_decay = 0.01
    cfg.train.ema_decay = 0.995
    cfg.grad_cosine_every = 100
    return cfg


@DYNAMICS_RECIPES.register
def dyn_atari() -> DynamicsRunConfig:
    """An ALE game (Breakout by default) on 2 cores in 30 minutes: ``dyn_quickstart`` with
    clips of 9 to 16 frames (``data.min_clip_len``) in place of 8.

    With clips as long as the window (8), the Breakout model leant on its clip's first frame
    (the one frame with no previous input) and predicted 24x worse than copy-last-frame as
    soon as that frame left its window, which in a rollout is from the first generated frame
    on: 11 dB under copy-last-frame, grain over the black field. Clip lengths drawn from 9..16
    put the trained frame at every distance from its clip's start that a rollout meets; the
    same 30 minutes then gave PSNR above copy-last-frame at every horizon to 64 and
    Delta-PSNR at h=4 of 2.0 dB (1.5 dB on ``ae_atari``'s latents since it keeps the ball:
    ``docs/results/follow_actions/``). The arena's models do not
    lean on the first frame, and there the longer clips cost steps: ``dyn_quickstart`` keeps its
    clips one frame longer than its window.
    Check a new game with ``docs/results/follow_actions/window_probe.py``."""
    cfg = dyn_quickstart()
    cfg.model = narrow_trunk(cfg.model)  # as measured
    cfg.model.window = 8  # as measured; the window of 4 was no different on Breakout (30 min)
    cfg.data.clip_len = 16
    cfg.data.min_clip_len = 9
    cfg.train.max_minutes = 30.0
    return cfg


@DYNAMICS_RECIPES.register
def dyn_atari_2h() -> DynamicsRunConfig:
    """An ALE game (Breakout) on 2 cores in two hours: ``dyn_atari`` with a clean context
    (no context noise augmentation; rollouts sample with the context at 0.02) for 115
    minutes.

    Context noise drowns a one-cell object in the context and the model learns an empty
    field: with it ``dyn_atari`` draws no ball, and in a synthetic Breakout even a learned
    ball is unlearned once the noise starts (``docs/results/follow_actions/``, "What erases
    the ball"); DIAMOND's Atari models condition on clean frames too. Measured on Breakout
    (7,448 steps): Delta-PSNR at h=4 4.97 dB [2.94, 7.16] (``dyn_atari``: 1.53), PSNR above
    copy-last-frame at every horizon to 64 at full and 1/8 resolution, the paddle's error at
    h=16 1.11 px [0.51, 1.93] (within 2 px in 0.75 of the clips, missed in 0.06); the ball
    still copied, not moved (hit 0.18 at h=1, 0 at h=2 and h=4)."""
    cfg = dyn_atari()
    cfg.objective.context_level_max = 0.0
    cfg.sampling.context_level = 0.02
    cfg.train.steps = 40_000
    cfg.train.max_minutes = 115.0
    return cfg


@DYNAMICS_RECIPES.register
def dyn_arena_2h() -> DynamicsRunConfig:
    """The longer CPU recipe: ``dyn_quickstart`` given two hours on 2 cores instead of 15
    minutes (about 8x the steps), on the quickstart's store, autoencoder and latent cache.
    The same model and objective (window of 4 frames, clips of 5), so that it measures what
    budget alone buys (``docs/results/follow_actions/``): 15,350 steps, Delta-PSNR at h=4
    2.29 dB [1.74, 2.97], PSNR above copy-last-frame at every horizon to 64 (20.63 against
    16.03 dB at h=64), the player found to h=64 in 0.94 of the clips; the discs at h=1 and 2
    only. With the window of 8 the same two hours levelled off at 1.53 dB (18.36 dB at h=64,
    the player in 0.44)."""
    cfg = dyn_quickstart()
    cfg.model = narrow_trunk(cfg.model)  # as measured; the wide trunk for two hours: not yet
    cfg.train.steps = 40_000
    cfg.train.max_minutes = 115.0
    cfg.train.val_every = 850
    cfg.train.ckpt_every = 850
    cfg.train.log_every = 50
    cfg.grad_cosine_every = 500
    return cfg


@DYNAMICS_RECIPES.register
def abl_cpu() -> DynamicsRunConfig:
    """The CPU ablation grid's runs (``farsight ablate``): small enough that 8 variants x 3
    seeds train and evaluate in about 35 minutes on one core (fp32, one thread, one process).
    Its own size, so retuning the quickstart never changes a committed ablation."""
    cfg = DynamicsRunConfig(
        model=DynamicsConfig(depth=3, width=128, num_heads=4, patch=4, window=8)
    )
    cfg.data = DynamicsDataConfig(clip_len=8, val_clips=16, sample_frames=0)
    cfg.train = TrainConfig(
        steps=200,
        batch_size=8,
        workers=0,
        log_every=10,
        val_every=200,
        ckpt_every=50,
        precision="fp32",
        threads=1,
    )
    cfg.train.optim.lr = 2e-3
    cfg.train.optim.warmup_steps = 20
    cfg.train.optim.weight_decay = 0.01
    cfg.train.ema_decay = 0.98
    cfg.grad_cosine_every = 50
    return cfg


@DYNAMICS_RECIPES.register
def dyn_tiny() -> DynamicsRunConfig:
    """For tests: seconds on a CPU."""
    cfg = DynamicsRunConfig(model=dynamics_tiny())
    cfg.model.heads.depths = (0, 0, 0)
    cfg.data = DynamicsDataConfig(clip_len=4, val_clips=4, sample_frames=6)
    cfg.train = TrainConfig(
        steps=6,
        batch_size=2,
        workers=0,
        log_every=2,
        val_every=3,
        ckpt_every=3,
        precision="fp32",
    )
    cfg.train.optim.warmup_steps = 2
    return cfg


@DYNAMICS_RECIPES.register
def dyn_maskgit() -> DynamicsRunConfig:
    """The Genie path on CPU: MaskGIT over an FSQ autoencoder's tokens (``ae_fsq``), the
    quickstart's backbone and heads; add ``data.actions=latent data.lam=LAM_RUN`` for latent
    actions. Rollouts use 8 MaskGIT steps per frame and the most likely token (temperature 0):
    on the arena's val split (8 clips x 32 frames, a 12-minute run) temperature 0 had the
    best PSNR at horizons 1 and 4 (21.1 / 19.9 dB against 21.0 / 19.7 at 0.5 and 20.8 / 19.6
    at 1.0) and the best SSIM at every horizon; ``--sampling.temperature 1`` samples."""
    cfg = dyn_quickstart()
    # The trunk its committed results were measured with (the quickstart's inputs are not
    # yet measured on tokens).
    cfg.model = dynamics_quickstart()
    cfg.data.clip_len = 8  # its window, as measured
    cfg.objective = ObjectiveConfig(kind="maskgit")
    # Generated contexts train a next-frame objective's last frame; MaskGIT masks every frame.
    cfg.rollout_context = RolloutContextConfig()
    cfg.sampling = SamplingConfig(steps=8, temperature=0.0)
    cfg.train.max_minutes = 12.0
    return cfg


@DYNAMICS_RECIPES.register
def dyn_maskgit_next() -> DynamicsRunConfig:
    """Next-frame MaskGIT on 2 cores in 35 minutes: ``dyn_maskgit`` with the quickstart's
    inputs (``follows_actions``), a window of 4 and clips of 5, only each clip's last frame
    masked and trained (``objective.mask_frames=last``: the frame a rollout asks for), and
    from step 4,500 on half of each batch's clips with a context it generated itself, at 2
    MaskGIT steps a frame (rollouts keep 8).

    Measured on the arena (``docs/results/follow_actions/``, "The player at the walls, ...";
    the run set ``sampling.steps=2`` for the whole run, so its validation videos sampled at 2
    steps too, and was evaluated at 8): 7,542 steps, Delta-PSNR at h=4 0.85 dB [0.33, 1.35],
    PSNR above copy-last-frame at every horizon to 64 at full and 1/8 resolution. Without
    the generated contexts 35 minutes reach 1.02 dB at h=4 but fall under copy at 1/8
    resolution at h=64; with them from the start, under copy at h=1 (0.76 dB). In 15 minutes
    next-frame MaskGIT ends at 0.60 to 0.71 dB at h=4 whatever else changes: it needs the
    steps."""
    cfg = dyn_maskgit()
    cfg.model = follows_actions(cfg.model)
    cfg.model.window = 4
    cfg.data.clip_len = 5
    cfg.objective.mask_frames = "last"
    cfg.rollout_context = RolloutContextConfig(fraction=0.5, start_step=4500, steps=2)
    cfg.train.steps = 20_000
    cfg.train.max_minutes = 35.0
    return cfg


@DYNAMICS_RECIPES.register
def dyn_maskgit_tiny() -> DynamicsRunConfig:
    """For tests: the tiny recipe with the MaskGIT objective (needs an fsq autoencoder)."""
    cfg = dyn_tiny()
    cfg.objective = ObjectiveConfig(kind="maskgit")
    return cfg


@DYNAMICS_RECIPES.register
def dyn_gpu_S() -> DynamicsRunConfig:  # noqa: N802 (DiT's size names)
    """A GPU preset: DiT-S-sized trunk, bf16, bigger batches and longer windows."""
    cfg = DynamicsRunConfig(model=dynamics_S())
    cfg.data.clip_len = 32
    cfg.train = TrainConfig(
        steps=100_000,
        batch_size=32,
        workers=6,
        log_every=50,
        val_every=2000,
        ckpt_every=2000,
        precision="auto",
    )
    cfg.train.optim.lr = 3e-4
    cfg.train.optim.warmup_steps = 2000
    cfg.train.optim.weight_decay = 0.01
    cfg.grad_cosine_every = 1000
    return cfg
