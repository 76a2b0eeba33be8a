"""``farsight train <model>``: train a model into a run folder (``--resume`` continues it)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from farsight.cli import Parser
from farsight.config import build_config
from farsight.errors import UsageError


class TrainCommand(NamedTuple):
    """One ``farsight train <model>`` subcommand (the trainer it runs is in ``farsight.train``)."""

    module: str
    """Defines the run config and the RecipeBook ``recipes`` names (no torch imported there);
    ``RUNNERS`` turns the command line into a run."""
    recipes: str
    help: str
    data: str
    """What ``--data`` takes."""


# Recipe modules are imported only when a run starts or --help lists them, so the CLI starts
# fast. A trainer for another model adds a line here.
TRAINERS = {
    "autoencoder": TrainCommand(
        "farsight.train.recipes.autoencoder",
        "AE_RECIPES",
        "train the frame autoencoder on an episode store",
        "episode store to train on",
    ),
    "dynamics": TrainCommand(
        "farsight.train.recipes.dynamics",
        "DYNAMICS_RECIPES",
        "train the dynamics model (diffusion forcing + multi-frame heads) on the latents of an "
        "episode store; under torchrun: DDP, or FSDP2 with parallel.strategy=fsdp",
        "episode store to train on (frames); its latent cache is found or built under the "
        "autoencoder's run folder, or named with data.cache=PATH",
    ),
    "lam": TrainCommand(
        "farsight.train.recipes.lam",
        "LAM_RECIPES",
        "train the latent action model on frame pairs of an episode store (true actions "
        "are only compared with)",
        "episode store to train on",
    ),
}


HELP = f"train a model ({', '.join(TRAINERS)})"


def recipe_names(trainer: TrainCommand) -> list[str]:
    return getattr(importlib.import_module(trainer.module), trainer.recipes).names()


class OverridesParser(Parser):
    """Takes ``key=value`` overrides anywhere, also after options.

    argparse fills all positionals from the first run of them, so in ``recipe --out RUN a=1``
    the ``a=1`` would be an error; here such leftovers are appended to ``overrides``.
    """

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        stray = [a for a in extras if "=" in a and not a.startswith("-")]
        if stray:
            namespace.overrides = [*(getattr(namespace, "overrides", None) or []), *stray]
            extras = [a for a in extras if a not in stray]
        return namespace, extras


def register(sub: argparse._SubParsersAction, argv: list[str] | None = None) -> None:
    p = sub.add_parser("train", help=HELP)
    model_sub = p.add_subparsers(
        dest="model", required=True, metavar="model", parser_class=OverridesParser
    )
    for name, trainer in TRAINERS.items():
        tp = model_sub.add_parser(name, help=trainer.help, description=trainer.help)
        recipe = add_common_arguments(tp, trainer.data)
        # The recipe names come from the trainer's RecipeBook, imported (without torch) only
        # when this help is printed.
        tp.lazy_help(
            recipe,
            lambda t=trainer: (
                f"recipe name, one of: {', '.join(recipe_names(t))} (default: "
                "the model's CPU recipe)"
            ),
        )
        if name == "dynamics":
            tp.add_argument("--autoencoder", help="autoencoder checkpoint or run folder")
        tp.set_defaults(func=run)


def add_common_arguments(p: argparse.ArgumentParser, data_help: str) -> argparse.Action:
    """The arguments every trainer takes; returns the ``recipe`` argument."""
    recipe = p.add_argument("recipe", nargs="?", help="recipe name")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    p.add_argument("--data", help=data_help)
    p.add_argument("--out", required=True, help="run folder: checkpoint, logs, samples")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--steps", type=int, help="total optimizer steps (train.steps)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (train.device)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summaries")
    return recipe


def run(args: argparse.Namespace) -> int:
    return RUNNERS[args.model](args)


def _run_one_stream(args: argparse.Namespace, recipes, default: str, config_type, train) -> int:
    """A trainer that reads one store (``--data``): the autoencoder and the LAM."""
    # lazy: imported when the command runs: the trainers import torch, which --help never needs.
    from farsight.train.checkpoint import CHECKPOINT_NAME

    cfg = config_from_args(args, recipes, default, config_type)
    if args.data:
        cfg.data.path = str(Path(args.data).resolve())
    result = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    print(f"run {args.out}: step {result.step} ({result.stopped}); checkpoint {CHECKPOINT_NAME}")
    return 0


def run_autoencoder(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs: the trainer imports torch, which --help never needs.
    from farsight.train.autoencoder import train_autoencoder
    from farsight.train.recipes.autoencoder import AE_RECIPES, AutoencoderRunConfig

    return _run_one_stream(args, AE_RECIPES, "ae_cpu", AutoencoderRunConfig, train_autoencoder)


def run_lam(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs: the trainer imports torch, which --help never needs.
    from farsight.train.lam import train_lam
    from farsight.train.recipes.lam import LAM_RECIPES, LAMRunConfig

    return _run_one_stream(args, LAM_RECIPES, "lam_cpu", LAMRunConfig, train_lam)


def run_dynamics(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs: the trainer imports torch, which --help never needs.
    from farsight.train.dynamics import train_dynamics
    from farsight.train.recipes.dynamics import DYNAMICS_RECIPES, DynamicsRunConfig

    cfg = config_from_args(args, DYNAMICS_RECIPES, "dyn_quickstart", DynamicsRunConfig)
    for key, value in (("path", args.data), ("autoencoder", args.autoencoder)):
        if value:
            setattr(cfg.data, key, str(Path(value).resolve()))
    result = train_dynamics(cfg, args.out, resume=args.resume, progress=not args.quiet)
    print(f"run {args.out}: step {result.step} ({result.stopped})")
    return 0


RUNNERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "autoencoder": run_autoencoder,
    "dynamics": run_dynamics,
    "lam": run_lam,
}
"""Each trainer's command line turned into a run (commands are the one place that parses
arguments)."""


def config_from_args(args: argparse.Namespace, book, default_recipe: str, empty):
    """The run config a ``train`` command asks for: recipe, then flags, then overrides.

    With ``--resume`` the checkpoint's stored config is used, so no recipe, flag or override
    is accepted and ``empty()`` (a default config, for re-pointed data paths) is returned.
    """
    # lazy: imported when a run starts: checkpoints import torch, which --help never needs.
    from farsight.train.checkpoint import CHECKPOINT_NAME, CheckpointError

    recipe, overrides = args.recipe, list(args.overrides)
    if recipe and "=" in recipe:
        recipe, overrides = None, [recipe, *overrides]
    flags = {"train.steps": args.steps, "train.device": args.device}
    fixed = [f"{k}={v}" for k, v in flags.items() if v is not None]
    if not args.resume:
        return build_config(book, recipe or default_recipe, overrides, fixed)
    if recipe or overrides or fixed:
        raise UsageError(
            "--resume continues a run with the config stored in its checkpoint; "
            "drop the recipe and overrides (or start a new --out)"
        )
    if not (Path(args.out) / CHECKPOINT_NAME).exists():
        raise CheckpointError(f"--resume: run folder {args.out} holds no {CHECKPOINT_NAME}")
    return empty()
