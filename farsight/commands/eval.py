"""``farsight eval``: open-loop metrics of a world model on held-out episodes.

    farsight eval --ckpt RUN --data STORE --out DIR [--split test] [--episodes 8]
        [--horizon 64] [--seed 0] [--threads 1] [--sampling.steps 4 ...]

Writes metrics.json/csv, PNG curves, a rollout strip and README.md into --out; the work is in
``farsight.eval.run``.
"""

from __future__ import annotations

import argparse

from farsight.commands.rollout import set_threads
from farsight.errors import UsageError

HELP = (
    "per-horizon PSNR/SSIM, latent MSE, Delta-PSNR and arena position error of a world "
    "model's open-loop rollouts of held-out episodes"
)


def register(sub: argparse._SubParsersAction, argv: list[str] | None = None) -> None:
    # lazy: imported when this command's parser is built: cli imports every command module.
    from farsight.sampling.config import add_sampling_arguments

    p = sub.add_parser(
        "eval",
        help=HELP,
        description="Prompt a trained world model with true frames of held-out episodes, roll it "
        "out with the true actions and with random ones, and measure the rollouts per horizon "
        "(1, 2, 4, ...). Deterministic for a --seed.",
    )
    p.add_argument("--ckpt", required=True, help="dynamics checkpoint or run folder")
    p.add_argument("--data", required=True, help="episode store the episodes come from")
    p.add_argument("--out", required=True, help="folder for the metrics, plots and README.md")
    p.add_argument("--split", default="test", help="split to evaluate on (default test)")
    p.add_argument(
        "--episodes",
        type=int,
        default=8,
        help="clips to roll out (default 8; windows of the "
        "split's episodes, spread over episodes first)",
    )
    p.add_argument("--horizon", type=int, default=64, help="frames generated per clip (64)")
    p.add_argument("--prompt-frames", type=int, default=0, help="default: the trained clip")
    p.add_argument("--delta-t", type=int, default=4, help="Delta-PSNR highlight horizon (4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: default)")
    p.add_argument("--quiet", action="store_true")
    add_sampling_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs: cli imports every command module at startup.
    from farsight.eval.run import EvalConfig, eval_checkpoint
    from farsight.precision import resolve_device
    from farsight.sampling.config import sampling_from_args, sampling_overrides

    if args.episodes < 1 or args.horizon < 1 or args.prompt_frames < 0:
        raise UsageError("--episodes and --horizon must be >= 1, --prompt-frames >= 0")
    sampling_from_args(args)  # a bad flag fails before the checkpoint loads
    set_threads(args.threads)
    cfg = EvalConfig(
        split=args.split,
        clips=args.episodes,
        horizon=args.horizon,
        seed=args.seed,
        prompt_frames=args.prompt_frames,
        delta_t=args.delta_t,
        sampling_overrides=sampling_overrides(args),
    )
    result = eval_checkpoint(
        args.ckpt,
        args.data,
        args.out,
        cfg,
        device=str(resolve_device(args.device)),
        progress=not args.quiet,
    )
    meta = result.meta
    print(
        f"wrote {args.out}: {len(meta['clips'])} clips x {meta['horizon']} frames "
        f"({meta['frames_per_second']:.1f} generated frames/s)"
    )
    return 0
