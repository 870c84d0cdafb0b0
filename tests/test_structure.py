"""Package structure: dependencies point one way (no import cycles between tcve's modules)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tcve"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(module: str, path: Path, modules: set[str]) -> set[str]:
    """Every tcve module ``path`` imports, at module level or inside functions (a lazy import is still a cycle)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import checkpoints`
    return (found & modules) - {module}


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(name, path, set(paths)) for name, path in paths.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (each holds at least one cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph[node]):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_cycle_finder_sees_a_lazy_import_cycle() -> None:
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert find_cycles(graph) == [["a", "b"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_graph_includes_function_level_imports() -> None:
    graph = import_graph()
    assert "tcve.service" in graph["tcve.cli"]  # cli imports the service inside its functions
    assert "tcve.checkpoints" in graph["tcve.cli"]  # `from . import checkpoints`


def test_package_has_no_import_cycles() -> None:
    assert find_cycles(import_graph()) == []


def test_layers_point_one_way() -> None:
    """models <- stages <- pipeline <- service <- app / CLI: nothing below imports what sits above it."""
    graph = import_graph()
    above = {"tcve.__main__", "tcve.cli", "tcve.ui", "tcve.service"}
    for module, deps in graph.items():
        if module.startswith("tcve.models"):
            assert not {d for d in deps if not d.startswith("tcve.models") and d not in {"tcve.errors"}}, module
        if module not in above:
            assert not deps & {"tcve.cli", "tcve.ui"}, module
