"""Layers point one way and no module imports itself back, for every package that is added later too.

``meterway`` (the shared vocabulary) sits at the bottom and imports nothing else of the project;
``models`` and ``billing`` may import it (and each other) but never ``service``; ``service`` is the top.
Every import counts, the ones inside functions too: a lazy import hides a cycle, it does not remove it.
Imports under ``if TYPE_CHECKING:`` are for annotations only and do not run, so they are left out.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("meterway", "models", "billing", "files", "endpoints", "batches", "audit", "identity", "console",
            "service")
# Which packages each package may import (itself always).
ALLOWED = {
    "meterway": set(),
    "models": {"meterway", "billing"},
    "billing": {"meterway", "models"},
    "files": {"meterway"},
    "endpoints": {"meterway"},
    "batches": {"meterway"},
    "audit": {"meterway"},
    "identity": {"meterway"},
    "console": {"meterway"},  # the web console reaches the rest through the REST API (the SDK) only
    "service": {"meterway", "models", "billing", "files", "endpoints", "batches", "audit", "identity", "console"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The project modules ``module`` imports at run time (``a.b.c`` also counts as ``a.b`` if that is one)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        targets = _imports(tree, module, path.name == "__init__.py")
        graph[module] = {target for target in targets if target in files and target != module}
    return graph


def test_no_layer_imports_upward() -> None:
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if (top := target.split(".")[0]) != module.split(".")[0] and top not in ALLOWED[module.split(".")[0]]
    )
    assert upward == []


def _cycle_from(graph: dict[str, set[str]], start: str) -> list[str] | None:
    path: list[str] = []
    seen: set[str] = set()

    def walk(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node):], node]
        if node in seen:
            return None
        seen.add(node)
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if (found := walk(target)) is not None:
                return found
        path.pop()
        return None

    return walk(start)


def _package_of(module: str, graph: dict[str, set[str]]) -> set[str]:
    """The packages ``module`` belongs to: importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in graph}


def test_no_import_circles() -> None:
    graph = _graph()
    # A submodule's import runs its parent packages' ``__init__`` first; a parent importing its own child is not a
    # circle (that is how a package exposes its API), so the edge parent -> child is the only one dropped.
    edges = {module: {t for t in targets if module not in _package_of(t, graph)} for module, targets in graph.items()}
    circles = {" -> ".join(found) for module in sorted(edges) if (found := _cycle_from(edges, module))}
    assert sorted(circles) == []


def test_the_worker_process_imports_neither_the_http_layer_nor_litestar() -> None:
    probe = ("import sys, models.pool.worker; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('service', 'litestar')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_serve_prepares_a_cold_store_in_a_process_of_its_own(store_dir: Path, tmp_path: Path) -> None:
    """``meterway serve`` on a store that lacks a model imports it (torch) in a child; the gateway stays lean."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "smollm2-135m-instruct").symlink_to(store_dir / "smollm2-135m-instruct")  # all-minilm is missing
    probe = ("import sys; from meterway.settings import Settings; from service.cli import _prepare; "
             "from service.app import create_app; settings = Settings.from_env(); _prepare(settings); "
             "create_app(settings); print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('torch', 'transformers')))")
    env = {**os.environ, "METERWAY_HOME": str(tmp_path / "home"), "METERWAY_STORE": str(store)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert (store / "all-minilm-l6-v2" / ".meterway-complete").exists()
    assert "model store" in out.stderr  # the child's progress bar
