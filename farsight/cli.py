"""The ``farsight`` command: ``farsight <command> [options] [recipe] [key.sub=value ...]``.

Start-up is kept light: a command module imports nothing heavy at import time (its ``run``
imports what it needs), and ``main`` builds only the parser of the command it was asked for;
the others are listed by their one-line ``HELP``. So ``farsight play --env arena`` or
``farsight record`` never import torch, and ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from farsight.errors import FarsightError
from farsight.extras import missing_extra_message

# Each module farsight.commands.<name> defines HELP (one line) and register(subparsers, argv)
# (argv: the words after the command, for commands that build only the subcommand asked for);
# its parsers set func=run(args).
COMMANDS = (
    "record",
    "data",
    "bench",
    "train",
    "encode",
    "label",
    "quickstart",
    "play",
    "rollout",
    "eval",
    "ablate",
)

# Errors caused by the user's input: shown as one clear line, not a traceback.
USER_ERRORS = (FarsightError, FileNotFoundError, FileExistsError)


def chosen(argv: Sequence[str] | None, choices: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word not an option), if one of ``choices``;
    None when ``argv`` is None (build every parser) or names none."""
    if argv is None:
        return None
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in choices else None


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help can list names from a registry that every start of the CLI
    should not import: ``lazy_help(action, text)`` calls ``text()`` for the action's help only
    when the help is printed, so the list is the registry's own, never a copy."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lazy_help: list[tuple[argparse.Action, Callable[[], str]]] = []

    def lazy_help(self, action: argparse.Action, text: Callable[[], str]) -> None:
        self._lazy_help.append((action, text))

    def format_help(self) -> str:
        for action, text in self._lazy_help:
            action.help = text()
        return super().format_help()


def add_placeholder(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """A subcommand that was not asked for: listed with its help line, parsed by nobody."""
    sub.add_parser(name, help=help_text, add_help=False)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: only the named command's parser is built (its module's
    imports are paid only by it). Without ``argv``, every command's parser is built."""
    parser = argparse.ArgumentParser(
        prog="farsight",
        description="Record games, train action-conditioned world models, play and measure them.",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="command", parser_class=Parser
    )
    wanted = chosen(argv, COMMANDS)
    for name in COMMANDS:
        module = importlib.import_module(f"farsight.commands.{name}")
        if argv is None or name == wanted:
            rest = list(argv[argv.index(name) + 1 :]) if argv is not None else None
            module.register(sub, rest)
        else:
            add_placeholder(sub, name, module.HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    args.argv = argv
    try:
        return args.func(args) or 0
    except USER_ERRORS as e:
        print(f"farsight {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        # An optional dependency imported where it is used (farsight.extras): one line that
        # names the extra to install, not a traceback.
        message = missing_extra_message(e.name or "", f"farsight {args.command}")
        if message is None:
            raise
        print(f"farsight {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"farsight {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
