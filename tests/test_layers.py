"""The package's layers point one way: no cycle among module-level imports, and no import (even
one inside a function) from a lower layer into a higher one.

Edges are read from the source (``ast``), not by importing: ``import a.b`` / ``from a.b import c``
(``if TYPE_CHECKING:`` blocks excepted) is an edge to ``a.b``, or to ``a.b.c`` when ``c`` is a
module. For the cycle check only module-level imports count (imports inside functions are
deliberate late bindings); for the layer check every import counts: a late import still makes the
lower layer depend on the higher one.
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


def _all_imports(tree: ast.Module):
    type_only = {id(sub) for node in tree.body
                 if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                 for sub in ast.walk(node)}
    for sub in ast.walk(tree):
        if isinstance(sub, (ast.Import, ast.ImportFrom)) and id(sub) not in type_only:
            yield sub


def import_graph(late: bool = False) -> dict[str, set[str]]:
    """Module → the package modules it imports (``late``: imports inside functions too)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in (_all_imports(tree) if late else _top_level_imports(tree)):
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
    assert "videoxai.errors" in g["videoxai.options.declaration"]    # from ..errors import …
    options = {m for m in g if m == "videoxai.options" or m.startswith("videoxai.options.")}
    for m in options:                                                 # the bottom layer
        assert not g[m] - options - {"videoxai.errors"}, m


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


#: the layers, lowest first; a module may import its own layer and the ones below it. A module
#: belongs to the entry whose name is the module's name or a dotted prefix of it (the package's
#: ``__init__``, "videoxai", only by its own name).
LAYERS: list[tuple[str, list[str]]] = [
    ("foundation", ["videoxai.errors", "videoxai.options", "videoxai.registry", "videoxai.version",
                    "videoxai.work", "videoxai.progress", "videoxai.cost", "videoxai.clip",
                    "videoxai.explanation", "videoxai.npz"]),
    ("core helpers", ["videoxai.core"]),
    ("models and data", ["videoxai.models", "videoxai.data"]),
    ("model families", ["videoxai.stabn"]),                  # ST-ABN: network, loader, training
    ("methods", ["videoxai.methods"]),
    ("explain", ["videoxai.explain", "videoxai.timeline"]),
    ("metrics", ["videoxai.metrics"]),                       # sanity checks re-explain: above explain
    ("presentation and evaluation", ["videoxai.viz", "videoxai.evaluation"]),
    ("workflows", ["videoxai.workflows"]),
    ("entry points", ["videoxai.serve", "videoxai.cli", "videoxai.__main__", "videoxai"]),
]


def layer_of(module: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or (p != "videoxai" and module.startswith(p + ".")) for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} ({LAYERS[layer_of(m)][0]}) → {t} ({LAYERS[layer_of(t)][0]})"
                  for m, targets in graph.items() for t in targets if layer_of(t) > layer_of(m))


def test_the_layer_check_finds_upward_imports():
    fake = {"videoxai.models.x": {"videoxai.stabn.loader", "videoxai.core.align"},
            "videoxai.core.align": {"videoxai.errors"}, "videoxai.stabn.loader": set(), "videoxai.errors": set()}
    assert upward_imports(fake) == ["videoxai.models.x (models and data) → videoxai.stabn.loader (model families)"]


def test_every_module_has_a_layer():
    for module in import_graph():
        layer_of(module)
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("videoxai.newpackage.thing")


def test_lower_layers_do_not_import_upwards():
    ups = upward_imports(import_graph(late=True))
    assert not ups, "imports pointing up the layers:\n" + "\n".join(ups)


def test_version_has_one_source():
    import importlib.metadata

    import videoxai

    assert videoxai.__version__ == importlib.metadata.version("videoxai")
    assert '__version__ = "' not in (ROOT / "__init__.py").read_text()
