"""Episode store: a folder holding ``manifest.json`` and shards of per-frame numpy arrays.

Layout::

    STORE/manifest.json
    STORE/shards/000000/frames.npy        (F, H, W, 3) uint8
    STORE/shards/000000/actions.npy       (F,) int64     a_t: the action taken after frame t
    STORE/shards/000000/rewards.npy       (F,) float32
    STORE/shards/000000/dones.npy         (F,) bool      last frame of a terminated episode
    STORE/shards/000000/state.player.npy  (F, 2) float32 optional ground-truth state

A shard holds whole, consecutive episodes (F frames in all). The manifest lists every shard
with each file's byte size and CRC32, every episode's (shard, offset, length), the per-frame
array specs and the store's metadata (env, policy, seed, split).

Durability: a shard is written into a temporary folder, fsynced and renamed into place; only
then is the manifest rewritten (atomically). A crash leaves at worst an orphan shard folder
that no manifest names: readers never see it and the next writer deletes it.

Integrity: opening a shard checks every file's size against the manifest (a truncated file is
caught at once) and, by default, its CRC32 (a corrupt file is caught before any clip from it is
returned). Errors name the file.

The same format serves the latent cache: there the arrays are latents instead of frames.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from farsight.errors import FarsightError, UsageError
from farsight.io import atomic_write_json, fsync_dir, read_json

FORMAT = "farsight-episode-store"
VERSION = 1
MANIFEST = "manifest.json"
SHARDS = "shards"

Verify = Literal["size", "crc"]
SPLITS = ("train", "val", "test")


class StoreError(FarsightError):
    """A store that cannot be read as it claims to be; the message names the file."""


@dataclass(frozen=True)
class Episode:
    id: int
    shard: int
    offset: int
    length: int
    terminated: bool


@dataclass(frozen=True)
class SplitSpec:
    """Fractions of episodes held out. Assignment is stable when episodes are appended."""

    seed: int = 0
    val: float = 0.05
    test: float = 0.05


def split_of(episode_id: int, spec: SplitSpec) -> str:
    """Which split an episode belongs to.

    Uses a seeded Weyl (golden-ratio) sequence rather than a hash: it is just as stable under
    appending, and it is low-discrepancy, so even a store of 20 episodes gets val and test
    shares close to the requested fractions.
    """
    phase = (zlib.crc32(f"farsight-split-{spec.seed}".encode()) & 0xFFFFFFFF) / 2**32
    u = math.fmod(phase + episode_id * 0.6180339887498949, 1.0)
    if u < spec.test:
        return "test"
    if u < spec.test + spec.val:
        return "val"
    return "train"


def file_crc32(path: Path, chunk: int = 1 << 22) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc & 0xFFFFFFFF


def _spec_json(specs: dict[str, tuple[tuple[int, ...], str]]) -> dict:
    return {
        k: {"shape": list(shape), "dtype": str(np.dtype(dt))} for k, (shape, dt) in specs.items()
    }


class EpisodeStore:
    """Read-only random access to clips of a store, without reading whole shards."""

    def __init__(self, path: str | Path, verify: Verify = "crc"):
        self.path = Path(path)
        self.verify = verify
        if not self.path.is_dir():
            raise StoreError(f"episode store not found: {self.path} is not a folder")
        self.manifest_path = self.path / MANIFEST
        try:
            manifest = read_json(self.manifest_path, "store manifest")
        except (FileNotFoundError, ValueError) as e:
            raise StoreError(str(e)) from None
        self._parse_manifest(manifest)
        self._open: dict[int, dict[str, np.ndarray]] = {}

    # -- manifest -----------------------------------------------------------------------------
    def _bad(self, what: str) -> StoreError:
        return StoreError(f"store manifest {self.manifest_path}: {what}")

    def _parse_manifest(self, m: dict) -> None:
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise self._bad(f"not a farsight episode store (format {m.get('format')!r})")
        if m.get("version") != VERSION:
            raise self._bad(
                f"unsupported version {m.get('version')!r} (this farsight reads {VERSION})"
            )
        try:
            self.meta: dict = m["meta"]
            self.arrays: dict[str, tuple[tuple[int, ...], np.dtype]] = {
                k: (tuple(v["shape"]), np.dtype(v["dtype"])) for k, v in m["arrays"].items()
            }
            self.shards: list[dict] = m["shards"]
            self.episodes: list[Episode] = [
                Episode(
                    int(e["id"]),
                    int(e["shard"]),
                    int(e["offset"]),
                    int(e["length"]),
                    bool(e["terminated"]),
                )
                for e in m["episodes"]
            ]
            split = m["meta"].get("split", {})
            self.split_spec = SplitSpec(**split)
        except (KeyError, TypeError) as e:
            raise self._bad(f"missing or malformed entry {e}") from None
        # Cross-check the manifest against itself so a bad one fails here, not mid-training.
        for i, ep in enumerate(self.episodes):
            if ep.id != i:
                raise self._bad(f"episode at index {i} has id {ep.id}")
            if not 0 <= ep.shard < len(self.shards):
                raise self._bad(f"episode {i} names shard {ep.shard}, store has {len(self.shards)}")
            frames = self.shards[ep.shard]["frames"]
            if ep.length <= 0 or ep.offset < 0 or ep.offset + ep.length > frames:
                raise self._bad(
                    f"episode {i} spans frames [{ep.offset}, {ep.offset + ep.length}) "
                    f"of shard {self.shards[ep.shard]['name']} which holds {frames}"
                )
        for s in self.shards:
            missing = set(self.arrays) - set(s.get("files", {}))
            if missing:
                raise self._bad(f"shard {s.get('name')} lists no file for {sorted(missing)}")

    # -- sizes and splits --------------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return sum(e.length for e in self.episodes)

    def split_episodes(self, split: str) -> list[int]:
        if split == "all":
            return list(range(self.num_episodes))
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}, all")
        return [e.id for e in self.episodes if split_of(e.id, self.split_spec) == split]

    def asked_split(self, split: str, hint: str = "") -> list[int]:
        """The episodes of the split a command was given (``--split``): an unknown or empty
        split is a user error (``hint`` says what to do instead)."""
        try:
            episodes = self.split_episodes(split)
        except ValueError as e:
            raise UsageError(f"--split: {e}") from None
        if not episodes:
            raise UsageError(f"store {self.path} has no {split!r} episodes{hint}")
        return episodes

    # -- shards ------------------------------------------------------------------------------
    def shard_file(self, shard: int, key: str) -> Path:
        return self.path / SHARDS / self.shards[shard]["name"] / f"{key}.npy"

    def _load_shard(self, shard: int) -> dict[str, np.ndarray]:
        entry = self.shards[shard]
        out = {}
        for key, (shape, dtype) in self.arrays.items():
            path = self.shard_file(shard, key)
            info = entry["files"][key]
            if not path.is_file():
                raise StoreError(f"shard file missing: {path} (listed in {self.manifest_path})")
            size = path.stat().st_size
            if size != info["bytes"]:
                raise StoreError(
                    f"shard file {path} is {size} bytes, manifest says {info['bytes']}: "
                    "truncated or overwritten"
                )
            if self.verify == "crc" and file_crc32(path) != info["crc32"]:
                raise StoreError(f"shard file {path} is corrupt: CRC32 does not match the manifest")
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as e:
                raise StoreError(f"shard file {path} cannot be read: {e}") from None
            want = (entry["frames"], *shape)
            if arr.shape != want or arr.dtype != dtype:
                raise StoreError(
                    f"shard file {path} holds {arr.dtype}{list(arr.shape)}, "
                    f"manifest says {dtype}{list(want)}"
                )
            out[key] = arr
        return out

    def _shard(self, shard: int) -> dict[str, np.ndarray]:
        if shard not in self._open:
            self._open[shard] = self._load_shard(shard)
        return self._open[shard]

    def verify_all(self) -> None:
        """Open (and checksum) every shard; raises StoreError on the first bad file."""
        for i in range(len(self.shards)):
            self._load_shard(i)

    # -- reading -----------------------------------------------------------------------------
    def read(
        self,
        episode: int,
        start: int = 0,
        length: int | None = None,
        stride: int = 1,
        keys: tuple[str, ...] | None = None,
    ) -> dict[str, np.ndarray]:
        """Frames ``start, start+stride, ...`` (``length`` of them) of one episode, as copies."""
        if not 0 <= episode < self.num_episodes:
            raise IndexError(
                f"episode {episode} out of range: store {self.path} has {self.num_episodes}"
            )
        ep = self.episodes[episode]
        if length is None:
            length = (ep.length - start + stride - 1) // stride
        last = start + (length - 1) * stride
        if start < 0 or length < 1 or stride < 1 or last >= ep.length:
            raise IndexError(
                f"clip start={start} length={length} stride={stride} does not fit episode "
                f"{episode} of length {ep.length}"
            )
        arrays = self._shard(ep.shard)
        sl = slice(ep.offset + start, ep.offset + last + 1, stride)
        return {k: np.array(arrays[k][sl]) for k in (keys or tuple(self.arrays))}

    def __getstate__(self):
        # Memory maps are reopened lazily in each DataLoader worker.
        state = self.__dict__.copy()
        state["_open"] = {}
        return state


class StoreWriter:
    """Appends whole episodes to a store (new or existing), one atomic shard at a time."""

    def __init__(
        self,
        path: str | Path,
        meta: dict,
        arrays: dict[str, tuple[tuple[int, ...], str]],
        shard_frames: int = 4096,
    ):
        self.path = Path(path)
        self.shard_frames = shard_frames
        self.arrays = {k: (tuple(s), np.dtype(d)) for k, (s, d) in arrays.items()}
        self.manifest_path = self.path / MANIFEST
        (self.path / SHARDS).mkdir(parents=True, exist_ok=True)
        if self.manifest_path.exists():
            store = EpisodeStore(self.path, verify="size")
            if store.num_episodes:
                self._check_compatible(store, meta)
            else:
                store.meta = json.loads(json.dumps(meta))
            self.meta = store.meta
            self.shards = list(store.shards)
            self.episodes = list(store.episodes)
        else:
            self.meta = json.loads(json.dumps(meta))  # a JSON-clean copy
            self.shards, self.episodes = [], []
        self._remove_orphans()
        self._buffer: list[tuple[dict[str, np.ndarray], bool]] = []
        self._buffered_frames = 0

    def _check_compatible(self, store: EpisodeStore, meta: dict) -> None:
        meta = json.loads(json.dumps(meta))
        diff = sorted(k for k in set(meta) | set(store.meta) if meta.get(k) != store.meta.get(k))
        if diff:
            details = "; ".join(
                f"{k}: store has {store.meta.get(k)!r}, asked {meta.get(k)!r}" for k in diff
            )
            raise StoreError(
                f"store {self.path} was recorded with other settings ({details}); "
                "use a new folder or the same settings"
            )
        if _spec_json(self.arrays) != _spec_json(store.arrays):
            raise StoreError(
                f"store {self.path} holds arrays {_spec_json(store.arrays)}, "
                f"asked {_spec_json(self.arrays)}"
            )

    def _remove_orphans(self) -> None:
        listed = {s["name"] for s in self.shards}
        for child in (self.path / SHARDS).iterdir():
            if child.name not in listed:
                shutil.rmtree(child) if child.is_dir() else child.unlink()

    @property
    def num_episodes(self) -> int:
        return len(self.episodes) + len(self._buffer)

    @property
    def num_frames(self) -> int:
        return sum(e.length for e in self.episodes) + self._buffered_frames

    def add_episode(self, arrays: dict[str, np.ndarray], terminated: bool) -> None:
        if set(arrays) != set(self.arrays):
            raise ValueError(
                f"episode arrays {sorted(arrays)} != store arrays {sorted(self.arrays)}"
            )
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"episode arrays must share one non-zero length, got {lengths}")
        for k, a in arrays.items():
            shape, dtype = self.arrays[k]
            if a.shape[1:] != shape:
                raise ValueError(
                    f"array {k!r} has per-frame shape {a.shape[1:]}, store wants {shape}"
                )
        self._buffer.append(
            ({k: np.asarray(a, dtype=self.arrays[k][1]) for k, a in arrays.items()}, terminated)
        )
        self._buffered_frames += lengths.pop()
        if self._buffered_frames >= self.shard_frames:
            self.flush()

    def flush(self) -> None:
        """Write buffered episodes as one shard, then the manifest. Atomic as a whole."""
        if not self._buffer:
            return
        index = len(self.shards)
        name = f"{index:06d}"
        final = self.path / SHARDS / name
        tmp = self.path / SHARDS / f".{name}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        files, offset, new_episodes = {}, 0, []
        for arrays, terminated in self._buffer:
            length = len(next(iter(arrays.values())))
            new_episodes.append(
                Episode(len(self.episodes) + len(new_episodes), index, offset, length, terminated)
            )
            offset += length
        for key in self.arrays:
            data = np.concatenate([a[key] for a, _ in self._buffer])
            path = tmp / f"{key}.npy"
            with open(path, "wb") as f:
                np.save(f, data, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            files[key] = {"bytes": path.stat().st_size, "crc32": file_crc32(path)}
        fsync_dir(tmp)
        tmp.rename(final)
        fsync_dir(final.parent)
        self.shards.append({"name": name, "frames": offset, "files": files})
        self.episodes.extend(new_episodes)
        self._buffer, self._buffered_frames = [], 0
        self._write_manifest()

    def _write_manifest(self) -> None:
        atomic_write_json(
            self.manifest_path,
            {
                "format": FORMAT,
                "version": VERSION,
                "meta": self.meta,
                "arrays": _spec_json(self.arrays),
                "shards": self.shards,
                "episodes": [e.__dict__ for e in self.episodes],
            },
        )

    def close(self) -> None:
        self.flush()
        if not self.manifest_path.exists():
            self._write_manifest()
