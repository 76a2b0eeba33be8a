"""Autoencoder throughput: encode and decode frames/s, and an end-to-end latent cache build.

Weights do not change the speed, so by default a freshly initialised model of ``--recipe`` is
timed (``--autoencoder`` times a trained checkpoint instead). Frames come from ``--data`` or
are random. bf16 is timed only where the device has native bf16 kernels.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from farsight.bench import Row, median_rate
from farsight.config import build_config
from farsight.data.store import EpisodeStore, StoreWriter
from farsight.latents import build_cache
from farsight.models.autoencoder import Autoencoder, frames_to_images
from farsight.precision import autocast, bf16_is_fast, resolve_device
from farsight.train.autoencoder import load_autoencoder
from farsight.train.checkpoint import save_checkpoint
from farsight.train.recipes.autoencoder import AE_RECIPES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="ae_cpu", help="autoencoder recipe to time")
    p.add_argument("--autoencoder", help="time this checkpoint instead of a fresh model")
    p.add_argument("--data", help="episode store to take frames from (default: random frames)")
    p.add_argument("--frames", type=int, default=1024, help="frames per timed repeat")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-frames", type=int, default=4096, help="frames of the cache build")


def run(args: argparse.Namespace) -> list[Row]:
    device = resolve_device(args.device)
    if args.autoencoder:
        model, cfg, _ = load_autoencoder(args.autoencoder, device)
        name = f"checkpoint {args.autoencoder}"
    else:
        cfg = build_config(AE_RECIPES, args.recipe, [])
        torch.manual_seed(0)
        model = Autoencoder(cfg.model).to(device).eval().requires_grad_(False)
        name = f"recipe {args.recipe}"
    if args.data:
        frames = EpisodeStore(args.data).read(0, 0, None, keys=("frames",))["frames"]
        frames = np.resize(frames, (args.frames, *frames.shape[1:]))
    else:
        frames = np.random.default_rng(0).integers(0, 256, (args.frames, 64, 64, 3), np.uint8)
    images = frames_to_images(torch.from_numpy(frames)).to(device)
    with torch.no_grad():
        latents = model.encode(images[:1])[0]
    c, h, w = latents.shape[1:]
    params = sum(p.numel() for p in model.parameters()) / 1e6
    what = f"{name}, {params:.2f}M params, {frames.shape[1]}x{frames.shape[2]} -> {h}x{w}x{c}"

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    @torch.no_grad()
    def encode(precision: str) -> int:
        for i in range(0, len(images), args.batch_size):
            with autocast(device, precision):
                model.encode(images[i : i + args.batch_size])
        sync()
        return len(images)

    z = torch.randn(args.batch_size, c, h, w, device=device)

    @torch.no_grad()
    def decode(precision: str) -> int:
        for _ in range(0, len(images), args.batch_size):
            with autocast(device, precision):
                model.decode(z)
        sync()
        return len(images) // args.batch_size * args.batch_size

    rows = []
    precisions = ["fp32"] + (["bf16"] if bf16_is_fast(device) else [])
    if len(precisions) == 1:
        what += f"; bf16 not timed: this {device.type} has no native bf16 kernels"
    for precision in precisions:
        rate, _ = median_rate(lambda p=precision: encode(p), repeats=args.repeats)
        rows.append(Row(f"encode frames/s ({device.type}, {precision})", rate, "frames/s", what))
        rate, _ = median_rate(lambda p=precision: decode(p), repeats=args.repeats)
        rows.append(Row(f"decode frames/s ({device.type}, {precision})", rate, "frames/s", what))

    # End to end: store -> latent cache (reading, CRC checks, encoding, writing shards).
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = tmp / "run" / "checkpoint.pt"
        save_checkpoint(ckpt, kind="autoencoder", config=cfg, step=0, model=model.cpu())
        model.to(device)
        store_frames = np.resize(frames, (args.cache_frames, *frames.shape[1:]))
        writer = StoreWriter(
            tmp / "store",
            {"split": {"seed": 0, "val": 0.05, "test": 0.05}},
            {"frames": (store_frames.shape[1:], "uint8"), "actions": ((), "int64")},
        )
        for start in range(0, len(store_frames), 512):
            part = store_frames[start : start + 512]
            writer.add_episode({"frames": part, "actions": np.zeros(len(part), np.int64)}, False)
        writer.close()
        t0 = time.perf_counter()
        build_cache(
            ckpt,
            tmp / "store",
            tmp / "cache",
            batch_size=args.batch_size,
            device=str(device),
            progress=False,
        )
        rate = len(store_frames) / (time.perf_counter() - t0)
    rows.append(
        Row(
            f"farsight encode end to end ({device.type})",
            rate,
            "frames/s",
            f"{len(store_frames)} frames, store -> float16 cache, {what}",
        )
    )
    return rows
