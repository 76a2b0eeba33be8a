"""Environment registry: ``make_env(cfg, seed)`` for every env id farsight knows."""

from __future__ import annotations

from farsight.config import ConfigError
from farsight.envs.arena import ArenaEnv
from farsight.envs.base import ArenaConfig, EnvConfig, FarsightEnv, StateSpec

__all__ = ["ArenaConfig", "EnvConfig", "FarsightEnv", "StateSpec", "make_env", "ENV_IDS"]

ENV_IDS = (
    "arena",
    "ALE/<Game>-v5",
    "crafter",
    "vizdoom/basic",
    "vizdoom/health_gathering",
)


def make_env(cfg: EnvConfig) -> FarsightEnv:
    """Build the environment named by ``cfg.id``; the seed is given to ``reset``."""
    env_id = cfg.id
    if env_id == "arena":
        return ArenaEnv(cfg.arena, size=cfg.size)
    # The real games are imported when asked for: they need the games extra (ale-py, crafter,
    # vizdoom), which a base install lacks.
    if env_id.startswith("ALE/"):
        # lazy: optional dependency (pip install 'farsight[games]')
        from farsight.envs.atari import AtariEnv

        return AtariEnv(env_id, size=cfg.size)
    if env_id == "crafter":
        # lazy: optional dependency (pip install 'farsight[games]')
        from farsight.envs.crafter import CrafterEnv

        return CrafterEnv(size=cfg.size)
    if env_id.startswith("vizdoom/"):
        # lazy: optional dependency (pip install 'farsight[games]')
        from farsight.envs.vizdoom import VizDoomEnv

        return VizDoomEnv(env_id.split("/", 1)[1], size=cfg.size)
    raise ConfigError(f"env.id={env_id!r} is unknown; known: {', '.join(ENV_IDS)}")
