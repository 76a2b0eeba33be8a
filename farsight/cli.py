"""The ``farsight`` command: ``farsight <command> [options] [recipe] [key.sub=value ...]``."""

from __future__ import annotations

import argparse
import importlib
import sys

from farsight.errors import FarsightError

# Each module defines register(subparsers); its parsers set func=run(args).
COMMANDS = (
    "farsight.commands.record",
    "farsight.commands.data",
    "farsight.commands.bench",
    "farsight.commands.train",
    "farsight.commands.encode",
    "farsight.commands.quickstart",
    "farsight.commands.play",
    "farsight.commands.rollout",
    "farsight.commands.eval",
    "farsight.commands.ablate",
)

# Errors caused by the user's input: shown as one clear line, not a traceback.
USER_ERRORS = (FarsightError, FileNotFoundError, FileExistsError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="farsight",
        description="Record games, train action-conditioned world models, play and measure them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args) or 0
    except USER_ERRORS as e:
        print(f"farsight {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"farsight {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
