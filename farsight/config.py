"""Typed, nested config dataclasses with ``key.sub=value`` overrides and named recipes.

A config is a tree of dataclasses. A *recipe* is a plain function returning one; variants
edit the returned object. Command-line overrides are merged through OmegaConf's structured
configs, which type-check every value against the dataclass fields, and the result is turned
back into the dataclasses, so the rest of farsight only ever sees typed objects.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from farsight.errors import FarsightError

C = TypeVar("C")


class ConfigError(FarsightError):
    """A bad override, recipe name or stored config; the message names the key."""


RENAMED_KEYS: dict[str, str] = {
    "model.ctx_noise_embed": "model.context_level_embed",
    "objective.context_tau": "objective.context_level",
    "objective.ctx_noise_max": "objective.context_level_max",
}
"""Run config keys that have a new name (old dotted key -> new). A stored config (checkpoint,
run folder) that has the old key loads into the new one; an override naming it is refused with
the new name."""


def valid_keys(cfg: Any, prefix: str = "") -> list[str]:
    """All dotted leaf keys of a config dataclass, e.g. ``env.arena.num_objects``."""
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            keys.extend(valid_keys(value, f"{prefix}{f.name}."))
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _node_at(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split(".") if dotted else []:
        node = getattr(node, part)
    return node


def _unknown_key_message(cfg: Any, key: str) -> str:
    parts = key.split(".")
    # Walk down while the path exists, so the message lists the keys at the level that failed.
    depth = 0
    node = cfg
    while depth < len(parts) - 1 and dataclasses.is_dataclass(node):
        if not any(f.name == parts[depth] for f in dataclasses.fields(node)):
            break
        node = getattr(node, parts[depth])
        depth += 1
    parent = ".".join(parts[:depth])
    where = f" under '{parent}'" if parent else ""
    if dataclasses.is_dataclass(node):
        options = ", ".join(valid_keys(node, f"{parent}." if parent else ""))
    else:
        options = f"('{parent}' is a value, not a group)"
    return f"unknown config key '{key}'; valid keys{where}: {options}"


def apply_overrides(cfg: C, overrides: Sequence[str]) -> C:
    """Return a copy of ``cfg`` with ``key.sub=value`` overrides applied and type-checked."""
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    base = OmegaConf.structured(cfg)
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_object(merged)
    except ConfigKeyError as e:
        key = str(e.full_key)
        if key in RENAMED_KEYS:
            raise ConfigError(f"{key} was renamed {RENAMED_KEYS[key]}") from None
        raise ConfigError(_unknown_key_message(cfg, key)) from None
    except ValidationError as e:
        key = str(e.full_key)
        expected = _field_type_name(cfg, key)
        raise ConfigError(
            f"config key '{key}': {e.msg.splitlines()[0]} (expected {expected})"
        ) from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"bad override: {e.msg.splitlines()[0]}") from None


def _field_type_name(cfg: Any, key: str) -> str:
    parent, _, name = key.rpartition(".")
    try:
        node = _node_at(cfg, parent)
        for f in dataclasses.fields(node):
            if f.name == name:
                return (
                    f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
                )
    except (AttributeError, TypeError):
        pass
    return "see the config dataclass"


def to_dict(cfg: Any) -> dict:
    """A JSON-serialisable dict (tuples become lists)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def _with_current_keys(data: dict) -> dict:
    """``data`` with every key of ``RENAMED_KEYS`` it holds moved to the new name."""
    data = copy.deepcopy(data)
    for old, new in RENAMED_KEYS.items():
        *path, name = old.split(".")
        node = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or name not in node:
            continue
        value = node.pop(name)
        *path, name = new.split(".")
        node = data
        for part in path:
            node = node.setdefault(part, {})
        node.setdefault(name, value)
    return data


def from_dict(cls: type[C], data: dict, source: str = "config") -> C:
    """Rebuild a config dataclass from ``to_dict`` output, checking keys and types; keys stored
    under an old name (``RENAMED_KEYS``) load into the new one."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), _with_current_keys(data))
        return OmegaConf.to_object(merged)
    except ConfigKeyError as e:
        raise ConfigError(f"{source}: {_unknown_key_message(cls(), str(e.full_key))}") from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"{source}: key '{e.full_key}': {e.msg.splitlines()[0]}") from None


class RecipeBook:
    """Named recipes for one config type: functions that return a fresh config."""

    def __init__(self, kind: str):
        self.kind = kind
        self._recipes: dict[str, Callable[[], Any]] = {}

    def register(self, fn: Callable[[], C]) -> Callable[[], C]:
        self._recipes[fn.__name__] = fn
        return fn

    def names(self) -> list[str]:
        return sorted(self._recipes)

    def get(self, name: str) -> Any:
        if name not in self._recipes:
            raise ConfigError(
                f"unknown {self.kind} recipe {name!r}; known recipes: {', '.join(self.names())}"
            )
        return self._recipes[name]()


def build_config(
    book: RecipeBook, recipe: str, overrides: Sequence[str], fixed: Sequence[str] = ()
) -> Any:
    """Recipe, then command-line flags (``fixed``), then ``key=value`` overrides."""
    return apply_overrides(book.get(recipe), [*fixed, *overrides])
