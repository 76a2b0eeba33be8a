"""The latent action model's run config and its named recipes (``farsight train lam RECIPE``).

A recipe is a function returning a whole ``LAMRunConfig``; ``LAM_RECIPES`` lists them by name
for the command line. The trainer that runs one is ``farsight/train/lam.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from farsight.config import RecipeBook
from farsight.lam_config import LAMConfig, LAMLossConfig
from farsight.train.config import TrainConfig

KIND = "lam"


@dataclass
class LAMDataConfig:
    path: str = ""
    """Episode store to train on (``--data``)."""
    val_pairs: int = 256
    """Validation pairs for the prediction error (fixed, spread over the val split)."""
    agreement_pairs: int = 2000
    """Pairs of the val split used for the NMI at each validation (0: all)."""
    grid_pairs: int = 8
    """Val frames in the per-code pictures: ``samples/actions_step*.png`` at each validation and
    ``latent_actions.png`` at the end (0: none)."""


@dataclass
class LAMRunConfig:
    model: LAMConfig = field(default_factory=LAMConfig)
    objective: LAMLossConfig = field(default_factory=LAMLossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: LAMDataConfig = field(default_factory=LAMDataConfig)


LAM_RECIPES = RecipeBook(KIND)


@LAM_RECIPES.register
def lam_cpu() -> LAMRunConfig:
    """CPU recipe (2 shared cores, fp32, ~10 minutes): 8 latent actions by FSQ (2 x 2 x 2),
    both networks at 16x16 (patch 4), width 64. The encoder reads the cost volume's pooled
    motion evidence (``motion_readout``): at 400 steps on the arena it raised the test NMI from
    0.041 to 0.145."""
    cfg = LAMRunConfig()
    cfg.model.motion_readout = True
    cfg.train = TrainConfig(
        steps=6000,
        batch_size=32,
        workers=0,
        log_every=25,
        val_every=500,
        ckpt_every=500,
        max_minutes=10.0,
        precision="fp32",
    )
    cfg.train.optim.lr = 2e-3
    cfg.train.optim.warmup_steps = 50
    cfg.train.ema_decay = 0.99
    return cfg


@LAM_RECIPES.register
def lam_move() -> LAMRunConfig:
    """``lam_cpu`` with codes shaped as moves and the absolute error: 9 latent actions by FSQ
    3 x 3, read by the decoder as a move of 2 px per unit on each axis (``displacement``), and
    the prediction's error taken as |.|, not squared (the arena's discs, which move on their
    own, dominate a squared error, under which a blur along the camera's axis pays as much as
    the camera's exact move). At 400 steps on the arena: test NMI 0.204 against 0.145, the
    codes then telling left from right and up from down; given 30 minutes on 2 threads
    (``train.max_minutes=30``, 3,637 steps) 0.358, its codes the camera's move
    (``docs/results/lam``)."""
    cfg = lam_cpu()
    cfg.model.num_codes, cfg.model.fsq_levels = 9, (3, 3)
    cfg.model.displacement = 2.0
    cfg.objective.l2, cfg.objective.l1 = 0.0, 1.0
    return cfg


@LAM_RECIPES.register
def lam_vq() -> LAMRunConfig:
    """The CPU recipe with a cosine VQ codebook of 8 instead of FSQ."""
    cfg = lam_cpu()
    cfg.model.quantizer = "vq"
    return cfg


@LAM_RECIPES.register
def lam_gpu() -> LAMRunConfig:
    """A bigger LAM for one GPU."""
    cfg = lam_cpu()
    cfg.model.width, cfg.model.blocks, cfg.model.patch = 128, 2, 2
    cfg.train = TrainConfig(steps=30_000, batch_size=128, workers=4, precision="auto")
    cfg.train.optim.lr = 5e-4
    return cfg


@LAM_RECIPES.register
def lam_tiny() -> LAMRunConfig:
    """For tests: seconds on a CPU."""
    cfg = LAMRunConfig()
    cfg.model = LAMConfig(width=8, blocks=1, down=1, norm_groups=4)
    cfg.train = TrainConfig(
        steps=6, batch_size=4, workers=0, log_every=2, val_every=3, ckpt_every=3, precision="fp32"
    )
    cfg.train.optim.warmup_steps = 2
    cfg.data = LAMDataConfig(val_pairs=8, agreement_pairs=64, grid_pairs=2)
    return cfg
