"""Fixtures shared by the test modules.

Tests marked ``slow`` (torchrun subprocesses, training grids, a browser, real games, anything
over a few seconds) run only in the full suite (``scripts/test.sh``); day-to-day work runs
``pytest -m "not slow"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from farsight.data.recorder import RecordConfig, record
from farsight.train.autoencoder import train_autoencoder
from farsight.train.recipes.autoencoder import AE_RECIPES


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run thousands of small ops: one thread is faster, and it does not stall on
    OpenMP barriers when other processes hold the cores."""
    with torch_threads(1):
        yield


WorldMaker = Callable[..., Path]


def make_world(
    root: Path,
    *,
    frames: int,
    episode_steps: int,
    size: int = 64,
    ae_steps: int | None = None,
    **ae_model: Any,
) -> Path:
    """An arena store recorded into ``root/store`` and the ``ae_tiny`` autoencoder trained on
    it into ``root/ae`` (``ae_model``: changes to its model config, e.g. ``kind="fsq"``)."""
    cfg = RecordConfig(frames=frames, shard_frames=frames // 2)
    cfg.env.size = size
    cfg.env.arena.episode_steps = episode_steps
    with torch_threads(1):
        record(cfg, root / "store", progress=False)
        ae = AE_RECIPES.get("ae_tiny")
        ae.data.path = str(root / "store")
        for name, value in ae_model.items():
            setattr(ae.model, name, value)
        if ae_steps is not None:
            ae.train.steps = ae_steps
        train_autoencoder(ae, root / "ae", progress=False)
    return root


@pytest.fixture(scope="session")
def world_maker() -> WorldMaker:
    """``make_world``, for modules that build a world of their own."""
    return make_world


@pytest.fixture(scope="session")
def arena_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An arena store at 64 x 64 (``store``: 10 episodes of 60 frames) and a tiny continuous
    autoencoder trained for 2 steps on it (``ae``): what dynamics runs, grids and evaluations
    start from. Shared by the whole session: tests write their runs elsewhere."""
    root = tmp_path_factory.mktemp("arena_world")
    return make_world(root, frames=600, episode_steps=59, ae_steps=2)
