"""``SamplingConfig``: every choice a rollout makes, as one typed config (``sampling.*`` keys).

Commands expose each field as ``--sampling.<field> VALUE`` (``add_sampling_arguments``); the
values go through the project's typed overrides, so a bad one is an error naming its key.
Importing this module does not import torch (the CLI builds its parsers from it).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

from farsight.config import ConfigError, apply_overrides
from farsight.sampling.context import CONTEXT_POLICIES, ContextPolicy

# The choices, here rather than beside their code so that commands can build their parsers
# without importing torch.
SAMPLERS = ("ddim", "euler", "heun")
SCHEDULINGS = ("autoregressive", "chunked", "pyramid", "full_sequence")


@dataclass
class SamplingConfig:
    steps: int = 4
    """Denoising steps per frame (few-step: 2-8); MaskGIT models: unmasking steps per frame."""
    temperature: float = 1.0
    """MaskGIT models: temperature of the token draws (0: the most likely token) and scale of
    the annealed noise on the confidence ranking."""
    sampler: str = "ddim"
    """ddim, euler (the same as ddim for the linear schedule) or heun (2 model calls a step)."""
    shift: float = 1.0
    """Timestep shift of the level grid (SD3): > 1 spends more steps at high noise."""
    scheduling: str = "autoregressive"
    """autoregressive (one frame at a time), chunked (``chunk`` frames on one grid), pyramid
    (``chunk`` frames, each lagging its predecessor by ``pyramid_lag`` rows), full_sequence
    (every frame of the rollout on one grid). Needs the actions ahead: ``step`` of the world
    model env is always autoregressive, its ``generate`` uses this."""
    chunk: int = 4
    """Frames per chunk (chunked, pyramid)."""
    chunk_context: int = 0
    """chunked / pyramid: condition each chunk on its last k frames only (0: the whole window)."""
    pyramid_lag: int = 1
    """pyramid: rows by which frame j starts after frame j-1."""
    context: str = "stable"
    """clean, stable (labelled and optionally noised at ``context_level``) or dynamic (noised
    to min(target level, ``dynamic_cap``) at every step; recomputes the window every step)."""
    context_level: float | None = None
    """stable: the context level c; None: the objective's context_level (0.02 by default)."""
    context_noise: bool = True
    """stable: actually noise the context to c (in distribution); false: label it only."""
    dynamic_cap: float = 0.3
    """dynamic: the highest level the context is noised to."""
    action_guidance: float = 1.0
    """Classifier-free guidance on the action, w: each step's prediction is
    free + w (given - free), ``free`` the model told no action (models trained with
    ``objective.action_dropout``). 1: off (one model call a step); > 1 exaggerates what the
    action does, at twice the calls."""
    kv_cache: bool = True
    """Keep the context's keys and values in a ring of W frames, computed once per frame; false:
    recompute the last W frames at every denoising step (open-oasis style)."""

    def validate(self) -> SamplingConfig:
        def choice(key: str, options: tuple[str, ...]) -> None:
            if getattr(self, key) not in options:
                raise ConfigError(
                    f"sampling.{key}={getattr(self, key)!r}; expected one of {', '.join(options)}"
                )

        choice("sampler", SAMPLERS)
        choice("scheduling", SCHEDULINGS)
        choice("context", CONTEXT_POLICIES)
        for key, low in (("steps", 1), ("chunk", 1), ("chunk_context", 0), ("pyramid_lag", 1)):
            if getattr(self, key) < low:
                raise ConfigError(f"sampling.{key}={getattr(self, key)} must be >= {low}")
        if self.temperature < 0:
            raise ConfigError(f"sampling.temperature={self.temperature} must be >= 0")
        if self.shift <= 0:
            raise ConfigError(f"sampling.shift={self.shift} must be > 0")
        if self.context_level is not None and not 0.0 <= self.context_level < 1.0:
            raise ConfigError(f"sampling.context_level={self.context_level} must lie in [0, 1)")
        if self.action_guidance < 0:
            raise ConfigError(f"sampling.action_guidance={self.action_guidance} must be >= 0")
        if not 0.0 <= self.dynamic_cap <= 1.0:
            raise ConfigError(f"sampling.dynamic_cap={self.dynamic_cap} must lie in [0, 1]")
        return self

    def policy(self, objective_level: float = 0.02) -> ContextPolicy:
        """The context policy; its stable context level is ``context_level``, else
        ``objective_level`` (pass the objective's ``context_level``)."""
        level = objective_level if self.context_level is None else self.context_level
        return ContextPolicy(self.context, level, self.context_noise, self.dynamic_cap)


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """``--sampling.<field> VALUE`` for every field of SamplingConfig."""
    group = parser.add_argument_group("sampling (see farsight/sampling/config.py)")
    defaults = SamplingConfig()
    for f in dataclasses.fields(SamplingConfig):
        group.add_argument(
            f"--sampling.{f.name}",
            dest=f"sampling__{f.name}",
            metavar="V",
            default=None,
            help=f"(default: the model's own, else {getattr(defaults, f.name)})",
        )


def sampling_overrides(args: argparse.Namespace) -> list[str]:
    """The ``--sampling.<field>`` flags given, as ``field=value`` overrides."""
    return [
        f"{f.name}={value}"
        for f in dataclasses.fields(SamplingConfig)
        if (value := getattr(args, f"sampling__{f.name}", None)) is not None
    ]


def model_sampling(world_model: Any) -> SamplingConfig:
    """How a world model samples unless told otherwise: its run config's ``sampling`` (a
    recipe's choice, e.g. fewer steps for a CPU model), else the defaults."""
    run_config = getattr(world_model, "config", None)
    sampling = getattr(run_config, "sampling", None)
    return dataclasses.replace(sampling) if sampling is not None else SamplingConfig()


def sampling_from_args(args: argparse.Namespace, base: SamplingConfig | None = None) -> Any:
    """The SamplingConfig given on the command line over ``base`` (typed and validated); pass
    ``model_sampling(world_model)`` as base so that flags override the model's own defaults."""
    overrides = sampling_overrides(args)
    try:
        cfg = apply_overrides(base or SamplingConfig(), overrides)
    except ConfigError as e:
        raise ConfigError(str(e).replace("config key '", "config key 'sampling.")) from None
    return cfg.validate()
