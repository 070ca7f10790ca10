"""The structure of `toolkit/`: no import cycle, read from the source with `ast`.

Every import counts, at module level or inside a function (a lazy import is still a
dependency), except those under ``if TYPE_CHECKING:``, which only annotations read."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST, known: set[str]) -> set[str]:
    """The `known` modules that `tree` imports, outside ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if _type_checking_only(node):
            stack.extend(getattr(node, "orelse", []))
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} & known
            found |= {f"{node.module}.{alias.name}" for alias in node.names} & known
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph(package: str = "toolkit") -> dict[str, set[str]]:
    files = {_module_name(path): path for path in (ROOT / package).rglob("*.py")}
    known = set(files)
    return {name: _imports(ast.parse(path.read_text(encoding="utf-8")), known) - {name}
            for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_toolkit_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "toolkit.sweep" in graph["toolkit.cli"]  # imported inside a function
    assert cycles(graph) == []


def test_a_lazy_import_counts_and_a_type_checking_one_does_not() -> None:
    tree = ast.parse("from typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from toolkit.b import X\n"
                     "def f():\n    from toolkit.c import Y\n")
    assert _imports(tree, {"toolkit.b", "toolkit.c"}) == {"toolkit.c"}
