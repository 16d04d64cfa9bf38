"""The layout's import rules, read from the source with ``ast`` (nothing is imported).

- ``hear_slicer`` imports neither ``pretrain`` nor ``eval_suites`` nor ``studies``;
- no module under ``eval_suites`` imports ``pretrain`` or ``studies``;
- ``pretrain`` imports neither ``eval_suites`` nor ``studies``;
- no import cycle between the project's modules (every import counts: module level,
  inside functions and under ``TYPE_CHECKING``).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("hear_slicer", "pretrain", "eval_suites", "studies")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imported_names(path: Path, name: str) -> set[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved)."""
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
    return out


def project_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (an imported name that is not a module
    counts as its module)."""
    modules = project_modules()
    graph = {}
    for name, path in modules.items():
        deps = set()
        for imp in imported_names(path, name):
            while imp and imp not in modules:
                imp = imp.rpartition(".")[0]
            if imp and imp != name:
                deps.add(imp)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that returns to its start), or None.

    A package importing its own sub-module through ``__init__`` re-exports is an edge
    like any other."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _parent_package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop edges from a package's ``__init__`` to its own sub-modules and from a module to
    the packages above it: Python imports a parent package before its child anyway, and
    such edges are not the two-way dependencies the rule is about."""
    return {m: {d for d in deps if not d.startswith(m + ".") and not m.startswith(d + ".")}
            for m, deps in graph.items()}


GRAPH = _parent_package_edges(project_graph())


def test_the_graph_is_read():
    # guards the rule tests against reading nothing
    assert "eval_suites.core.runner" in GRAPH and "pretrain.train" in GRAPH
    assert "eval_suites.core.manifest" in GRAPH["eval_suites.core.runner"]
    assert "pretrain" in {d.split(".")[0] for d in GRAPH["studies.mini_lape"]}


@pytest.mark.parametrize("room, forbidden", [
    ("hear_slicer", ("pretrain", "eval_suites", "studies")),
    ("eval_suites", ("pretrain", "studies")),
    ("pretrain", ("eval_suites", "studies")),
])
def test_imports_run_one_way(room, forbidden):
    bad = sorted((m, d) for m, deps in GRAPH.items() if m.split(".")[0] == room
                 for d in deps if d.split(".")[0] in forbidden)
    assert not bad, f"{room} must not import {forbidden}: {bad}"


def test_the_evaluation_core_never_imports_the_task_sources():
    sources = ("eval_suites.lape", "eval_suites.synthetic")
    bad = sorted((m, d) for m, deps in GRAPH.items() if m.startswith("eval_suites.core")
                 for d in deps if d.startswith(sources))
    assert not bad, bad


def test_no_import_cycles():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
