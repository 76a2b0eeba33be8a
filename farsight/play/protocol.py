"""The env controls under their former module name: ``farsight.play.controls`` holds them."""

from farsight.play.controls import (
    CONTROL_TYPES,
    RESERVED_CONTROLS,
    PlayableEnv,
    check_controls,
    env_controls,
    validate_setting,
    validate_settings,
)

__all__ = [
    "CONTROL_TYPES",
    "RESERVED_CONTROLS",
    "PlayableEnv",
    "check_controls",
    "env_controls",
    "validate_setting",
    "validate_settings",
]
