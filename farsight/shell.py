"""Command lines printed for the user to paste: they run in a fresh shell.

Lives below every other module (it imports nothing of farsight), so a library module that
names a command in an error message does not import the CLI.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def executable(name: str) -> list[str]:
    """How to run console script ``name`` of this environment from a fresh shell.

    A virtual environment's scripts sit beside its python (``sys.executable``), and a fresh
    shell has that folder on no PATH, so a bare ``farsight`` printed for the user to paste
    would not be found: the script is named by its path (relative to the working folder when
    inside it, like the other paths printed beside it). Without the script, ``python -m``.
    """
    script = Path(sys.executable).parent / name
    if script.is_file():
        return [display_path(script)]
    modules = {"farsight": "farsight.cli", "tensorboard": "tensorboard.main"}
    return [display_path(Path(sys.executable)), "-m", modules.get(name, name)]


def display_path(path: Path) -> str:
    """``path`` relative to the working folder when inside it (no symlinks resolved: a venv's
    python is a link to the system one), else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def command_line(*args: object, program: str = "farsight") -> str:
    """A ``farsight ...`` command line to print for the user: it runs where it is pasted."""
    return shlex.join([*executable(program), *map(str, args)])
