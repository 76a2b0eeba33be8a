"""``farsight encode``: encode a whole episode store into a latent cache, once."""

from __future__ import annotations

import argparse

HELP = "encode an episode store into a latent cache with a trained autoencoder"


def register(sub: argparse._SubParsersAction, argv: list[str] | None = None) -> None:
    p = sub.add_parser(
        "encode",
        help=HELP,
        description="Encode every frame of --data with the EMA weights of --autoencoder into a "
        "latent cache aligned 1:1 with the store's episodes (deterministic mean latents; FSQ "
        "indices for the fsq kind), always in fp32 so the cache is the same on every machine. "
        "Re-running continues an interrupted build or extends the cache of a store that has "
        "grown; a cache made by another checkpoint, at another precision or from a changed store "
        "is refused (unless --overwrite).",
    )
    p.add_argument("--autoencoder", required=True, help="checkpoint file or run folder")
    p.add_argument("--data", required=True, help="episode store to encode")
    p.add_argument(
        "--out",
        help="cache folder (default: RUN/latents/<store folder name>-<hash of its path>, one per "
        "store)",
    )
    p.add_argument("--dtype", default="float16", choices=("float16", "bfloat16"))
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--overwrite", action="store_true", help="rebuild a stale cache at --out")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs: cli imports every command module at startup.
    from farsight.latents import build_cache

    cache = build_cache(
        args.autoencoder,
        args.data,
        args.out,
        dtype=args.dtype,
        batch_size=args.batch_size,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    info = cache.info
    print(
        f"latent cache {cache.path}: {cache.store.num_episodes} episodes, "
        f"{cache.store.num_frames} frames of {info.grid[0]}x{info.grid[1]}x{info.channels} "
        f"{info.kind} latents ({info.dtype})"
    )
    return 0
