"""The package's layers point one way: no cycle among module-level imports.

Edges are read from the source (``ast``), not by importing: ``import a.b`` / ``from a.b import c``
at module level (``if TYPE_CHECKING:`` blocks excepted) is an edge to ``a.b``, or to ``a.b.c``
when ``c`` is a module. Imports inside functions are deliberate late bindings and not edges.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "videoxai"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _top_level_imports(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ([node] if not isinstance(node, (ast.If, ast.Try)) else ast.walk(node)):
            if isinstance(sub, (ast.Import, ast.ImportFrom)):
                yield sub


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _top_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                if t in modules and t != name:
                    graph[name].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, …, a]``, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_relative_and_absolute_imports():
    g = import_graph()
    assert "videoxai.options" in g["videoxai.methods.base"]          # from ..options import …
    assert "videoxai.metrics.truth" in g["videoxai.metrics.base"]     # from .truth import …
    assert not g["videoxai.options"] - {"videoxai.errors"}           # the bottom layer


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


@pytest.mark.parametrize("low, high", [("videoxai.options", "videoxai.methods"),
                                       ("videoxai.metrics.truth", "videoxai.metrics.base"),
                                       ("videoxai.viz.report", "videoxai")])
def test_lower_layers_do_not_import_upwards(low, high):
    g = import_graph()
    assert high not in g[low]


def test_version_has_one_source():
    import importlib.metadata

    import videoxai

    assert videoxai.__version__ == importlib.metadata.version("videoxai")
    assert '__version__ = "' not in (ROOT / "__init__.py").read_text()
