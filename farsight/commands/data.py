"""``farsight data info|preview``: inspect an episode store."""

from __future__ import annotations

import argparse

from farsight.errors import UsageError

HELP = "inspect an episode store"


def register(sub: argparse._SubParsersAction, argv: list[str] | None = None) -> None:
    p = sub.add_parser("data", help=HELP)
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="data_command")

    info = data_sub.add_parser("info", help="counts, lengths, actions, splits; verifies shards")
    info.add_argument("store")
    info.add_argument(
        "--no-verify", action="store_true", help="skip the CRC check of every shard file"
    )
    info.set_defaults(func=run_info)

    preview = data_sub.add_parser("preview", help="write episodes as an mp4 with actions drawn in")
    preview.add_argument("store")
    preview.add_argument("--out", required=True, help="mp4 path")
    preview.add_argument("--episode", type=int, default=0, help="first episode to show")
    preview.add_argument("--frames", type=int, default=300, help="frames in the video")
    preview.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscale factor")
    preview.add_argument("--fps", type=float, default=15.0)
    preview.set_defaults(func=run_preview)


def run_info(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs: cli imports every command module at startup.
    import numpy as np

    from farsight.data.store import SPLITS, EpisodeStore

    store = EpisodeStore(args.store, verify="size" if args.no_verify else "crc")
    if not args.no_verify:
        store.verify_all()
    env = store.meta.get("env", {})
    meanings = env.get("action_meanings", [])
    lengths = np.array([e.length for e in store.episodes]) if store.episodes else np.zeros(1)
    print(f"store      {store.path}")
    print(f"env        {env.get('env_id')}  size {env.get('size')}", end="")
    print(f"  frame skip {env.get('frame_skip')}")
    print(f"policy     {store.meta.get('policy')}")
    print(f"seed       {store.meta.get('seed')}")
    print(
        f"episodes   {store.num_episodes} ({sum(e.terminated for e in store.episodes)} terminated)"
    )
    print(f"frames     {store.num_frames} in {len(store.shards)} shards")
    print(f"length     min {lengths.min()}  mean {lengths.mean():.1f}  max {lengths.max()}")
    arrays = ", ".join(f"{k} {d}{list(s)}" for k, (s, d) in store.arrays.items())
    print(f"arrays     {arrays}")
    print(f"verified   {'sizes only' if args.no_verify else 'sizes and CRC32 of every file'}")
    for split in SPLITS:
        eps = store.split_episodes(split)
        frames = sum(store.episodes[e].length for e in eps)
        print(f"split      {split:<5} {len(eps):>6} episodes {frames:>9} frames")
    if "actions" in store.arrays and store.num_episodes:
        counts = np.zeros(max(len(meanings), 1), dtype=np.int64)
        rewards = 0.0
        for ep in store.episodes:
            clip = store.read(ep.id, keys=("actions", "rewards"))
            # The last action of an episode is padding: it leads nowhere.
            acts = clip["actions"][:-1]
            counts = np.pad(counts, (0, max(0, acts.max(initial=0) + 1 - len(counts))))
            counts += np.bincount(acts, minlength=len(counts))
            rewards += float(clip["rewards"].sum())
        print(f"reward     total {rewards:.1f}, per episode {rewards / store.num_episodes:.2f}")
        print("actions")
        total = max(int(counts.sum()), 1)
        for a, c in enumerate(counts):
            name = meanings[a] if a < len(meanings) else str(a)
            bar = "#" * round(40 * c / total)
            print(f"  {a:>3} {name:<16} {c:>9} {100 * c / total:5.1f}% {bar}")
    return 0


def run_preview(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs: cli imports every command module at startup.
    from tqdm import tqdm

    from farsight.data.store import EpisodeStore
    from farsight.video import caption, upscale, write_video

    store = EpisodeStore(args.store)
    meanings = store.meta.get("env", {}).get("action_meanings", [])
    if not 0 <= args.episode < store.num_episodes:
        raise UsageError(
            f"--episode {args.episode} out of range: {args.store} has {store.num_episodes}"
        )

    def frames():
        shown = 0
        for ep in range(args.episode, store.num_episodes):
            clip = store.read(ep, keys=("frames", "actions", "rewards"))
            for t in range(len(clip["actions"])):
                if shown == args.frames:
                    return
                a = int(clip["actions"][t])
                name = meanings[a] if a < len(meanings) else str(a)
                text = f"ep {ep} t {t} a {name} r {clip['rewards'][t]:g}"
                yield caption(upscale(clip["frames"][t], args.scale), text, height=14)
                shown += 1

    total = min(
        args.frames, store.num_frames - sum(e.length for e in store.episodes[: args.episode])
    )
    n = write_video(args.out, tqdm(frames(), total=total, desc="preview", unit="frame"), args.fps)
    print(f"wrote {args.out}: {n} frames at {args.fps:g} fps")
    return 0
