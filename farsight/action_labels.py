"""Latent action labels: a store's frame pairs labelled once with a latent action model's codes.

    farsight label --lam LAM_RUN --data STORE

z_t = LAM(x_t, x_{t+1}) for every frame pair of every episode of the store (the EMA weights;
the last frame of an episode gets 0, as the store's last action is padding). The labels are a
data step, as the latent cache is: made once, written beside the store, read by everything
after it. A dynamics run on ``data.actions=latent`` makes them if they are missing or stale
(as it encodes a missing latent cache); a world model env, ``eval``, ``rollout`` and ``play``
only read them, and name this command when they are missing.

One file per store and LAM, written atomically:

    STORE/action_labels/<LAM run folder name>-<hash of the LAM checkpoint's path>.npz
        ep<i>    (T_i,) int64 latent actions of episode i
        record   JSON: the LAM (checkpoint path, step, weights fingerprint, number of codes)
                 and the store it labels (its metadata and shard checksums)

Labels are refused when the store has changed since (``latents.compare_source``) or when they
were made by other LAM weights than the ones asked for (step, and fingerprint when the LAM is
loaded).

Dimension legend: T frames of an episode.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from farsight.data.store import EpisodeStore
from farsight.errors import FarsightError
from farsight.io import atomic_write
from farsight.latent_actions import label_store
from farsight.latents import compare_source, source_record, weights_fingerprint
from farsight.precision import resolve_device
from farsight.train.checkpoint import resolve_checkpoint
from farsight.train.lam import load_lam

LABELS_DIR = "action_labels"
LABELS_FORMAT = "farsight-action-labels"


class ActionLabelsError(FarsightError):
    """Labels that are missing, stale or cannot be made; names the file and the command."""


def lam_checkpoint(lam: str | Path) -> Path:
    """The LAM's checkpoint file (given it or its run folder), as an absolute path. Reading
    labels needs only the path: the LAM itself may be gone."""
    path = Path(lam)
    return (resolve_checkpoint(path) if path.is_dir() else path).resolve()


def labels_path(store: EpisodeStore, lam: str | Path) -> Path:
    """Where ``store``'s labels by ``lam`` live: one file per LAM, in the store's folder (LAM
    runs in folders of the same name, every ``.../lam``, get files of their own)."""
    checkpoint = lam_checkpoint(lam)
    key = hashlib.sha256(str(checkpoint).encode()).hexdigest()[:10]
    return store.path / LABELS_DIR / f"{checkpoint.parent.name}-{key}.npz"


def label_command(store: EpisodeStore, lam: str | Path) -> str:
    return f"farsight label --lam {lam} --data {store.path}"


def _record_of(data, path: Path) -> dict:
    """The record of an open labels file (``np.load``'s NpzFile)."""
    record = json.loads(str(data["record"]))
    if record.get("format") != LABELS_FORMAT:
        raise ActionLabelsError(f"{path} is not a file of latent action labels")
    return record


def _read_record(path: Path) -> dict:
    with np.load(path) as data:
        return _record_of(data, path)


def _problem(record: dict, store: EpisodeStore, step: int | None, fingerprint: str | None):
    """Why labels with ``record`` do not fit ``store`` and the LAM, or None when they do."""
    if compare_source(record.get("source", {}), store) != "same":
        return f"store {store.path} has changed since it was labelled"
    if step is not None and record.get("lam_step") != step:
        return f"they were made by the LAM at step {record.get('lam_step')}, not {step}"
    if fingerprint is not None and record.get("fingerprint") != fingerprint:
        return "they were made by other LAM weights"
    return None


def read_labels(
    store: EpisodeStore, lam: str | Path, lam_step: int | None = None
) -> tuple[dict[int, np.ndarray], int, dict]:
    """{episode: (T,) latent actions} of ``store`` by ``lam`` (checkpoint file or run folder),
    the LAM's number of codes, and the LAM's record (``lam``, ``lam_step``). ``lam_step``
    given: refused unless the labels were made at that step. Reads only: never labels."""
    path = labels_path(store, lam)
    command = label_command(store, lam)
    if not path.exists():
        raise ActionLabelsError(
            f"no latent action labels of {store.path} by {lam} at {path}: run `{command}`"
        )
    with np.load(path) as data:
        record = _record_of(data, path)
        problem = _problem(record, store, lam_step, None)
        if problem:
            raise ActionLabelsError(
                f"latent action labels {path} are stale ({problem}): run `{command}`"
            )
        labels = {int(k[2:]): data[k] for k in data.files if k.startswith("ep")}
    if len(labels) != store.num_episodes or any(
        store.episodes[e].length != len(v) for e, v in labels.items()
    ):
        raise ActionLabelsError(
            f"latent action labels {path} do not match the episodes of {store.path}: run "
            f"`{command}`"
        )
    return labels, int(record["num_codes"]), {"lam": record["lam"], "lam_step": record["lam_step"]}


def label_actions(
    lam: str | Path, store: EpisodeStore | str | Path, device="cpu", progress: bool = True
) -> Path:
    """Label every frame pair of ``store`` with ``lam``'s codes and write the labels file;
    labels already made by these LAM weights for this store are kept. Returns the file."""
    if not isinstance(store, EpisodeStore):
        store = EpisodeStore(store, verify="size")
    if "frames" not in store.arrays:
        raise ActionLabelsError(f"latent actions are read from frames; {store.path} has none")
    model, cfg, ckpt = load_lam(lam, resolve_device(str(device)))
    fingerprint = weights_fingerprint(model.state_dict())
    path = labels_path(store, lam)
    if path.exists() and not _problem(_read_record(path), store, ckpt["step"], fingerprint):
        if progress:
            print(f"latent action labels {path} are up to date")
        return path
    if progress:
        print(f"labelling {store.path} with the latent actions of {lam}")
    labels = label_store(model, store, device=next(model.parameters()).device)
    record = {
        "format": LABELS_FORMAT,
        "lam": str(lam_checkpoint(lam)),
        "lam_step": int(ckpt["step"]),
        "fingerprint": fingerprint,
        "num_codes": int(cfg.model.num_codes),
        "source": source_record(store),
    }

    def write(f) -> None:
        np.savez(f, record=np.array(json.dumps(record)), **{f"ep{e}": v for e, v in labels.items()})

    atomic_write(path, write)
    return path
