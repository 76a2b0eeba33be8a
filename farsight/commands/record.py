"""``farsight record``: record an environment into an episode store."""

from __future__ import annotations

import argparse

from farsight.shell import command_line

HELP = "record an environment into an episode store"


def register(sub: argparse._SubParsersAction, argv: list[str] | None = None) -> None:
    # lazy: imported when this command's parser is built: cli imports every command module.
    from farsight.data.recorder import RECORD_RECIPES
    from farsight.envs import ENV_IDS

    p = sub.add_parser(
        "record",
        help=HELP,
        description="Record whole episodes under a behaviour policy until the store holds at "
        "least --frames frames. Re-running with a larger --frames continues the recording.",
    )
    p.add_argument(
        "recipe",
        nargs="?",
        default="arena",
        help=f"one of {', '.join(RECORD_RECIPES.names())} (default arena)",
    )
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    p.add_argument("--out", required=True, help="store folder (created or continued)")
    p.add_argument("--env", help=f"env id: {', '.join(ENV_IDS)}")
    p.add_argument("--frames", type=int, help="frames to hold in the store in total")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, help="parallel recording processes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs: cli imports every command module at startup.
    from farsight.config import build_config
    from farsight.data.recorder import RECORD_RECIPES, record

    recipe, overrides = args.recipe, list(args.overrides)
    if "=" in recipe:  # no recipe given, only overrides
        recipe, overrides = "arena", [recipe, *overrides]
    flags = {"env.id": args.env, "frames": args.frames, "seed": args.seed, "workers": args.workers}
    fixed = [f"{k}={v}" for k, v in flags.items() if v is not None]
    cfg = build_config(RECORD_RECIPES, recipe, overrides, fixed)
    writer = record(cfg, args.out)
    print(f"store {args.out}: {writer.num_episodes} episodes, {writer.num_frames} frames")
    print(f"inspect it with: {command_line('data', 'info', args.out)}")
    return 0
