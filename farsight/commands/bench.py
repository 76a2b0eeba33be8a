"""``farsight bench <name>``: run one benchmark, save its JSON, regenerate BENCHMARKS.md."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import shlex
from pathlib import Path

from farsight.cli import add_placeholder, chosen

HELP = "run a benchmark and update BENCHMARKS.md"

# name -> module with add_arguments(parser) and run(args) -> list[Row]
BENCHES = {
    "env": "farsight.bench.env",
    "record": "farsight.bench.record",
    "loader": "farsight.bench.loader",
    "encode": "farsight.bench.encode",
    "train": "farsight.bench.train",
    "rollout": "farsight.bench.rollout",
}


def summary(module: str) -> str:
    """First sentence-paragraph of a module's docstring, read from its source: some benchmarks
    import torch, which listing them should not."""
    spec = importlib.util.find_spec(module)
    source = Path(spec.origin).read_text() if spec and spec.origin else ""
    doc = ast.get_docstring(ast.parse(source)) or ""
    return " ".join(doc.split("\n\n")[0].split())


def register(sub: argparse._SubParsersAction, argv: list[str] | None = None) -> None:
    p = sub.add_parser("bench", help=HELP)
    bench_sub = p.add_subparsers(dest="bench", required=True, metavar="name")
    wanted = chosen(argv, tuple(BENCHES))
    for name, module in BENCHES.items():
        if argv is not None and name != wanted:
            add_placeholder(bench_sub, name, summary(module))
            continue
        mod = importlib.import_module(module)
        bp = bench_sub.add_parser(name, help=summary(module))
        bp.add_argument("--results", type=Path, default=Path("benchmarks/results"))
        bp.add_argument("--report", type=Path, default=Path("BENCHMARKS.md"))
        mod.add_arguments(bp)
        bp.set_defaults(func=run, bench_module=mod)


def run(args: argparse.Namespace) -> int:
    # lazy: imported when the command runs: cli imports every command module at startup.
    from farsight.bench import save_result

    rows = args.bench_module.run(args)
    for r in rows:
        print(f"{r.metric:<48} {r.value:>14,.2f} {r.unit:<10} {r.note}")
    command = "farsight " + " ".join(shlex.quote(a) for a in args.argv)
    path = save_result(args.bench, command, rows, args.results, args.report)
    print(f"saved {path}; updated {args.report}")
    return 0
