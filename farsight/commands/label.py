"""``farsight label``: label a store's frame pairs with a latent action model's codes, once."""

from __future__ import annotations

import argparse

HELP = "label an episode store's frame pairs with a trained latent action model"


def register(sub: argparse._SubParsersAction, argv: list[str] | None = None) -> None:
    p = sub.add_parser(
        "label",
        help=HELP,
        description="Label every frame pair (x_t, x_{t+1}) of --data with the EMA weights of the "
        "latent action model --lam, and write the labels beside the store "
        "(STORE/action_labels/<LAM run>-<hash of its checkpoint path>.npz). A dynamics run on "
        "data.actions=latent makes them itself; eval, rollout and play of a model trained on "
        "latent actions read them for the store they are given. Labels already made by the same "
        "LAM weights for the same store are kept; a changed store or LAM is labelled again.",
    )
    p.add_argument("--lam", required=True, help="LAM checkpoint or run folder (farsight train lam)")
    p.add_argument("--data", required=True, help="episode store to label")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs: cli imports every command module at startup.
    from farsight.action_labels import label_actions, read_labels
    from farsight.data.store import EpisodeStore

    store = EpisodeStore(args.data, verify="size")
    path = label_actions(args.lam, store, device=args.device, progress=not args.quiet)
    labels, codes, _ = read_labels(store, args.lam)
    pairs = sum(max(len(v) - 1, 0) for v in labels.values())
    print(
        f"latent action labels {path}: {pairs} frame pairs of {len(labels)} episodes, {codes} codes"
    )
    return 0
