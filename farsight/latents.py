"""Latent cache: an episode store of autoencoder latents, aligned 1:1 with a frame store.

    farsight encode --autoencoder RUN_OR_CKPT --data STORE [--out CACHE]

The cache *is* an episode store (same manifest, shards and checksums), so ``ClipDataset`` and
the loaders serve latent clips unchanged and dynamics training never runs the encoder. Per
frame it holds:

    latents    (C, h, w) float16, or bfloat16 bits as uint16 (``LatentCache.to_float``)
               continuous kind: deterministic mean latents, normalized ((z - shift) * scale,
               the autoencoder's estimated latent statistics) to about unit variance;
               fsq kind: the pre-quantization latent (pool it, then FSQ it, for coarse tokens)
    indices    (h, w) int16/int32, fsq kind only: the FSQ token of each position
    actions, rewards, dones, state.*   copied from the source store

Episode i of the cache is episode i of the store (same length), and the cache's metadata
carries the store's (so its train/val/test splits are the store's). It also records which
autoencoder made it (a fingerprint of the weights), at which precision, and which store it
encodes (its metadata and shard checksums, in ``source.json``): ``open_cache(path, store=...,
autoencoder=...)`` refuses a cache made by another checkpoint, at another precision, or for a
store that has changed since.

Precision: the encoder always runs in fp32 (``CACHE_PRECISION``), never under the machine's
``precision=auto``. It runs once per store, so exactness is worth more than speed, and bf16
autocast (picked by ``auto`` on CPUs with AVX512-BF16/AMX) moves latents by up to ~0.05 and
flips FSQ tokens: the same store and checkpoint would give different caches on different
machines.

A store that has only grown (recording continued) is extended by running ``encode`` again;
an interrupted ``encode`` continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from farsight.data.loader import ClipDataset
from farsight.data.store import MANIFEST, EpisodeStore, StoreError, StoreWriter
from farsight.errors import FarsightError
from farsight.io import atomic_write_json, read_json
from farsight.models.autoencoder import Autoencoder, frames_to_images
from farsight.precision import resolve_device
from farsight.shell import command_line
from farsight.train.autoencoder import load_autoencoder
from farsight.train.checkpoint import resolve_checkpoint

CACHE_FORMAT = "farsight-latent-cache"
CACHE_VERSION = 1
SOURCE = "source.json"
DTYPES = ("float16", "bfloat16")
CACHE_PRECISION = "fp32"
"""The precision every cache is encoded at, on every machine (see the module docstring)."""


class StaleCacheError(FarsightError):
    """A cache that does not match its store or autoencoder; says what changed and what to run."""


# -- identities -------------------------------------------------------------------------------
def weights_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the weights and buffers (names, shapes, dtypes, bytes), in name order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def meta_digest(meta: dict) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()


def source_record(store: EpisodeStore) -> dict:
    return {
        "store": str(store.path.resolve()),
        "meta_sha256": meta_digest(store.meta),
        "shards": store.shards,
        "episodes": store.num_episodes,
        "frames": store.num_frames,
    }


def same_store(recorded: dict, store: EpisodeStore) -> bool:
    """Whether ``store`` is (at) the folder the cache was built from."""
    return recorded.get("store") == str(store.path.resolve())


def compare_source(recorded: dict, store: EpisodeStore) -> str:
    """'same', 'grown' (the store only appended shards) or 'changed'."""
    if recorded.get("meta_sha256") != meta_digest(store.meta):
        return "changed"
    old, new = recorded.get("shards", []), store.shards
    if old == new:
        return "same"
    if len(new) > len(old) and new[: len(old)] == old:
        return "grown"
    return "changed"


# -- the cache --------------------------------------------------------------------------------
@dataclass
class LatentInfo:
    kind: str
    channels: int
    grid: tuple[int, int]
    factor: int
    dtype: str
    """float16 or bfloat16 (stored as uint16 bits)."""
    shift: float
    scale: float
    fsq_levels: tuple[int, ...] | None
    precision: str | None = None
    """What the encoder ran at: fp32; None for caches that did not record it (older ones)."""


class LatentCache:
    """An opened cache: ``.store`` (EpisodeStore), ``.info``, ``.autoencoder``, ``.clips()``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / MANIFEST).is_file():
            raise StoreError(f"latent cache not found: {self.path} holds no {MANIFEST}")
        self.store = EpisodeStore(self.path, verify="size")
        meta = self.store.meta.get("latent_cache")
        if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
            raise StoreError(f"{self.path} is an episode store but not a latent cache")
        if meta.get("version") != CACHE_VERSION:
            ae = meta.get("autoencoder", {}).get("path", "AE_RUN")
            data = meta.get("source", {}).get("store", "STORE")
            rebuild = command_line(
                "encode", "--autoencoder", ae, "--data", data, "--out", self.path, "--overwrite"
            )
            raise StoreError(
                f"latent cache {self.path} has version {meta.get('version')}, "
                f"this farsight reads {CACHE_VERSION}; rebuild it: {rebuild}"
            )
        self.meta = meta
        lat = meta["latent"]
        self.info = LatentInfo(
            kind=lat["kind"],
            channels=lat["channels"],
            grid=tuple(lat["grid"]),
            factor=lat["factor"],
            dtype=lat["dtype"],
            shift=lat["shift"],
            scale=lat["scale"],
            fsq_levels=tuple(lat["fsq_levels"]) if lat.get("fsq_levels") else None,
            precision=lat.get("precision"),
        )
        self.autoencoder = meta["autoencoder"]
        try:
            self.source = read_json(self.path / SOURCE, "latent cache source record")
        except (FileNotFoundError, ValueError) as e:
            raise StoreError(str(e)) from None

    @property
    def complete(self) -> bool:
        return bool(self.source.get("complete"))

    def to_float(self, latents: torch.Tensor) -> torch.Tensor:
        """Stored latents (any leading dims) -> float32 tensor."""
        if self.info.dtype == "bfloat16":
            return latents.view(torch.int16).view(torch.bfloat16).float()
        return latents.float()

    def encode_command(self, data: str | Path | None = None, *extra: str) -> str:
        """The ``farsight encode`` line that continues or rebuilds this very cache."""
        data = data if data is not None else self.source["store"]
        return command_line(
            "encode",
            "--autoencoder",
            self.autoencoder["path"],
            "--data",
            data,
            "--out",
            self.path,
            *extra,
        )

    def check(self, store: EpisodeStore | str | Path | None = None, autoencoder: str | None = None):
        """Raise StaleCacheError unless complete, encoded at ``CACHE_PRECISION``, made from
        ``store`` and by ``autoencoder``.

        ``autoencoder``: a fingerprint, or a checkpoint path / run folder to fingerprint.
        """
        if not self.complete:
            raise StaleCacheError(
                f"latent cache {self.path} is incomplete (encoding stopped at episode "
                f"{self.store.num_episodes} of {self.source['episodes']}); finish it: "
                f"{self.encode_command()}"
            )
        if self.info.precision != CACHE_PRECISION:
            raise StaleCacheError(
                f"latent cache {self.path} was {precision_phrase(self.info.precision)}, not at "
                f"{CACHE_PRECISION} as every cache is (so it is the same on every machine); "
                f"rebuild it: {self.encode_command(None, '--overwrite')}"
            )
        if store is not None:
            store = store if isinstance(store, EpisodeStore) else EpisodeStore(store, "size")
        if autoencoder is not None:
            fingerprint = autoencoder
            if Path(autoencoder).exists():
                fingerprint = checkpoint_fingerprint(autoencoder)
            if fingerprint != self.autoencoder["fingerprint"]:
                data = store.path if store is not None else self.source["store"]
                ae = autoencoder if Path(autoencoder).exists() else "AE_RUN"
                raise StaleCacheError(
                    f"latent cache {self.path} was encoded by another autoencoder "
                    f"({self.autoencoder['path']} at step {self.autoencoder['step']}, weights "
                    f"{self.autoencoder['fingerprint'][:12]}), not by {autoencoder} "
                    f"(weights {fingerprint[:12]}); encode the store with it into a cache of its "
                    f"own (by default under its run folder): "
                    f"{command_line('encode', '--autoencoder', ae, '--data', data)}"
                )
        if store is not None:
            state = compare_source(self.source, store)
            if state == "changed" and not same_store(self.source, store):
                # Another store (e.g. another folder of the same name), not this one changed:
                # its own cache is elsewhere, and this one must not be overwritten for it.
                raise StaleCacheError(
                    f"latent cache {self.path} encodes another store ({self.source['store']}), "
                    f"not {store.path}; encode that one into a cache of its own: "
                    + command_line(
                        "encode", "--autoencoder", self.autoencoder["path"], "--data", store.path
                    )
                    + " (without --out each store gets its own)"
                )
            if state == "grown":
                raise StaleCacheError(
                    f"store {store.path} has grown to {store.num_episodes} episodes since latent "
                    f"cache {self.path} was built ({self.source['episodes']}); extend it: "
                    f"{self.encode_command(store.path)}"
                )
            if state == "changed":
                raise StaleCacheError(
                    f"store {store.path} has changed since latent cache {self.path} was built "
                    f"from it (metadata or shard checksums differ); rebuild it: "
                    f"{self.encode_command(store.path, '--overwrite')}"
                )
            mismatch = [
                e.id
                for e, c in zip(store.episodes, self.store.episodes, strict=False)
                if e.length != c.length
            ]
            if mismatch or store.num_episodes != self.store.num_episodes:
                raise StaleCacheError(
                    f"latent cache {self.path} is not aligned with store {store.path} "
                    f"({self.store.num_episodes} vs {store.num_episodes} episodes"
                    f"{', lengths differ from episode ' + str(mismatch[0]) if mismatch else ''}); "
                    f"rebuild it: {self.encode_command(store.path, '--overwrite')}"
                )
        return self

    def clips(
        self,
        clip_len: int,
        extra: int = 0,
        stride: int = 1,
        start_every: int = 1,
        split: str = "train",
        keys: tuple[str, ...] | None = None,
    ) -> Dataset:
        """Latent clips: like ClipDataset's items, with ``latents`` already float32."""
        return FloatLatentClips(
            ClipDataset(self.store, clip_len, extra, stride, start_every, split, keys),
            self.info.dtype,
        )


