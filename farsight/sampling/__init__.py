"""Generation: schedules, few-step samplers, context policies, the KV-cached rollout.

    schedules   pure functions -> per-frame noise-level matrices (autoregressive, chunked,
                pyramid, full sequence)
    samplers    one denoising row (ddim, euler, heun) over a ``predict`` function
    context     context policies (clean, stable, dynamic) -> (label, noise) levels
    rollout     RolloutState + prime / sample_chunk / generate / flush / far_head_predictions
    config      SamplingConfig (the ``sampling.*`` keys of rollout, play and bench)

``farsight.world_env.WorldModelEnv`` wraps all of it as a gymnasium env.

Names are loaded on first use, so ``farsight.sampling.config`` (which command parsers import)
does not pull in torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "config": (
        "SAMPLERS",
        "SCHEDULINGS",
        "SamplingConfig",
        "add_sampling_arguments",
        "sampling_from_args",
    ),
    "context": ("CONTEXT_POLICIES", "ContextLevels", "ContextPolicy"),
    "rollout": (
        "RolloutState",
        "commit",
        "far_head_predictions",
        "flush",
        "generate",
        "new_state",
        "predict",
        "prime",
        "sample_chunk",
        "truncate_context",
    ),
    "samplers": ("denoise_row",),
    "schedules": (
        "autoregressive_schedule",
        "chunk_levels",
        "chunk_schedule",
        "denoise_levels",
        "full_sequence_schedule",
        "plan_chunks",
        "pyramid_schedule",
        "shift_levels",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'farsight.sampling' has no attribute {name!r}")
    return getattr(importlib.import_module(f"farsight.sampling.{module}"), name)


def __dir__() -> list[str]:
    return __all__
