"""No import circles in ``medmoe``: the module graph read with ``ast`` must be acyclic.

Every import statement of every module counts, wherever it is written: at module top, inside a
function (an import placed there to dodge a circle still makes the two modules depend on each
other) and inside ``if TYPE_CHECKING:`` blocks. TYPE_CHECKING-only imports are counted because
the package has none today and a circle that only type checkers see is still a circle a reader
has to untangle; a module that comes to need one should say why in a test change here.

An edge goes from a module to the module it names: ``import a.b`` and ``from a import b`` (when
``a.b`` is a module) give ``a.b``; ``from a.b import name`` gives ``a.b``; relative imports are
resolved against the importing module's package. Parents that Python runs implicitly (importing
``a.b`` first runs ``a/__init__.py``) are not edges, or every package that re-exports its own
submodules would be a circle. Imports of modules outside the package are ignored.
"""

from __future__ import annotations

import ast
from pathlib import Path

import medmoe

Graph = dict[str, set[str]]


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package in folder ``root``: dotted name -> file. A package's name is
    that of its ``__init__.py``; folders without one (namespace packages) are walked too."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join((package, *parts))] = path
    return out


def _base(module: str, path: Path, level: int) -> str:
    """The package a relative import of ``level`` dots in ``module`` is resolved against."""
    parts = module.split(".")
    if path.name != "__init__.py":
        parts = parts[:-1]  # a plain module's imports are relative to its package
    return ".".join(parts[: len(parts) - (level - 1)])


def _known(name: str, known: set[str]) -> str | None:
    """``name`` or its longest prefix that is a module of the package (``import a.b.c`` where
    ``c`` is a function's name never happens, but ``a.b`` may be a namespace folder)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in known:
            return candidate
    return None


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``module`` (file ``path``) imports, anywhere in the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                base = _base(module, path, node.level)
                source = f"{base}.{source}" if source else base
            # ``from a import b``: the submodule a.b when there is one, else a itself
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                for alias in node.names
            ]
        else:
            continue
        out.update(m for m in (_known(t, known) for t in targets) if m is not None)
    out.discard(module)  # a module naming itself (``from . import x`` in x's own file) is no circle
    return out


def import_graph(root: Path, package: str) -> Graph:
    modules = module_names(root, package)
    known = set(modules)
    return {m: imports_of(m, p, known) for m, p in modules.items()}


def find_cycles(graph: Graph) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` per strongly connected component of more than one module
    (Tarjan's algorithm, iterative), sorted; empty when the graph is acyclic."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(set(component))
    return sorted(_cycle_in(graph, c) for c in components)


def _cycle_in(graph: Graph, component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first search)."""
    start = min(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if child not in parent:
                    parent[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle in the component {sorted(component)}")  # not reachable


def _describe(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(c) for c in cycles)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_finds_a_circle_hidden_in_a_function(tmp_path):
    # pkg.a -> pkg.sub.b (top) -> pkg.sub.c (relative, in a function) -> pkg.a (in TYPE_CHECKING)
    root = _write(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "a.py": "from pkg.sub import b\n",
            "sub/__init__.py": "",
            "sub/b.py": "def f():\n    from .c import g\n    return g\n",
            "sub/c.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from .. import a\n"
                "def g():\n    pass\n"
            ),
            "d.py": "import os\nimport pkg.a\n",  # imports into the circle, not part of it
        },
    )
    graph = import_graph(root, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"}  # `from pkg.sub import b`: the submodule
    assert graph["pkg.sub.b"] == {"pkg.sub.c"}
    assert graph["pkg.sub.c"] == {"pkg.a"}  # `from .. import a` in a plain module
    assert graph["pkg.d"] == {"pkg.a"}  # os is outside the package
    assert find_cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]]


def test_acyclic_package_and_name_imports(tmp_path):
    # `from pkg.m import name` is an edge to pkg.m; a package's `from . import x` is relative to
    # the package itself; re-exports in __init__ are not circles with the submodules they name
    root = _write(
        tmp_path / "pkg",
        {
            "__init__.py": "from . import m\nfrom .m import VALUE\n",
            "m.py": "from pkg.low import VALUE\n",
            "low.py": "VALUE = 1\n",
            "ns/leaf.py": "from ..m import VALUE\nimport pkg.ns\n",  # a namespace folder
        },
    )
    graph = import_graph(root, "pkg")
    assert graph == {
        "pkg": {"pkg.m"},
        "pkg.m": {"pkg.low"},
        "pkg.low": set(),
        # `import pkg.ns` names no file (ns has no __init__): the longest prefix that does
        "pkg.ns.leaf": {"pkg.m", "pkg"},
    }
    assert find_cycles(graph) == []


def test_two_circles_are_both_reported():
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c", "a"}, "f": set()}
    assert find_cycles(graph) == [["a", "b", "a"], ["c", "d", "e", "c"]]


def test_medmoe_has_no_import_circle():
    root = Path(medmoe.__file__).parent
    graph = import_graph(root, "medmoe")
    assert "medmoe.cli.main" in graph and graph["medmoe.cli.main"]  # the walk saw real imports
    cycles = find_cycles(graph)
    assert not cycles, "import circles in medmoe:\n" + _describe(cycles)