class FloatLatentClips(Dataset):
    """Wraps a ClipDataset over a cache: converts ``latents`` to float32 in the worker."""

    def __init__(self, clips: ClipDataset, dtype: str):
        self.clips, self.dtype = clips, dtype

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        item = self.clips[i]
        if "latents" in item:
            lat = item["latents"]
            if self.dtype == "bfloat16":
                lat = lat.view(torch.int16).view(torch.bfloat16)
            item["latents"] = lat.float()
        return item


def open_cache(
    path: str | Path,
    store: EpisodeStore | str | Path | None = None,
    autoencoder: str | Path | None = None,
) -> LatentCache:
    """Open a latent cache; refuse it if incomplete, or stale for ``store`` / ``autoencoder``."""
    return LatentCache(path).check(store, str(autoencoder) if autoencoder is not None else None)


def checkpoint_fingerprint(path: str | Path) -> str:
    model, _, _ = load_autoencoder(path)
    return weights_fingerprint(model.state_dict())


def default_cache_path(autoencoder: str | Path, data: str | Path) -> Path:
    """``RUN/latents/<store folder name>-<hash of its path>``: a cache belongs to the
    autoencoder that made it, and to one store: stores in folders of the same name (every
    ``.../data``) get caches of their own."""
    run = resolve_checkpoint(autoencoder).resolve().parent
    store = Path(data).resolve()
    key = hashlib.sha256(str(store).encode()).hexdigest()[:10]
    return run / "latents" / f"{store.name}-{key}"


