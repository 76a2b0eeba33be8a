"""Latent cache: 1:1 alignment with the store, clips from it, refusal of stale caches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from farsight.cli import main
from farsight.config import build_config
from farsight.data.store import EpisodeStore, StoreWriter
from farsight.errors import FarsightError
from farsight.latents import LatentCache, StaleCacheError, build_cache, open_cache
from farsight.models.autoencoder import Autoencoder, frames_to_images
from farsight.train.autoencoder import load_autoencoder
from farsight.train.checkpoint import save_checkpoint
from farsight.train.recipes.autoencoder import AE_RECIPES

pytestmark = pytest.mark.usefixtures("one_thread")


def make_store(path: Path, episodes: int = 6, seed: int = 0) -> Path:
    """Episodes of 12.. frames of 16x16 noise, with per-frame actions, rewards and state."""
    writer = StoreWriter(
        path,
        {"split": {"seed": 0, "val": 0.2, "test": 0.2}},
        {
            "frames": ((16, 16, 3), "uint8"),
            "actions": ((), "int64"),
            "rewards": ((), "float32"),
            "dones": ((), "bool"),
            "state.pos": ((2,), "float32"),
        },
        shard_frames=40,
    )
    for e in range(episodes):
        writer.add_episode(_episode(12 + e, seed * 1000 + e), terminated=e % 2 == 0)
    writer.close()
    return path


def make_checkpoint(path: Path, kind: str = "continuous", seed: int = 0) -> Path:
    """An untrained tiny autoencoder checkpoint (weights do not matter for the cache)."""
    cfg = build_config(AE_RECIPES, "ae_tiny", [f"model.kind={kind}", "model.fsq_levels=[5,5,3]"])
    torch.manual_seed(seed)
    model = Autoencoder(cfg.model)
    model.set_latent_stats(0.25, 3.0)
    save_checkpoint(path, kind="autoencoder", config=cfg, step=0, model=model)
    return path


@pytest.fixture
def store(tmp_path) -> Path:
    return make_store(tmp_path / "store", episodes=6)


@pytest.mark.parametrize("kind,dtype", [("continuous", "float16"), ("fsq", "bfloat16")])
def test_cache_is_aligned_with_the_store(tmp_path, store, kind, dtype):
    ckpt = make_checkpoint(tmp_path / "ae" / "checkpoint.pt", kind)
    cache = build_cache(ckpt, store, dtype=dtype, batch_size=5, progress=False)
    # The default location: under the autoencoder's run, named by the store and its path.
    assert cache.path.parent == tmp_path / "ae" / "latents"
    assert cache.path.name.startswith("store-")
    source = EpisodeStore(store)
    assert cache.store.num_episodes == source.num_episodes
    for split in ("train", "val", "test"):
        assert cache.store.split_episodes(split) == source.split_episodes(split)
    model, _, _ = load_autoencoder(ckpt)
    for ep in range(source.num_episodes):
        want, got = source.read(ep), cache.store.read(ep)
        assert source.episodes[ep].length == cache.store.episodes[ep].length
        assert source.episodes[ep].terminated == cache.store.episodes[ep].terminated
        for key in ("actions", "rewards", "dones", "state.pos"):
            np.testing.assert_array_equal(got[key], want[key])
        with torch.no_grad():
            mean = model.encode(frames_to_images(torch.from_numpy(want["frames"])))[0]
        latents = cache.to_float(torch.from_numpy(got["latents"]))
        if kind == "continuous":
            torch.testing.assert_close(latents, model.normalize(mean), atol=2e-3, rtol=2e-3)
        else:
            torch.testing.assert_close(latents, mean, atol=2e-2, rtol=1e-2)  # bf16 on disk
            np.testing.assert_array_equal(got["indices"], model.fsq.tokens(mean).numpy())
    assert cache.info.kind == kind and cache.info.dtype == dtype
    assert cache.info.grid == (4, 4) and cache.info.factor == 4


@pytest.mark.parametrize("kind", ["continuous", "fsq"])
def test_cache_is_the_same_on_bf16_and_avx2_only_cpus(tmp_path, store, kind, monkeypatch):
    """``farsight encode`` with its defaults, on a CPU whose bf16 is fast (AVX512-BF16/AMX:
    ``auto`` would pick bf16) and on an AVX2-only one (``auto`` -> fp32), simulated by the
    capability check: byte-identical caches, both recorded as encoded at fp32."""
    from farsight import precision

    ckpt = make_checkpoint(tmp_path / "ae.pt", kind)
    caches = {}
    for name, fast_bf16 in (("amx", True), ("avx2", False)):
        monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda fast=fast_bf16: fast)
        assert precision.resolve_precision("auto", torch.device("cpu")) == (
            "bf16" if fast_bf16 else "fp32"
        )
        out = tmp_path / name
        args = ["encode", "--autoencoder", str(ckpt), "--data", str(store), "--out", str(out)]
        assert main([*args, "--quiet"]) == 0
        caches[name] = LatentCache(out)
    amx, avx2 = caches["amx"], caches["avx2"]
    keys = ("latents", "indices") if kind == "fsq" else ("latents",)
    for ep in range(amx.store.num_episodes):
        a, b = amx.store.read(ep), avx2.store.read(ep)
        for key in keys:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{key} of episode {ep}")
    assert amx.info.precision == avx2.info.precision == "fp32"
    # The check has teeth: bf16 autocast does move these latents.
    model, _, _ = load_autoencoder(ckpt)
    images = frames_to_images(torch.from_numpy(EpisodeStore(store).read(0)["frames"]))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model.encode(images)[0].float()
    with torch.no_grad():
        fp32 = model.encode(images)[0]
    assert not torch.equal(bf16.half(), fp32.half())


@pytest.mark.parametrize("recorded", ["bf16", None])
def test_cache_made_at_another_precision_is_refused(tmp_path, store, recorded):
    ckpt = make_checkpoint(tmp_path / "ae.pt")
    out = tmp_path / "cache"
    build_cache(ckpt, store, out, progress=False)
    # As an older farsight wrote it (no precision) or one encoding under bf16 autocast.
    manifest = json.loads((out / "manifest.json").read_text())
    latent = manifest["meta"]["latent_cache"]["latent"]
    if recorded is None:
        del latent["precision"]
    else:
        latent["precision"] = recorded
    (out / "manifest.json").write_text(json.dumps(manifest))
    phrase = "unrecorded precision" if recorded is None else "encoded at bf16"
    with pytest.raises(StaleCacheError, match=f"{phrase}.*--out {out} --overwrite"):
        open_cache(out, store=store, autoencoder=ckpt)
    with pytest.raises(StaleCacheError, match=f"{phrase}.*refusing to mix"):
        build_cache(ckpt, store, out, progress=False)
    rebuilt = build_cache(ckpt, store, out, overwrite=True, progress=False)
    assert rebuilt.info.precision == "fp32"
    open_cache(out, store=store, autoencoder=ckpt)


def test_cache_serves_latent_clips(tmp_path, store):
    ckpt = make_checkpoint(tmp_path / "ae.pt")
    cache = build_cache(ckpt, store, tmp_path / "cache", progress=False)
    clips = open_cache(tmp_path / "cache", store=store, autoencoder=ckpt).clips(clip_len=4, extra=2)
    item = clips[0]
    assert item["latents"].shape == (6, 4, 4, 4) and item["latents"].dtype == torch.float32
    assert item["actions"].shape == (6,) and item["state"]["pos"].shape == (6, 2)
    raw = cache.store.read(item["episode"], item["start"], 6)
    torch.testing.assert_close(item["latents"], torch.from_numpy(raw["latents"]).float())
    batch = next(iter(torch.utils.data.DataLoader(clips, batch_size=3)))
    assert batch["latents"].shape == (3, 6, 4, 4, 4)


def test_cache_of_another_checkpoint_is_refused(tmp_path, store):
    first = make_checkpoint(tmp_path / "a.pt", seed=0)
    second = make_checkpoint(tmp_path / "b.pt", seed=1)
    build_cache(first, store, tmp_path / "cache", progress=False)
    with pytest.raises(StaleCacheError, match="another autoencoder"):
        build_cache(second, store, tmp_path / "cache", progress=False)
    with pytest.raises(StaleCacheError, match="another autoencoder"):
        open_cache(tmp_path / "cache", autoencoder=second)
    open_cache(tmp_path / "cache", store=store, autoencoder=first)  # the right one opens
    rebuilt = build_cache(second, store, tmp_path / "cache", overwrite=True, progress=False)
    open_cache(rebuilt.path, store=store, autoencoder=second)


def test_changed_store_is_refused_and_grown_store_extended(tmp_path, store):
    ckpt = make_checkpoint(tmp_path / "ae.pt")
    build_cache(ckpt, store, tmp_path / "cache", progress=False)
    # The store grows: refused until encoded again, which only adds the new episodes.
    writer = StoreWriter(store, EpisodeStore(store).meta, _arrays(store), shard_frames=40)
    for n in (9, 11):
        writer.add_episode(_episode(n), terminated=True)
    writer.close()
    with pytest.raises(StaleCacheError, match="has grown to 8 episodes"):
        open_cache(tmp_path / "cache", store=store)
    first_shard = (tmp_path / "cache" / "shards" / "000000" / "latents.npy").stat().st_mtime_ns
    extended = build_cache(ckpt, store, tmp_path / "cache", progress=False)
    assert extended.store.num_episodes == 8
    assert (tmp_path / "cache" / "shards" / "000000" / "latents.npy").stat().st_mtime_ns == (
        first_shard
    )
    open_cache(tmp_path / "cache", store=store, autoencoder=ckpt)
    # The store is replaced by a different recording: refused, rebuilt only with overwrite.
    shutil.rmtree(store)
    make_store(store, episodes=8, seed=5)
    with pytest.raises(StaleCacheError, match="has changed"):
        open_cache(tmp_path / "cache", store=store)
    with pytest.raises(StaleCacheError, match="refusing to mix"):
        build_cache(ckpt, store, tmp_path / "cache", progress=False)
    build_cache(ckpt, store, tmp_path / "cache", overwrite=True, progress=False)
    open_cache(tmp_path / "cache", store=store)


def test_stores_of_the_same_name_get_caches_of_their_own(tmp_path):
    """Two stores both called ``data``, one autoencoder: each store gets its own default cache;
    a cache given for the other store is refused as *another store* (not a changed one), and
    no suggested command overwrites it."""
    first = make_store(tmp_path / "first" / "data", episodes=4, seed=1)
    second = make_store(tmp_path / "second" / "data", episodes=5, seed=2)
    ckpt = make_checkpoint(tmp_path / "ae" / "checkpoint.pt")
    a = build_cache(ckpt, first, progress=False)
    b = build_cache(ckpt, second, progress=False)
    assert a.path != b.path and a.path.parent == b.path.parent == tmp_path / "ae" / "latents"
    assert (a.store.num_episodes, b.store.num_episodes) == (4, 5)
    open_cache(a.path, store=first, autoencoder=ckpt)
    open_cache(b.path, store=second, autoencoder=ckpt)
    # The first store's cache named for the second (data.cache=... of train dynamics).
    with pytest.raises(StaleCacheError) as e:
        open_cache(a.path, store=second, autoencoder=ckpt)
    message = str(e.value)
    assert f"encodes another store ({first.resolve()}), not {second}" in message
    assert "changed" not in message and "--overwrite" not in message
    assert f"--data {second}" in message and f"--out {a.path}" not in message
    with pytest.raises(StaleCacheError, match="encodes another store") as e:
        build_cache(ckpt, second, a.path, progress=False)
    assert "--overwrite" not in str(e.value)
    # The same store, changed: rebuilding *its* cache is the advice.
    shutil.rmtree(first)
    make_store(first, episodes=4, seed=9)
    with pytest.raises(StaleCacheError, match="has changed") as e:
        open_cache(a.path, store=first)
    assert f"--data {first} --out {a.path} --overwrite" in str(e.value)


def test_a_latent_cache_as_data_says_how_to_train_on_it(tmp_path, store, capsys):
    ckpt = make_checkpoint(tmp_path / "ae" / "checkpoint.pt")
    cache = build_cache(ckpt, store, progress=False)
    with pytest.raises(FarsightError, match=f"is a latent cache.*data.cache={cache.path}"):
        build_cache(ckpt, cache.path, progress=False)
    args = ["train", "dynamics", "dyn_tiny", "--autoencoder", str(ckpt), "--quiet"]
    assert main([*args, "--data", str(cache.path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"--data {store.resolve()} data.cache={cache.path}" in err


def test_interrupted_build_is_refused_then_continued(tmp_path, store, monkeypatch):
    ckpt = make_checkpoint(tmp_path / "ae.pt")
    import farsight.latents as latents

    calls = {"n": 0}
    original = latents.encode_frames

    def fail_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(latents, "encode_frames", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        build_cache(ckpt, store, tmp_path / "cache", progress=False, shard_frames=1)
    monkeypatch.undo()
    partial = LatentCache(tmp_path / "cache")
    assert partial.store.num_episodes == 2 and not partial.complete
    with pytest.raises(StaleCacheError, match="incomplete"):
        open_cache(tmp_path / "cache", store=store)
    full = build_cache(ckpt, store, tmp_path / "cache", progress=False)
    assert full.store.num_episodes == EpisodeStore(store).num_episodes


def test_cli_encode(tmp_path, store, capsys):
    ckpt = make_checkpoint(tmp_path / "ae.pt")
    out = tmp_path / "cache"
    args = ["encode", "--autoencoder", str(ckpt), "--data", str(store), "--out", str(out)]
    assert main([*args, "--quiet"]) == 0
    assert "6 episodes" in capsys.readouterr().out
    other = make_checkpoint(tmp_path / "other.pt", seed=3)
    assert main([*args[:2], str(other), *args[3:], "--quiet"]) == 2
    assert "another autoencoder" in capsys.readouterr().err
    assert main(["encode", "--autoencoder", str(tmp_path / "nope"), "--data", str(store)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def _arrays(store: Path) -> dict:
    return {k: (s, str(d)) for k, (s, d) in EpisodeStore(store).arrays.items()}


def _episode(n: int, seed: int | None = None) -> dict:
    rng = np.random.default_rng(n if seed is None else seed)
    dones = np.zeros(n, bool)
    dones[-1] = True
    return {
        "frames": rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
        "actions": rng.integers(0, 3, n),
        "rewards": rng.random(n, dtype=np.float32),
        "dones": dones,
        "state.pos": rng.random((n, 2), dtype=np.float32),
    }
