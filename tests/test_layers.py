"""The package's layers point one way: a module imports only from its own layer or the ones
below it, and no import cycle exists.

The imports are read with ``ast`` from the source, function-level ones included (a function
that imports a higher layer is an arrow all the same); imports under ``if TYPE_CHECKING:`` are
left out, as they never run. docs/architecture.md describes the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "farsight"

# Bottom up; a module belongs to the layer of its longest matching prefix.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundations",
        (
            "farsight",
            "farsight.config",
            "farsight.errors",
            "farsight.io",
            "farsight.extras",
            "farsight.shell",
            "farsight.video",
            "farsight.precision",
            "farsight.metrics",
            "farsight.parallel",
        ),
    ),
    ("envs", ("farsight.envs",)),
    ("data", ("farsight.data",)),
    (
        "models",
        (
            "farsight.models",
            "farsight.dynamics_config",
            "farsight.autoencoder_config",
            "farsight.lam_config",
        ),
    ),
    ("diffusion maths", ("farsight.diffusion",)),
    ("objectives", ("farsight.objectives",)),
    ("sampling", ("farsight.sampling",)),
    (
        "training",
        (
            "farsight.train",
            "farsight.latents",
            "farsight.latent_actions",
            "farsight.action_labels",
            "farsight.action_source",
            "farsight.world_env",
            "farsight.rollout_video",
        ),
    ),
    ("world model", ("farsight.world_model",)),
    ("evaluation", ("farsight.eval", "farsight.bench")),
    ("play", ("farsight.play",)),
    ("commands", ("farsight.cli", "farsight.commands", "farsight.__main__")),
)

# Arrows that still run back up, each with its reason. Only these may; a new one fails.
ALLOWED_BACK_ARROWS: dict[tuple[str, str], str] = {}


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: module-level and inside functions or classes."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def imported_modules(
    module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]
) -> set[str]:
    """The package's modules ``node`` imports (``from pkg import mod`` names ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name.split(".")[0] == "farsight"}
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        source = ".".join([*base, *([node.module] if node.module else [])])
    else:
        source = node.module or ""
    if source.split(".")[0] != "farsight":
        return set()
    return {f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names}


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (itself excluded)."""
    files = {module_name(p, package): p for p in package.rglob("*.py")}
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets: set[str] = set()
        for node in runtime_imports(tree):
            targets |= imported_modules(module, path.name == "__init__.py", node, set(files))
        graph[module] = targets - {module}
    return graph


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best < 0:
        raise KeyError(f"{module} is in no layer: add it to LAYERS")
    return best


def back_arrows(graph: dict[str, set[str]]) -> list[str]:
    """Arrows from a lower layer to a higher one, as readable lines (allowlist excluded)."""
    lines = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            here, there = layer_of(module), layer_of(target)
            if there > here and (module, target) not in ALLOWED_BACK_ARROWS:
                lines.append(f"{module} ({LAYERS[here][0]}) imports {target} ({LAYERS[there][0]})")
    return lines


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_every_module_has_a_layer(graph):
    for module in graph:
        layer_of(module)


def test_no_arrow_runs_back_up(graph):
    assert back_arrows(graph) == []


def test_no_import_cycle(graph):
    # The allowed back-arrows close cycles of their own; any other cycle fails.
    forward = {m: {t for t in ts if (m, t) not in ALLOWED_BACK_ARROWS} for m, ts in graph.items()}
    assert cycles(forward) == []


def test_allowlist_is_still_needed(graph):
    """An allowed back-arrow that is gone leaves the list, so it cannot hide a new one."""
    stale = [arrow for arrow in ALLOWED_BACK_ARROWS if arrow[1] not in graph.get(arrow[0], ())]
    assert stale == []


def test_checker_finds_a_back_arrow_and_a_cycle(tmp_path):
    """The checks can fail: a fake package whose data layer imports training, and a cycle."""
    root = tmp_path / "farsight"
    (root / "data").mkdir(parents=True)
    (root / "train").mkdir()
    (root / "__init__.py").write_text("")
    (root / "data" / "__init__.py").write_text("")
    (root / "train" / "__init__.py").write_text("")
    # Function-level, as a hidden arrow would be.
    (root / "data" / "store.py").write_text(
        "def read():\n    from farsight.train import loop\n    return loop\n"
    )
    (root / "train" / "loop.py").write_text("from farsight.data.store import read\n")
    (root / "data" / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import farsight.train.loop\n"
    )
    fake = import_graph(root)
    assert fake["farsight.data.store"] == {"farsight.train.loop"}
    assert fake["farsight.data.typed"] == set()
    assert back_arrows(fake) == [
        "farsight.data.store (data) imports farsight.train.loop (training)"
    ]
    assert cycles(fake) == [["farsight.data.store", "farsight.train.loop"]]


# A function-level import is one inside a function or class body (``if TYPE_CHECKING:`` blocks
# excluded, as they never run). Each must say why it is not at the module's top: a comment
# holding "lazy:" on one of the import's own lines, or in the comment lines directly above the
# block of consecutive imports it belongs to.
LAZY_MARK = "lazy:"


def function_level_imports(tree: ast.AST) -> list[list[ast.Import | ast.ImportFrom]]:
    """The blocks (runs of consecutive import statements in one body) inside functions or
    classes, in source order."""
    blocks: list[list[ast.Import | ast.ImportFrom]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        inner = nested or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            statements = getattr(node, field, None)
            if not isinstance(statements, list):
                continue
            block: list[ast.Import | ast.ImportFrom] = []
            for child in statements:
                if isinstance(child, ast.Import | ast.ImportFrom):
                    block.append(child)
                    continue
                if block and inner:
                    blocks.append(block)
                block = []
                if isinstance(child, ast.If) and is_type_checking(child):
                    for other in child.orelse:
                        visit(other, inner)
                    continue
                visit(child, inner)
            if block and inner:
                blocks.append(block)

    visit(tree, False)
    return sorted(blocks, key=lambda b: b[0].lineno)


def unexplained_lazy_imports(source: str, name: str = "<module>") -> list[str]:
    """``name:line`` of each function-level import that carries no "lazy:" comment."""
    lines = source.splitlines()

    def comment(line: str) -> str:
        return line[line.index("#") :] if "#" in line else ""

    found = []
    for block in function_level_imports(ast.parse(source)):
        above = []
        row = block[0].lineno - 2
        while row >= 0 and lines[row].lstrip().startswith("#"):
            above.append(lines[row])
            row -= 1
        block_marked = any(LAZY_MARK in line for line in above)
        for node in block:
            own = lines[node.lineno - 1 : (node.end_lineno or node.lineno)]
            if not block_marked and not any(LAZY_MARK in comment(line) for line in own):
                found.append(f"{name}:{node.lineno}")
    return found


def test_every_function_level_import_says_why_it_is_lazy():
    """Imports belong at the module's top; one inside a function must say why it waits
    (keeping a light command light, an optional dependency, a slow import)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += unexplained_lazy_imports(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert found == []


def test_checker_finds_an_unexplained_lazy_import():
    source = (
        "import os\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import json\n"
        "def a():\n"
        "    import json\n"  # 6: no reason
        "    return json\n"
        "def b():\n"
        "    # lazy: optional dependency\n"
        "    import json\n"
        "    from os import path\n"
        "    return json, path\n"
        "def c():\n"
        "    import json  # lazy: slow to import\n"
        "    import csv\n"  # 15: the mark on the line above belongs to one import only
        "    return json, csv\n"
        "class D:\n"
        "    def e(self):\n"
        "        if os:\n"
        "            import csv\n"  # 20: nested blocks count too
        "            return csv\n"
    )
    assert unexplained_lazy_imports(source) == ["<module>:6", "<module>:15", "<module>:20"]
