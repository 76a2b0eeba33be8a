"""Optional dependencies: what a base install (``pip install farsight``) lacks, and in which
extra of ``pyproject.toml`` it is.

A module that needs one imports it where it is used (``require``), so the CLI and everything
else start without it; where it is missing, the error is one line naming the extra to install
(the CLI turns any such ``ModuleNotFoundError`` into that line too).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from farsight.errors import FarsightError

# import name -> (distribution, extra); tests check it against pyproject.toml's extras.
OPTIONAL = {
    "skimage": ("scikit-image", "train"),
    "matplotlib": ("matplotlib", "train"),
    "tensorboard": ("tensorboard", "train"),
    "ale_py": ("ale-py", "games"),
    "crafter": ("crafter", "games"),
    "vizdoom": ("vizdoom", "games"),
}


class MissingExtraError(FarsightError):
    """An optional dependency is not installed; the message names the extra that has it."""


def missing_extra_message(module: str, purpose: str = "") -> str | None:
    """The one-line message for missing ``module``, or None if it is not an optional one."""
    top = module.split(".")[0]
    if top not in OPTIONAL:
        return None
    dist, extra = OPTIONAL[top]
    need = f"{purpose} needs" if purpose else "this needs"
    return (
        f"{need} {dist} (import {top}), which is not installed: it comes with farsight's "
        f"'{extra}' extra: pip install 'farsight[{extra}]' (in a clone: pip install -e "
        f"'.[{extra}]')"
    )


def require(module: str, purpose: str = "") -> ModuleType:
    """Import optional ``module``; raise MissingExtraError naming its extra if it is absent."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        message = missing_extra_message(e.name or module, purpose)
        if message is None:
            raise
        raise MissingExtraError(message) from None
