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
work unchanged. Latent labels are computed once per store and kept beside the LAM:
``LAM_RUN/latent_actions/<store name>.npz``, refused when the store has changed since.

Dimension legend: T frames of an episode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from farsight.data.store import EpisodeStore
from farsight.errors import FarsightError
from farsight.eval.latent_actions import label_store
from farsight.io import atomic_write, atomic_write_json, read_json
from farsight.latents import compare_source, source_record, weights_fingerprint
from farsight.train.checkpoint import resolve_checkpoint
from farsight.train.lam import load_lam

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


def labels_path(lam: str | Path, frames_store: EpisodeStore) -> Path:
    run = resolve_checkpoint(lam).resolve().parent
    return run / "latent_actions" / f"{frames_store.path.resolve().name}.npz"


def latent_labels(
    lam: str | Path, frames_store: EpisodeStore, device="cpu", progress: bool = True
) -> tuple[dict[int, np.ndarray], int, dict]:
    """{episode: (T,) latent actions} of every episode of ``frames_store`` (cached beside the
    LAM), the vocabulary size, and a record of the LAM."""
    model, cfg, ckpt = load_lam(lam, device)
    fingerprint = weights_fingerprint(model.state_dict())
    record = {"lam": str(Path(ckpt["path"]).resolve()), "lam_step": int(ckpt["step"])}
    path = labels_path(lam, frames_store)
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = read_json(meta_path, "latent action labels record")
        if meta.get("fingerprint") == fingerprint and (
            compare_source(meta.get("source", {}), frames_store) == "same"
        ):
            with np.load(path) as data:
                labels = {int(k[2:]): data[k] for k in data.files}
            if len(labels) == frames_store.num_episodes:
                return labels, cfg.model.num_codes, record
    if progress:
        print(f"labelling {frames_store.path} with latent actions of {lam} (once)")
    labels = label_store(model, frames_store, device=device)

    def write(f):
        np.savez(f, **{f"ep{e}": v for e, v in labels.items()})

    atomic_write(path, write)
    atomic_write_json(
        meta_path, {"fingerprint": fingerprint, "source": source_record(frames_store), **record}
    )
    return labels, cfg.model.num_codes, record


def relabel(
    store,
    source: str,
    *,
    lam: str | Path = "",
    frames_store: EpisodeStore | None = None,
    device="cpu",
    progress: bool = True,
):
    """``store`` (an episode store or a latent cache's store, aligned with ``frames_store``)
    with the actions of ``source``; ``true`` returns it as it is (after checking it has some)."""
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
    labels, codes, record = latent_labels(lam, frames_store, device, progress)
    if store.num_episodes != len(labels) or any(
        store.episodes[e].length != len(v) for e, v in labels.items()
    ):
        raise ActionSourceError(
            f"store {store.path} is not aligned with {frames_store.path} (episodes or lengths)"
        )
    meanings = tuple(f"LATENT_{i}" for i in range(codes))
    return RelabelledStore(store, labels, meanings, "latent", {"latent_actions": record})


def store_for_model(world_model, store, device="cpu"):
    """``store`` with the actions ``world_model`` was trained on (its metadata says which):
    true actions as they are; ``none``: all zero; ``latent``: labelled by the model's LAM, so
    prompts, evaluation (true vs random latent actions, Genie's Delta_t PSNR) and play use the
    action space the model knows."""
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
    return relabel(store, "latent", lam=record["lam"], device=device, progress=False)
