"""What defines an ablation grid, the run config of each cell, and where its files live."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farsight.config import apply_overrides, from_dict
from farsight.errors import UsageError
from farsight.eval.run import DONE_FILE, EvalConfig
from farsight.eval.variants import get_variant
from farsight.io import atomic_write_json, read_json
from farsight.objectives import TOKEN_OBJECTIVES
from farsight.train.checkpoint import load_checkpoint
from farsight.train.recipes.dynamics import DYNAMICS_RECIPES, DynamicsRunConfig

SPEC_FILE = "ablate.json"
RUN_FILE = "run.json"
FLOPS_FILE = "flops.json"


@dataclass
class AblateSpec:
    """What defines a grid; stored in OUT/ablate.json and checked when a grid is resumed."""

    recipe: str
    data: str
    autoencoder: str
    overrides: tuple[str, ...] = ()
    eval: EvalConfig = field(default_factory=EvalConfig)
    token_autoencoder: str = ""
    """FSQ autoencoder whose tokens the MaskGIT variants train on (empty: the grid has none)."""

    def as_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["overrides"] = list(self.overrides)
        d["eval"]["scales"] = list(self.eval.scales)
        return d


@dataclass
class RunRecord:
    variant: str
    seed: int
    steps: int
    train_seconds: float
    eval_seconds: float


def run_dir(out: Path, variant: str, seed: int) -> Path:
    return out / variant / f"seed{seed}"


def is_done(out: Path, variant: str, seed: int) -> bool:
    """A cell is finished once its evaluation has written its README.md (the last file)."""
    return (run_dir(out, variant, seed) / "eval" / DONE_FILE).exists()


def run_config(spec: AblateSpec, variant: str, seed: int) -> DynamicsRunConfig:
    """The run config of one cell: recipe, then the grid's overrides, then the variant's edit
    (so a grid-wide override can never undo what a variant ablates), then the seed."""
    cfg = apply_overrides(DYNAMICS_RECIPES.get(spec.recipe), list(spec.overrides))
    cfg.data.path, cfg.data.autoencoder = spec.data, spec.autoencoder
    get_variant(variant)(cfg)
    if cfg.objective.kind in TOKEN_OBJECTIVES:
        if not spec.token_autoencoder:
            raise UsageError(
                f"variant {variant} trains MaskGIT on FSQ tokens: give --token-autoencoder "
                "AE_RUN (an fsq autoencoder of the same store, e.g. recipe ae_fsq)"
            )
        cfg.data.autoencoder = spec.token_autoencoder
    cfg.train.seed = seed
    if cfg.train.max_minutes > 0:
        raise UsageError(
            f"recipe {spec.recipe} sets train.max_minutes={cfg.train.max_minutes}: an ablation "
            "compares equal step counts; override train.max_minutes=0"
        )
    return cfg


def check_spec(out: Path, spec: AblateSpec) -> None:
    """Write OUT/ablate.json, or check the grid being resumed was made with the same spec."""
    path = out / SPEC_FILE
    want = spec.as_json()
    if path.exists():
        have = read_json(path, "ablation spec")
        # A key added to the spec after a grid was made holds its default there.
        defaults = AblateSpec(spec.recipe, spec.data, spec.autoencoder).as_json()
        for key in want:
            if have.get(key, defaults[key]) != want[key]:
                raise UsageError(
                    f"{path} was made with {key}={have.get(key)!r}, this run asks for "
                    f"{want[key]!r}: choose another --out (or remove that grid)"
                )
        return
    atomic_write_json(path, want)


def check_token_autoencoder(path: str) -> None:
    """The MaskGIT variants' autoencoder must make FSQ tokens: checked before any training."""
    ckpt = load_checkpoint(path, kind="autoencoder")
    kind = ckpt["config"].get("model", {}).get("kind")
    if kind != "fsq":
        raise UsageError(
            f"--token-autoencoder {path} is a {kind!r} autoencoder; the MaskGIT variants need "
            "an fsq one (farsight train autoencoder ae_fsq ...)"
        )


def trained_config(path: Path) -> DynamicsRunConfig:
    """The config a run trained with (its config.json, latent geometry filled in)."""
    stored = read_json(path / "config.json", "run config")
    return from_dict(DynamicsRunConfig, stored["config"], source=str(path / "config.json"))
