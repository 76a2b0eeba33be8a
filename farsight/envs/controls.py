"""What ``farsight play`` needs from an environment: the gymnasium interface plus play controls.

Anything the play server can serve is a *playable* env: a real farsight env (``FarsightEnv``) or
the world model wrapped as ``WorldModelEnv``. The server only uses:

- ``reset(seed=None | int, options={"prompt": "random"})`` -> ``(frame, info)``. Real envs ignore
  ``options`` (gymnasium convention); a world model starts from a real prompt (context frames
  taken from recorded data), drawn at random, deterministically when ``seed`` is given.
- ``step(action)`` -> ``(frame, reward, terminated, truncated, info)``; frames are uint8
  ``(H, W, 3)`` arrays, actions ints in ``[0, len(action_meanings))``.
- ``action_meanings``: one short name per action (keyboard bindings are derived from them, see
  ``farsight.play.keymap``).
- ``close()``: called when the session ends.
- optional ``controls`` (below) and ``configure(**settings)``.
- optional ``preview_actions(steps)`` -> ``(A, steps, H, W, 3)`` uint8: what holding each action
  would show from the current frame, leaving the env as it was (the page's "preview keys"),
  and ``latent_actions = True`` to have previews sent after every reset.

Controls
--------
``controls: dict[str, dict]`` describes the settings a player may change while playing, each
as a JSON-serialisable spec with its *current* value::

    {"steps":   {"type": "int", "min": 1, "max": 16, "value": 4, "label": "denoising steps"},
     "context": {"type": "choice", "options": ["clean", "stable", "dynamic"], "value": "stable"}}

Spec types: ``int`` and ``float`` (``min``, ``max``, optional ``step``), ``choice``
(``options``: a list of strings), ``bool``. Optional keys: ``label`` (shown instead of the name)
and ``help`` (a tooltip). ``configure(**settings)`` validates every setting before applying any
(``validate_settings`` does this for you), raises ``ValueError`` naming the bad key or value,
and updates ``controls[...]["value"]``: the page re-renders from ``controls`` after every
change. Real envs have no controls: ``env_controls(env)`` is then ``{}`` and the server never
calls ``configure``.

The name ``fps`` is reserved: it is the play session's own tick rate, not an env setting.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import numpy as np

CONTROL_TYPES = ("int", "float", "choice", "bool")
RESERVED_CONTROLS = ("fps",)


@runtime_checkable
class PlayableEnv(Protocol):
    """The interface ``farsight play`` drives (see the module docstring)."""

    action_meanings: tuple[str, ...]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]: ...

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]: ...

    def close(self) -> None: ...


def env_controls(env: Any) -> dict[str, dict]:
    """The env's controls (``{}`` for envs without any), checked to be well-formed."""
    controls = getattr(env, "controls", None) or {}
    check_controls(controls)
    return controls


def check_controls(controls: dict[str, dict]) -> None:
    """Raise ValueError if a control spec is malformed: a bug in the env, caught at session start
    rather than as a broken widget on the page."""
    if not isinstance(controls, dict):
        raise ValueError(f"controls must be a dict of name -> spec, got {type(controls).__name__}")
    for name, spec in controls.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"control names must be non-empty strings, got {name!r}")
        if name in RESERVED_CONTROLS:
            raise ValueError(f"control name {name!r} is reserved by the play server")
        if not isinstance(spec, dict) or spec.get("type") not in CONTROL_TYPES:
            raise ValueError(
                f"control {name!r}: spec needs 'type' in {CONTROL_TYPES}, got {spec!r}"
            )
        kind = spec["type"]
        if kind in ("int", "float"):
            for key in ("min", "max"):
                if not _is_number(spec.get(key), integral=kind == "int"):
                    raise ValueError(f"control {name!r}: {key!r} must be an {kind}, got {spec!r}")
            if spec["min"] > spec["max"]:
                raise ValueError(f"control {name!r}: min > max in {spec!r}")
        if kind == "choice":
            options = spec.get("options")
            if not isinstance(options, list | tuple) or not options:
                raise ValueError(f"control {name!r}: 'options' must be a non-empty list")
            if not all(isinstance(o, str) for o in options):
                raise ValueError(f"control {name!r}: options must be strings, got {options!r}")
        # The current value must itself be valid, or the page would start in an invalid state.
        validate_setting(name, spec, spec.get("value"))


def validate_setting(name: str, spec: dict, value: Any) -> Any:
    """``value`` checked against ``spec`` and normalised (ints stay ints, floats become float);
    ValueError names the control and the value at fault."""
    kind = spec["type"]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"control {name!r} takes true or false, got {value!r}")
        return value
    if kind == "choice":
        if value not in spec["options"]:
            raise ValueError(
                f"control {name!r} takes one of {list(spec['options'])}, got {value!r}"
            )
        return value
    # JSON has one number type: accept 3.0 for an int control, never True (bool is an int).
    if not _is_number(value, integral=kind == "int"):
        raise ValueError(f"control {name!r} takes an {kind}, got {value!r}")
    value = int(value) if kind == "int" else float(value)
    if not spec["min"] <= value <= spec["max"]:
        raise ValueError(
            f"control {name!r} takes values in [{spec['min']}, {spec['max']}], got {value!r}"
        )
    return value


def validate_settings(controls: dict[str, dict], settings: dict[str, Any]) -> dict[str, Any]:
    """All of ``settings`` validated against ``controls`` (unknown names are errors); returns the
    normalised values. Nothing is applied, so a bad setting leaves the env unchanged."""
    if not isinstance(settings, dict) or not settings:
        raise ValueError(f"settings must be a non-empty object, got {settings!r}")
    out = {}
    for name, value in settings.items():
        if name not in controls:
            known = ", ".join(controls) or "none"
            raise ValueError(f"unknown control {name!r} (known: {known})")
        out[name] = validate_setting(name, controls[name], value)
    return out


def _is_number(value: Any, *, integral: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if not math.isfinite(value):
        return False
    return not integral or float(value).is_integer()
