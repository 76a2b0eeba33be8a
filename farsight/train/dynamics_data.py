"""What a dynamics run reads: the latent cache of its store, with the run's actions, and the
latent geometry the model takes from it.

The store is encoded once into a latent cache (``RUN_OF_AE/latents/<store>-<path hash>`` unless
``data.cache`` names one; built here if missing), so training never runs the encoder; a run on
latent actions labels the store once with its LAM the same way (``farsight/action_labels.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import default_collate

from farsight.action_labels import label_actions
from farsight.action_source import relabel
from farsight.data.loader import STATE_PREFIX
from farsight.data.store import EpisodeStore
from farsight.errors import UsageError
from farsight.latents import LatentCache, build_cache, default_cache_path, open_cache
from farsight.models.tokens import input_channels, output_channels
from farsight.objectives import TOKEN_OBJECTIVES
from farsight.objectives.object_maps import entity_count
from farsight.train.recipes.dynamics import DynamicsRunConfig


def open_latents(cfg: DynamicsRunConfig, build: bool):
    """The run's latent cache, checked against its store and autoencoder (built if asked)."""
    data, ae = cfg.data.path, cfg.data.autoencoder
    path = Path(cfg.data.cache) if cfg.data.cache else default_cache_path(ae, data)
    if build and not (path / "manifest.json").exists():
        print(f"no latent cache at {path} yet: encoding {data} once")
        build_cache(ae, data, path)
    if not (path / "manifest.json").exists():
        return LatentCache(path)  # raises: not found
    return open_cache(path, store=data, autoencoder=ae)


def val_batch(cache, cfg: DynamicsRunConfig, extra: int) -> dict:
    """A fixed batch of validation clips (training clips if the store has no val split)."""
    for split in ("val", "train"):
        try:
            clips = cache.clips(cfg.data.clip_len, extra, cfg.data.stride, split=split)
        except ValueError:
            continue
        picks = np.linspace(0, len(clips) - 1, min(cfg.data.val_clips, len(clips))).astype(int)
        items = [clips[int(i)] for i in np.unique(picks)]
        keys = [k for k in ("latents", "actions", "state") if k in items[0]]
        return default_collate([{k: it[k] for k in keys} for it in items])
    raise UsageError(f"latent cache {cache.path} has no clip of {cfg.data.clip_len + extra} frames")


def label_run_store(cfg: DynamicsRunConfig, progress: bool = True) -> None:
    """A run on latent actions: its store's labels by ``data.lam``, made if missing or stale
    (as a missing latent cache is encoded), before ``run_actions`` reads them."""
    if cfg.data.actions == "latent" and cfg.data.lam:
        label_actions(cfg.data.lam, EpisodeStore(cfg.data.path, verify="size"), progress=progress)


def run_actions(cfg: DynamicsRunConfig, store):
    """``store`` (frames or latent cache) with the run's actions (``data.actions``)."""
    frames = None
    if cfg.data.actions == "latent":
        frames = EpisodeStore(cfg.data.path, verify="size")
    return relabel(store, cfg.data.actions, lam=cfg.data.lam, frames_store=frames)


def fit_to_cache(cfg: DynamicsRunConfig, info) -> None:
    """Latent geometry from the cache: continuous latents for diffusion, FSQ tokens (code
    values + a mask flag in, per-channel level logits out) for MaskGIT."""
    token_path = cfg.objective.kind in TOKEN_OBJECTIVES
    wanted = "fsq" if token_path else "continuous"
    if info.kind != wanted:
        raise UsageError(
            f"objective.kind={cfg.objective.kind} needs a {wanted} autoencoder's latents; "
            f"the latent cache holds {info.kind} latents"
        )
    cfg.model.latent_size = tuple(info.grid)
    if token_path:
        levels = tuple(info.fsq_levels)
        cfg.objective.fsq_levels = levels
        cfg.model.latent_channels = input_channels(levels)
        cfg.model.out_channels = output_channels(levels, cfg.objective.token_logits == "joint")
    else:
        cfg.model.latent_channels = info.channels


def fit_object_head(cfg: DynamicsRunConfig, cache) -> float:
    """With ``objective.object_maps``: the object head's size (one map per entity of the
    store's state) set into ``model.object_channels``, and the frame pixels per latent cell
    its maps are drawn at (returned; 0 when the option is off)."""
    if not cfg.objective.object_maps:
        return 0.0
    # The option's own errors (a negative weight, maskgit) before what the store lacks.
    cfg.objective.validate()
    shapes = {
        k[len(STATE_PREFIX) :]: tuple(v[0])
        for k, v in cache.store.arrays.items()
        if k.startswith(STATE_PREFIX)
    }
    k = entity_count(shapes)
    if not k:
        raise UsageError(
            f"objective.object_maps={cfg.objective.object_maps}: the store behind {cache.path} "
            f"records no entity positions (its state: {sorted(shapes) or 'none'}); it needs "
            "state.player, state.camera and state.objects (the arena) or state.object_xy "
            "(a game with a RAM map)"
        )
    if cfg.model.object_channels not in (0, k):
        raise UsageError(
            f"model.object_channels={cfg.model.object_channels}, but the store behind "
            f"{cache.path} has {k} entities"
        )
    cfg.model.object_channels = k
    frame_height = cache.meta["source"]["frame_shape"][0]
    return frame_height / cache.info.grid[0]
