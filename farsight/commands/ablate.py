"""``farsight ablate``: train and evaluate a grid of variants x seeds, resumable, then report.

    farsight ablate --recipe abl_cpu --variants next_frame,skip_cascade --seeds 3 \\
        --data data/arena --autoencoder runs/ae_arena --out runs/abl_arena [key=value ...]
    farsight ablate --recipe abl_cpu --variants next_frame,maskgit --seeds 3 --data data/arena \\
        --autoencoder runs/ae_arena --token-autoencoder runs/ae_fsq --out runs/abl_mg
    farsight ablate --out runs/abl_arena --variants ... --seeds 3 --report-only

The work is in ``farsight.eval.ablation``; the variants in ``farsight.eval.variants``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from farsight.commands.rollout import set_threads
from farsight.errors import UsageError

HELP = "train + evaluate variants x seeds at equal steps, resumable; writes a report"


def register(sub: argparse._SubParsersAction, argv: list[str] | None = None) -> None:
    # lazy: imported when this command's parser is built: cli imports every command module.
    from farsight.eval.variants import DEFAULT_GRID, VARIANTS, describe

    listing = "; ".join(f"{name}: {describe(name)}" for name in VARIANTS)
    p = sub.add_parser(
        "ablate",
        help=HELP,
        description="Train every variant of a dynamics recipe with several seeds (one run at a "
        "time, equal optimizer steps), evaluate each on the same held-out clips, and write a "
        "report with 95%% t intervals over seeds. Rerunning skips finished runs and resumes an "
        f"interrupted one. Variants: {listing}.",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="overrides of the recipe for every run (given together, before or after the options)",
    )
    recipe = p.add_argument("--recipe", default="abl_cpu", help="dynamics recipe")
    # Listed from the dynamics recipes' registry, imported only when help is printed.
    p.lazy_help(
        recipe,
        lambda: f"dynamics recipe, one of: {', '.join(dynamics_recipes())} (default abl_cpu)",
    )
    p.add_argument(
        "--variants",
        default=",".join(DEFAULT_GRID),
        help=f"comma-separated variant names (default: {','.join(DEFAULT_GRID)})",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per variant (default 3)")
    p.add_argument("--out", required=True, help="grid folder")
    p.add_argument("--data", help="episode store")
    p.add_argument("--autoencoder", help="autoencoder checkpoint or run folder")
    p.add_argument(
        "--token-autoencoder",
        help="fsq autoencoder (checkpoint or run folder) whose tokens the MaskGIT variants "
        "train on",
    )
    p.add_argument("--steps", type=int, help="train.steps of every run")
    p.add_argument("--eval-episodes", type=int, default=8, help="eval clips per run (8)")
    p.add_argument("--eval-horizon", type=int, default=64, help="frames generated per clip (64)")
    p.add_argument("--eval-split", default="test")
    p.add_argument("--eval-seed", type=int, default=0, help="same clips and noise for every run")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="only (re)write the report from the runs finished so far",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def dynamics_recipes() -> list[str]:
    # lazy: imported when help is printed: cli imports every command module at startup.
    from farsight.train.recipes.dynamics import DYNAMICS_RECIPES

    return DYNAMICS_RECIPES.names()


def run(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs: cli imports every command module at startup.
    from farsight.eval.ablation import AblateSpec, run_grid, write_ablation_report
    from farsight.eval.run import EvalConfig

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.seeds < 1:
        raise UsageError(f"--seeds {args.seeds} must be >= 1")
    seeds = list(range(args.seeds))
    if args.report_only:
        path = write_ablation_report(args.out, variants, seeds)
        print(f"wrote {path}")
        return 0
    if not args.data or not args.autoencoder:
        raise UsageError("ablate needs --data STORE and --autoencoder AE_RUN")
    set_threads(args.threads)
    overrides = list(args.overrides or [])
    if args.steps is not None:
        overrides.insert(0, f"train.steps={args.steps}")
    spec = AblateSpec(
        recipe=args.recipe,
        data=str(Path(args.data).resolve()),
        autoencoder=str(Path(args.autoencoder).resolve()),
        overrides=tuple(overrides),
        token_autoencoder=str(Path(args.token_autoencoder).resolve())
        if args.token_autoencoder
        else "",
        eval=EvalConfig(
            split=args.eval_split,
            clips=args.eval_episodes,
            horizon=args.eval_horizon,
            seed=args.eval_seed,
        ),
    )
    records = run_grid(spec, args.out, variants, seeds, progress=not args.quiet)
    print(f"{len(records)} runs this session; report {Path(args.out) / 'README.md'}")
    return 0
