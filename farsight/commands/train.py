"""``farsight train <model>``: train a model into a run folder (``--resume`` continues it)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

# model -> (module with run_command(args), help). Modules are imported only when run, so the
# CLI starts fast. A trainer for another model adds a line here.
TRAINERS = {
    "autoencoder": (
        "farsight.train.autoencoder",
        "train the frame autoencoder on an episode store (recipes: ae_cpu, ae_arena, "
        "ae_arena_hifi, ae_atari, ae_fsq, ae_vae, ae_gpu, ae_tiny)",
    ),
    "dynamics": (
        "farsight.train.dynamics",
        "train the dynamics model (diffusion forcing + multi-frame heads) on the latents of an "
        "episode store (recipes: dyn_quickstart, dyn_gpu_S, dyn_tiny); under torchrun: DDP, "
        "or FSDP2 with parallel.strategy=fsdp",
    ),
    "lam": (
        "farsight.train.lam",
        "train the latent action model on frame pairs of an episode store (true actions "
        "are only compared with; recipes: lam_cpu, lam_vq, lam_gpu, lam_tiny)",
    ),
}


class OverridesParser(argparse.ArgumentParser):
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (autoencoder, ...)")
    model_sub = p.add_subparsers(
        dest="model", required=True, metavar="model", parser_class=OverridesParser
    )
    for name, (module, help_text) in TRAINERS.items():
        tp = model_sub.add_parser(name, help=help_text, description=help_text)
        add_common_arguments(tp)
        if name == "dynamics":
            tp.add_argument("--autoencoder", help="autoencoder checkpoint or run folder")
        tp.set_defaults(func=run, trainer_module=module)


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", help="recipe name (default: the model's CPU recipe)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    p.add_argument("--data", help="episode store (or latent cache) to train on")
    p.add_argument("--out", required=True, help="run folder: checkpoint, logs, samples")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--steps", type=int, help="total optimizer steps (train.steps)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (train.device)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summaries")


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(args.trainer_module).run_command(args)


def config_from_args(args: argparse.Namespace, book, default_recipe: str, empty):
    """The run config a ``train`` command asks for: recipe, then flags, then overrides.

    With ``--resume`` the checkpoint's stored config is used, so no recipe, flag or override
    is accepted and ``empty()`` (a default config, for re-pointed data paths) is returned.
    """
    from farsight.config import build_config
    from farsight.errors import UsageError
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
