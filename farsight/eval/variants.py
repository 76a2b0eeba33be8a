"""Named ablation variants: edits of a dynamics run config, one function each (no string exec).

A variant takes the run config built from the grid's recipe and overrides and changes only
what it ablates, in place; the docstring's first line describes it in the report. Register
your own with ``register_variant``. Every variant is applied on top of the recipe, so all
share its model size, data, optimizer and step count (the ablation's equal compute).

The multi-frame variants keep the recipe's far-head depths and loss weights; only offsets,
resolutions and the post's extensions change.

The MaskGIT variants (Genie's objective) train on the FSQ tokens of the grid's token
autoencoder (``farsight ablate --token-autoencoder``) instead of the continuous latents; the
backbone, heads, data, optimizer and steps stay the recipe's, so they meet diffusion forcing
at equal compute. They roll out as ``dyn_maskgit`` does (its MaskGIT steps and temperature).
"""

from __future__ import annotations

from collections.abc import Callable

from farsight.config import ConfigError
from farsight.train.recipes.dynamics import DynamicsRunConfig, dyn_maskgit

Variant = Callable[[DynamicsRunConfig], None]
VARIANTS: dict[str, Variant] = {}

DEFAULT_GRID = (
    "next_frame",
    "skip_fullres",
    "contiguous",
    "skip_cascade",
    "skip_cascade_aux",
    "skip_cascade_early",
    "skip_cascade_multires",
    "nf_diffusion",
)
"""The issue's grid: every variant below except ``post_full``."""

SKIP = (1, 2, 4, 8)
CASCADE = (1, 2, 4, 8)


def register_variant(fn: Variant) -> Variant:
    VARIANTS[fn.__name__] = fn
    return fn


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ConfigError(f"unknown variant {name!r}; known variants: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def describe(name: str) -> str:
    doc = get_variant(name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else name


@register_variant
def next_frame(cfg: DynamicsRunConfig) -> None:
    """Next frame only: head 1, diffusion forcing (the baseline)."""
    cfg.model.heads.offsets = (1,)


@register_variant
def skip_fullres(cfg: DynamicsRunConfig) -> None:
    """Heads (1, 2, 4, 8), all at full resolution."""
    cfg.model.heads.offsets = SKIP
    cfg.model.heads.resolutions = (1, 1, 1, 1)


@register_variant
def contiguous(cfg: DynamicsRunConfig) -> None:
    """Heads (1, 2, 3, 4) (no skips) with the cascade (1, 1/2, 1/4, 1/8)."""
    cfg.model.heads.offsets = (1, 2, 3, 4)
    cfg.model.heads.resolutions = CASCADE


@register_variant
def skip_cascade(cfg: DynamicsRunConfig) -> None:
    """Heads (1, 2, 4, 8) with the resolution cascade (1, 1/2, 1/4, 1/8): the post's proposal."""
    cfg.model.heads.offsets = SKIP
    cfg.model.heads.resolutions = CASCADE


@register_variant
def skip_cascade_aux(cfg: DynamicsRunConfig) -> None:
    """skip_cascade + the auxiliary self-consistency loss (mu = 0.1)."""
    skip_cascade(cfg)
    cfg.model.heads.aux_weight = 0.1


@register_variant
def skip_cascade_early(cfg: DynamicsRunConfig) -> None:
    """skip_cascade, far heads branching one block before the end (early branch)."""
    skip_cascade(cfg)
    cfg.model.heads.branch_layer = -2


@register_variant
def skip_cascade_multires(cfg: DynamicsRunConfig) -> None:
    """skip_cascade + multi-resolution loss per frame (every head also on coarser levels)."""
    skip_cascade(cfg)
    cfg.model.heads.multires = True


@register_variant
def nf_diffusion(cfg: DynamicsRunConfig) -> None:
    """Next frame only, next-frame diffusion as the base objective (vs diffusion forcing)."""
    cfg.model.heads.offsets = (1,)
    cfg.objective.kind = "next_frame"


@register_variant
def maskgit(cfg: DynamicsRunConfig) -> None:
    """Next frame only, MaskGIT over FSQ tokens (Genie) as the base objective."""
    cfg.model.heads.offsets = (1,)
    _use_maskgit(cfg)


@register_variant
def maskgit_skip_cascade(cfg: DynamicsRunConfig) -> None:
    """skip_cascade with the MaskGIT objective (far heads predict coarse token maps)."""
    skip_cascade(cfg)
    _use_maskgit(cfg)


def _use_maskgit(cfg: DynamicsRunConfig) -> None:
    cfg.objective.kind = "maskgit"
    genie = dyn_maskgit().sampling  # steps and temperature chosen for MaskGIT rollouts
    cfg.sampling.steps, cfg.sampling.temperature = genie.steps, genie.temperature


@register_variant
def post_full(cfg: DynamicsRunConfig) -> None:
    """skip_cascade + aux + early branch + multi-resolution: every part of the post."""
    skip_cascade(cfg)
    cfg.model.heads.aux_weight = 0.1
    cfg.model.heads.branch_layer = -2
    cfg.model.heads.multires = True
