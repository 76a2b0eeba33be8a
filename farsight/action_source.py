"""Where a dynamics run's actions come from: the store's own, a latent action model's, or none.

    true     the recorded actions (the default)
    latent   z_t = LAM(x_t, x_{t+1}) for every frame pair of the store, from a trained latent
             action model (``farsight train lam``): Genie's setting, video without labels
    none     one action for every frame: an action-free video model (and the way to train on a
             store recorded without actions when no LAM is at hand)

``relabel(store, source, lam)`` returns a view of an episode store (or of a latent cache's
store) whose ``actions`` are the chosen ones and whose env metadata names them
(``action_meanings`` LATENT_0.. or NONE; the recorded names are kept as
``true_action_meanings``), so clip loading, validation, checkpoints and the world model env
work unchanged. Latent actions are read from the store's labels by that LAM
(``farsight label``, ``farsight/action_labels.py``); nothing here labels or writes.

Dimension legend: T frames of an episode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from farsight.action_labels import read_labels
from farsight.data.store import EpisodeStore
from farsight.errors import FarsightError

ACTION_SOURCES = ("true", "latent", "none")


class ActionSourceError(FarsightError):
    """A run asks for actions it cannot have; names the store or the LAM and the fix."""


class RelabelledStore:
    """An episode store whose ``actions`` come from per-episode label arrays (read-only view)."""

    def __init__(self, store, labels: dict[int, np.ndarray], meanings, source: str, extra=None):
        self._store = store
        self.labels = labels
        env = dict(store.meta.get("env", {}))
        if env.get("action_meanings") and "true_action_meanings" not in env:
            env["true_action_meanings"] = env["action_meanings"]
        env.update({"action_meanings": list(meanings), "action_source": source, **(extra or {})})
        self.meta = {**store.meta, "env": env}
        self.arrays = {**store.arrays, "actions": ((), np.dtype("int64"))}

    def __getattr__(self, name: str):
        if name.startswith("_"):  # unpickling looks up dunders before _store exists
            raise AttributeError(name)
        return getattr(self._store, name)

    def read(self, episode, start=0, length=None, stride=1, keys=None) -> dict[str, np.ndarray]:
        want = keys is None or "actions" in keys
        inner = None if keys is None else tuple(k for k in keys if k != "actions")
        if inner is None:
            inner = tuple(k for k in self._store.arrays if k != "actions")
        arrays = self._store.read(episode, start, length, stride, inner) if inner else {}
        if want:
            ep_len = self._store.episodes[episode].length
            if length is None:
                length = (ep_len - start + stride - 1) // stride
            labels = self.labels[int(episode)]
            arrays["actions"] = labels[start : start + (length - 1) * stride + 1 : stride].copy()
        return arrays

    def __getstate__(self):
        return self.__dict__.copy()

    def __setstate__(self, state):
        self.__dict__.update(state)


def no_actions(store) -> RelabelledStore:
    labels = {i: np.zeros(e.length, np.int64) for i, e in enumerate(store.episodes)}
    return RelabelledStore(store, labels, ("NONE",), "none")


def relabel(
    store,
    source: str,
    *,
    lam: str | Path = "",
    lam_step: int | None = None,
    frames_store: EpisodeStore | None = None,
):
    """``store`` (an episode store or a latent cache's store, aligned with ``frames_store``)
    with the actions of ``source``; ``true`` returns it as it is (after checking it has some).
    ``latent`` reads the labels of ``frames_store`` by ``lam`` (made at ``lam_step`` when
    given), which ``farsight label`` writes."""
    if source not in ACTION_SOURCES:
        raise ActionSourceError(f"data.actions={source!r}; expected one of true, latent, none")
    if source == "true":
        names = store.meta.get("env", {}).get("action_meanings")
        if "actions" not in store.arrays or not names:
            raise ActionSourceError(
                f"store {store.path} holds no actions (or no action names): train with "
                "data.actions=latent data.lam=LAM_RUN, or data.actions=none"
            )
        return store
    if source == "none":
        return no_actions(store)
    if not lam:
        raise ActionSourceError("data.actions=latent needs data.lam=LAM_RUN (farsight train lam)")
    frames_store = frames_store or store
    if "frames" not in frames_store.arrays:
        raise ActionSourceError(
            f"latent actions are read from frames; {frames_store.path} has none"
        )
    labels, codes, record = read_labels(frames_store, lam, lam_step)
    if store.num_episodes != len(labels) or any(
        store.episodes[e].length != len(v) for e, v in labels.items()
    ):
        raise ActionSourceError(
            f"store {store.path} is not aligned with {frames_store.path} (episodes or lengths)"
        )
    meanings = tuple(f"LATENT_{i}" for i in range(codes))
    return RelabelledStore(store, labels, meanings, "latent", {"latent_actions": record})


def store_for_model(world_model, store):
    """``store`` with the actions ``world_model`` was trained on (its metadata says which):
    true actions as they are; ``none``: all zero; ``latent``: the store's labels by the model's
    LAM (``farsight label``; refused when missing or made by other LAM weights), so prompts,
    evaluation (true vs random latent actions, Genie's Delta_t PSNR) and play use the action
    space the model knows. Reads only: building a world model env writes nothing."""
    meta = world_model.meta or {}
    env = meta.get("env", meta)
    source = env.get("action_source", "true")
    if source == "true" or isinstance(store, RelabelledStore):
        return store
    if source == "none":
        return no_actions(store)
    record = env.get("latent_actions") or {}
    if not record.get("lam"):
        raise ActionSourceError("the model was trained on latent actions but names no LAM")
    return relabel(store, "latent", lam=record["lam"], lam_step=record.get("lam_step"))