def precision_phrase(precision: str | None) -> str:
    if precision is None:
        return "encoded at an unrecorded precision (before caches recorded it: bf16 on some CPUs)"
    return f"encoded at {precision}"


# -- building ---------------------------------------------------------------------------------
@torch.no_grad()
def encode_frames(
    model: Autoencoder, frames: np.ndarray, device: torch.device, dtype: str
) -> dict[str, np.ndarray]:
    """uint8 (N, H, W, 3) -> {'latents': (N, C, h, w) [, 'indices': (N, h, w)]} on-disk arrays.

    Always fp32 (``CACHE_PRECISION``): no autocast, whatever the device runs fast.
    """
    images = frames_to_images(torch.from_numpy(frames)).to(device)
    mean, _ = model.encode(images.float())
    mean = mean.float()
    out = {}
    if model.fsq is not None:
        indices = model.fsq.tokens(mean)
        out["indices"] = indices.cpu().numpy().astype(index_dtype(model.fsq.codebook_size))
        latents = mean
    else:
        latents = model.normalize(mean)
    if dtype == "bfloat16":
        out["latents"] = latents.to(torch.bfloat16).view(torch.int16).cpu().numpy().view(np.uint16)
    else:
        out["latents"] = latents.to(torch.float16).cpu().numpy()
    return out


