"""``farsight quickstart``: the whole pipeline on the built-in arena, on a laptop CPU.

record -> train autoencoder -> encode -> train dynamics -> rollout video, then the command
that plays the model. Each finished stage is skipped when run again, so an interrupted quickstart
picks up where it stopped (a training run it interrupted resumes exactly).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from farsight.io import atomic_write
from farsight.shell import command_line

HELP = "record the arena, train a small world model, write a rollout video"


def register(sub: argparse._SubParsersAction, argv: list[str] | None = None) -> None:
    p = sub.add_parser(
        "quickstart",
        help=HELP,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="runs/quickstart", help="folder for everything it makes")
    p.add_argument(
        "--frames",
        type=int,
        default=40_000,
        help="frames to record (40,000: about 78 episodes, 4 of them in the test split)",
    )
    p.add_argument("--ae-minutes", type=float, default=4.0, help="autoencoder training budget")
    p.add_argument("--dyn-minutes", type=float, default=15.0, help="dynamics training budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads for training (0: one per core)"
    )
    p.set_defaults(func=run)


def _done(out: Path, stage: str) -> bool:
    # A stage whose run folder was deleted since (to retrain it) is not done.
    return (out / f".{stage}.done").exists() and (out / stage / "checkpoint.pt").exists()


def _mark_done(out: Path, stage: str) -> None:
    atomic_write(out / f".{stage}.done", lambda f: f.write(b"ok\n"))


def run(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs: cli imports every command module at startup.
    from farsight.config import apply_overrides
    from farsight.data.recorder import RECORD_RECIPES, record
    from farsight.latents import build_cache
    from farsight.train.autoencoder import train_autoencoder
    from farsight.train.dynamics import train_dynamics
    from farsight.train.recipes.autoencoder import AE_RECIPES
    from farsight.train.recipes.dynamics import DYNAMICS_RECIPES

    out = Path(args.out)
    store, ae_run, dyn_run = out / "data", out / "autoencoder", out / "dynamics"
    cache = out / "latents"

    print(f"[1/5] recording {args.frames} frames of the built-in arena into {store}")
    rec = apply_overrides(
        RECORD_RECIPES.get("arena"), [f"frames={args.frames}", f"seed={args.seed}"]
    )
    record(rec, store)

    print(f"[2/5] training the frame autoencoder ({args.ae_minutes:g} min) into {ae_run}")
    if not _done(out, "autoencoder"):
        ae = apply_overrides(
            AE_RECIPES.get("ae_cpu"),
            [
                f"data.path={store.resolve()}",
                f"train.max_minutes={args.ae_minutes}",
                f"train.seed={args.seed}",
                f"train.threads={args.threads}",
            ],
        )
        train_autoencoder(ae, ae_run, resume=(ae_run / "checkpoint.pt").exists())
        _mark_done(out, "autoencoder")

    print(f"[3/5] encoding the store into the latent cache {cache}")
    # The cache is the quickstart's own: one made before (e.g. by an older farsight, at another
    # precision) is rebuilt rather than refused; a current one is reused or extended.
    build_cache(ae_run, store, cache, overwrite=True)

    print(f"[4/5] training the dynamics model ({args.dyn_minutes:g} min) into {dyn_run}")
    if not _done(out, "dynamics"):
        dyn = apply_overrides(
            DYNAMICS_RECIPES.get("dyn_quickstart"),
            [
                f"data.path={store.resolve()}",
                f"data.autoencoder={ae_run.resolve()}",
                f"data.cache={cache.resolve()}",
                f"train.max_minutes={args.dyn_minutes}",
                f"train.seed={args.seed}",
                f"train.threads={args.threads}",
            ],
        )
        train_dynamics(dyn, dyn_run, resume=(dyn_run / "checkpoint.pt").exists())
        _mark_done(out, "dynamics")

    # lazy: imported when the command runs: cli imports every command module at startup.
    from farsight.train.curves import write_curves

    kind = DYNAMICS_RECIPES.get("dyn_quickstart").objective.kind.replace("_", "-")
    curves = write_curves(dyn_run, out / "curves.png", f"quickstart dynamics ({kind} diffusion)")
    video = out / "rollout.mp4"
    print(f"[5/5] writing an open-loop rollout of a held-out episode to {video}")
    # lazy: imported when the command runs: cli imports every command module at startup.
    from farsight.data.store import EpisodeStore
    from farsight.rollout_video import write_rollout_video
    from farsight.world_model import load_world_model

    rollout = write_rollout_video(
        load_world_model(dyn_run), EpisodeStore(store), video, frames=120, seed=args.seed
    )
    print(f"      {rollout.generated} frames generated at {rollout.frames_per_second:.1f} frames/s")
    print()
    print("\n".join(next_steps(out, video, dyn_run, curves)))
    return 0


def next_steps(out: Path, video: Path, dyn_run: Path, curves: Path) -> list[str]:
    """What the quickstart made and the commands to go on with; each runs where it is pasted,
    also in a fresh shell where the virtual environment is not active."""
    play = command_line("play", "--ckpt", dyn_run)
    tensorboard = command_line("--logdir", out, program="tensorboard")
    return [
        f"done. the rollout video:   {video}  (left: the real game, right: the model)",
        f"      play the model:      {play}",
        f"      its loss curves:     {curves}  (all of them: {tensorboard})",
    ]
