"""Context policies: how the already generated frames are shown to the model.

A policy maps the noise level of the frame(s) being denoised (the *target* level) to the
context's ``ContextLevels(label, noise)``: the level the context frames are labelled with (the
tau the model is told) and the level they are actually noised to. Pure functions:

    clean     (0, 0)                    the context is trusted as it is (teacher forcing)
    stable    (c, c) or (c, 0)          labelled at a small level c whatever the target, and
                                        optionally really noised to it (diffusion forcing's
                                        stable rollout; open-oasis labels 15/1000 without noising,
                                        DFoT 0.02, DIAMOND 0.005). Really noising keeps the input
                                        in the training distribution; labelling alone is OOD.
    dynamic   (m, m), m = min(target, cap)   re-noised at every denoising step: high early, so
                                        the low frequencies (the motion) form while details of
                                        the context are blurred away; low late, so artifacts in
                                        the context cannot grow (the slides' dynamic noise
                                        augmentation).

What this means for the KV cache: ``clean`` and ``stable`` give the same levels at every step,
so a context frame's keys and values are computed once, when the frame is committed, and only
read afterwards. ``dynamic`` changes the context at every denoising step, so nothing about the
context can be reused: each step recomputes the whole window (``recomputes_context``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

CONTEXT_POLICIES = ("clean", "stable", "dynamic")


class ContextLevels(NamedTuple):
    label: float
    """tau the context frames are labelled with."""
    noise: float
    """tau the context frames are actually noised to (0: shown as they are)."""


def clean_context(target: float) -> ContextLevels:
    return ContextLevels(0.0, 0.0)


def stable_context(target: float, context_level: float, noised: bool = True) -> ContextLevels:
    return ContextLevels(context_level, context_level if noised else 0.0)


def dynamic_context(target: float, cap: float) -> ContextLevels:
    level = min(target, cap)
    return ContextLevels(level, level)


@dataclass(frozen=True)
class ContextPolicy:
    """A context policy with its parameters bound; ``policy(target) -> ContextLevels``."""

    kind: str = "stable"
    context_level: float = 0.02
    """stable: the label (and noise) level c."""
    noised: bool = True
    """stable: actually noise the context to ``context_level`` (False: label only)."""
    cap: float = 0.3
    """dynamic: the highest level the context is noised to."""

    def __post_init__(self):
        if self.kind not in CONTEXT_POLICIES:
            raise ValueError(
                f"context={self.kind!r}; expected one of {', '.join(CONTEXT_POLICIES)}"
            )
        if not 0.0 <= self.context_level < 1.0:
            raise ValueError(f"context level={self.context_level} must lie in [0, 1)")
        if not 0.0 <= self.cap <= 1.0:
            raise ValueError(f"dynamic cap={self.cap} must lie in [0, 1]")

    def __call__(self, target: float) -> ContextLevels:
        if self.kind == "clean":
            return clean_context(target)
        if self.kind == "stable":
            return stable_context(target, self.context_level, self.noised)
        return dynamic_context(target, self.cap)

    @property
    def recomputes_context(self) -> bool:
        """True when the context's levels change between denoising steps, so its keys and values
        cannot be cached and the window is recomputed at every step."""
        return self.kind == "dynamic"

    @property
    def committed(self) -> ContextLevels:
        """The levels a finished frame is committed at (used by the KV cache)."""
        return self(0.0)