def index_dtype(codebook_size: int) -> str:
    return "int16" if codebook_size <= np.iinfo(np.int16).max + 1 else "int32"


def build_cache(
    autoencoder: str | Path,
    data: str | Path,
    out: str | Path | None = None,
    dtype: str = "float16",
    batch_size: int = 256,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    shard_frames: int = 16384,
) -> LatentCache:
    """Encode every frame of store ``data`` with checkpoint ``autoencoder`` into ``out``.

    The encoder runs at ``CACHE_PRECISION`` (fp32) on every device. Continues an interrupted
    build and extends a cache whose store has grown; refuses a cache made by another
    autoencoder, at another precision or from a changed store unless ``overwrite``.
    """
    if dtype not in DTYPES:
        raise FarsightError(f"latent dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    ckpt_path = resolve_checkpoint(autoencoder).resolve()
    out = Path(out) if out is not None else default_cache_path(ckpt_path, data)
    store = EpisodeStore(data)  # CRC-checked as episodes are read
    if "latent_cache" in store.meta:
        source = store.meta["latent_cache"].get("source", {}).get("store", "its store")
        raise StoreError(
            f"{store.path} is a latent cache (of {source}), not an episode store of frames: "
            f"give the store itself (to train on this cache: --data {source} "
            f"data.cache={store.path})"
        )
    if "frames" not in store.arrays:
        raise StoreError(f"store {store.path} holds no 'frames' array: nothing to encode")
    dev = resolve_device(device)
    model, run_cfg, ckpt = load_autoencoder(ckpt_path, dev)
    fingerprint = weights_fingerprint(model.state_dict())
    height, width, _ = store.arrays["frames"][0]
    channels, lh, lw = model.latent_shape(height, width)
    meta = {
        **store.meta,
        "latent_cache": {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "autoencoder": {
                "path": str(ckpt_path),
                "step": int(ckpt["step"]),
                "fingerprint": fingerprint,
                "kind": run_cfg.model.kind,
            },
            "latent": {
                "kind": run_cfg.model.kind,
                "channels": channels,
                "grid": [lh, lw],
                "factor": run_cfg.model.factor,
                "dtype": dtype,
                "precision": CACHE_PRECISION,
                "layout": "CHW",
                "shift": float(model.latent_shift),
                "scale": float(model.latent_scale),
                "fsq_levels": list(run_cfg.model.fsq_levels) if model.fsq is not None else None,
                "codebook_size": model.fsq.codebook_size if model.fsq is not None else None,
            },
            "source": {"store": str(store.path.resolve()), "frame_shape": [height, width, 3]},
        },
    }
    if (out / MANIFEST).exists():
        meta = _reuse_or_clear(out, store, fingerprint, dtype, overwrite, meta)
    elif out.exists() and any(out.iterdir()):
        raise FarsightError(f"--out {out} exists and is not a latent cache; choose an empty folder")
    arrays = {"latents": ((channels, lh, lw), "uint16" if dtype == "bfloat16" else "float16")}
    if model.fsq is not None:
        arrays["indices"] = ((lh, lw), index_dtype(model.fsq.codebook_size))
    copied = [k for k in store.arrays if k != "frames"]
    arrays.update({k: (store.arrays[k][0], str(store.arrays[k][1])) for k in copied})

    writer = StoreWriter(out, meta, arrays, shard_frames=shard_frames)
    atomic_write_json(out / SOURCE, {**source_record(store), "complete": False})
    first = writer.num_episodes
    todo = sum(e.length for e in store.episodes[first:])
    bar = tqdm(total=todo, unit="frame", desc="encode", disable=not progress, dynamic_ncols=True)
    try:
        for ep in range(first, store.num_episodes):
            episode = store.read(ep)
            frames = episode.pop("frames")
            parts = []
            for i in range(0, len(frames), batch_size):
                parts.append(encode_frames(model, frames[i : i + batch_size], dev, dtype))
                bar.update(len(frames[i : i + batch_size]))
            for key in parts[0]:
                episode[key] = np.concatenate([p[key] for p in parts])
            writer.add_episode(episode, store.episodes[ep].terminated)
    finally:
        writer.close()  # whole episodes encoded so far are kept; a re-run continues
        bar.close()
    atomic_write_json(out / SOURCE, {**source_record(store), "complete": True})
    return LatentCache(out).check(store)


def _reuse_or_clear(
    out: Path, store: EpisodeStore, fingerprint: str, dtype: str, overwrite: bool, meta: dict
) -> dict:
    """An existing cache at ``out``: continue/extend it (its meta), or clear it if allowed."""
    try:
        cache = LatentCache(out)
    except StoreError as e:
        raise FarsightError(
            f"--out {out} is not a latent cache ({e}); choose another folder"
        ) from None
    same_ae = cache.autoencoder["fingerprint"] == fingerprint
    source = compare_source(cache.source, store)
    advice = "Use another --out, or --overwrite to rebuild it"
    same_dtype = cache.info.dtype == dtype
    same_precision = cache.info.precision == CACHE_PRECISION
    if same_ae and same_dtype and same_precision and source in ("same", "grown"):
        return cache.store.meta  # continue or extend with the very same metadata
    if not overwrite:
        if not same_ae:
            why = (
                f"was encoded by another autoencoder ({cache.autoencoder['path']} at step "
                f"{cache.autoencoder['step']}, weights {cache.autoencoder['fingerprint'][:12]}; "
                f"these are {fingerprint[:12]})"
            )
        elif not same_precision:
            why = f"was {precision_phrase(cache.info.precision)}, not {CACHE_PRECISION}"
        elif not same_dtype:
            why = f"holds {cache.info.dtype} latents, asked {dtype}"
        elif not same_store(cache.source, store):
            why = f"encodes another store ({cache.source['store']}), not {store.path}"
            advice = "Use another --out (without --out each store gets its own cache)"
        else:
            why = (
                f"was built from store {store.path} as it was before it changed (metadata or "
                "shard checksums differ)"
            )
        raise StaleCacheError(f"latent cache {out} {why}; refusing to mix them. {advice}")
    shutil.rmtree(out)  # verified above to be a latent cache, nothing else
    return meta
