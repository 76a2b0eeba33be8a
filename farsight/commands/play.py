"""``farsight play``: play an environment or a trained world model in the browser."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from farsight.commands.rollout import set_threads
from farsight.errors import UsageError

HELP = "play an environment (--env) or a trained world model (--ckpt) live in the browser"


def register(sub: argparse._SubParsersAction, argv: list[str] | None = None) -> None:
    # lazy: imported when this command's parser is built: cli imports every command module.
    from farsight.envs import ENV_IDS
    from farsight.sampling.config import add_sampling_arguments

    p = sub.add_parser(
        "play",
        help=HELP,
        description="Serve a page that streams the environment's frames over a websocket and "
        "plays the keys you press. Each browser tab gets its own environment.",
    )
    p.add_argument("--env", help=f"env id to play: {', '.join(ENV_IDS)}")
    p.add_argument("--size", type=int, default=64, help="frame size of the env (default 64)")
    p.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; anything else exposes the game and the "
        "recording folder to the network)",
    )
    p.add_argument("--fps", type=int, default=20, help="initial steps per second (default 20)")
    p.add_argument(
        "--record-dir",
        default="recordings",
        help="folder for the page's session recordings (mp4; default ./recordings)",
    )
    p.add_argument("--max-sessions", type=int, default=4, help="concurrent players (default 4)")
    p.add_argument("--ckpt", help="play a trained world model (dynamics checkpoint or run folder)")
    p.add_argument(
        "--data", help="with --ckpt: episode store whose held-out episodes prompt the model"
    )
    p.add_argument("--device", default="auto", help="with --ckpt: cpu, cuda, cuda:N or auto")
    p.add_argument("--seed", type=int, help="with --ckpt: seed of prompts and generation")
    p.add_argument(
        "--threads", type=int, default=1, help="with --ckpt: torch CPU threads (default 1; 0: all)"
    )
    add_sampling_arguments(p)
    p.set_defaults(func=run)


def env_factory(args: argparse.Namespace) -> tuple[Callable[[], Any], str]:
    """The env factory the server calls once per session, and a title for the page.

    A world model is one more branch here: ``--ckpt`` -> a factory of ``WorldModelEnv``.
    """
    if getattr(args, "ckpt", None):
        return world_model_factory(args)
    if args.env is None:
        raise UsageError("say what to play: --env ENV_ID (e.g. --env arena) or --ckpt RUN")
    # lazy: imported when the command runs: cli imports every command module at startup.
    from farsight.envs import EnvConfig, make_env

    cfg = EnvConfig(id=args.env, size=args.size)
    # Build one env now so a bad id or a missing game package fails here, in the terminal,
    # rather than in the browser; it is closed again at once.
    make_env(cfg).close()
    return (lambda: make_env(cfg)), f"{args.env} (real environment)"


def world_model_factory(args: argparse.Namespace) -> tuple[Callable[[], Any], str]:
    """``--ckpt``: load the model once; every session gets its own ``WorldModelEnv`` (own
    cache and generator) over the shared, read-only weights. Prompts come from ``--data`` (a
    random held-out episode per reset) or, without it, from a fresh real env of the recorded
    kind."""
    # lazy: imported when the command runs: cli imports every command module at startup.
    from farsight.precision import resolve_device
    from farsight.sampling.config import model_sampling, sampling_from_args
    from farsight.world_env import WorldModelEnv
    from farsight.world_model import load_world_model

    if args.env is not None:
        raise UsageError("--env and --ckpt exclude each other: play an env or a world model")
    sampling_from_args(args)  # a bad flag fails before the checkpoint loads
    set_threads(args.threads)
    world_model = load_world_model(args.ckpt, resolve_device(args.device))
    sampling = sampling_from_args(args, model_sampling(world_model))
    store = None
    if args.data:
        # lazy: imported when the command runs: cli imports every command module at startup.
        from farsight.data.store import EpisodeStore

        store = EpisodeStore(args.data)

    def make() -> WorldModelEnv:
        return WorldModelEnv(world_model, store, sampling=sampling, seed=args.seed)

    # Fail here, in the terminal, if the model cannot be prompted (no store, unknown env).
    probe = make()
    try:
        probe.reset(seed=0)
    except ValueError as e:
        raise UsageError(f"--ckpt {args.ckpt}: cannot prompt the model: {e}") from None
    finally:
        probe.close()
    name = world_model.meta.get("env_id", "world model")
    step = getattr(world_model, "step", "?")
    return make, f"{name} world model ({Path(args.ckpt).name}, step {step})"


def run(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs: cli imports every command module at startup.
    from farsight.play.server import create_app, serve
    from farsight.play.session import PlayConfig

    if not 1 <= args.fps <= 60:
        raise UsageError(f"--fps {args.fps} must be in [1, 60]")
    if not 0 <= args.port < 65536:
        raise UsageError(f"--port {args.port} must be in [0, 65535]")
    if args.max_sessions < 1:
        raise UsageError(f"--max-sessions {args.max_sessions} must be at least 1")
    factory, title = env_factory(args)
    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    if not loopback:
        print(
            f"warning: listening on {args.host}: anyone who can reach this address can play, "
            f"and write recordings to {Path(args.record_dir).resolve()}",
            file=sys.stderr,
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = PlayConfig(
        fps=args.fps,
        record_dir=Path(args.record_dir),
        max_sessions=args.max_sessions,
        loopback_only=loopback,
        title=title,
    )

    def ready(url: str) -> None:
        shown = url.replace("://0.0.0.0:", "://127.0.0.1:")
        print(f"farsight play: open {shown} in your browser (Ctrl-C to stop)", flush=True)

    try:
        serve(create_app(factory, cfg), args.host, args.port, on_ready=ready)
    except OSError as e:
        raise UsageError(str(e)) from None
    return 0
