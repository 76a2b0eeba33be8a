"""``farsight bench <name>``: run one benchmark, save its JSON, regenerate BENCHMARKS.md."""

from __future__ import annotations

import argparse
import importlib
import shlex
from pathlib import Path

from farsight.bench import save_result

# name -> module with add_arguments(parser) and run(args) -> list[Row]
BENCHES = {
    "env": "farsight.bench.env",
    "record": "farsight.bench.record",
    "loader": "farsight.bench.loader",
    "encode": "farsight.bench.encode",
    "train": "farsight.bench.train",
    "rollout": "farsight.bench.rollout",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark and update BENCHMARKS.md")
    bench_sub = p.add_subparsers(dest="bench", required=True, metavar="name")
    for name, module in BENCHES.items():
        mod = importlib.import_module(module)
        bp = bench_sub.add_parser(name, help=(mod.__doc__ or "").strip().splitlines()[0])
        bp.add_argument("--results", type=Path, default=Path("benchmarks/results"))
        bp.add_argument("--report", type=Path, default=Path("BENCHMARKS.md"))
        mod.add_arguments(bp)
        bp.set_defaults(func=run, bench_module=mod)


def run(args: argparse.Namespace) -> int:
    rows = args.bench_module.run(args)
    for r in rows:
        print(f"{r.metric:<48} {r.value:>14,.2f} {r.unit:<10} {r.note}")
    command = "farsight " + " ".join(shlex.quote(a) for a in args.argv)
    path = save_result(args.bench, command, rows, args.results, args.report)
    print(f"saved {path}; updated {args.report}")
    return 0
