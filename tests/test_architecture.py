"""The layers point one way and the public API is what it says."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import distribution
from pathlib import Path

import grimp
import pytest

import skyledger.ledger as ledger

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("ledger", "units", "projections", "runners")
PACKAGES = tuple(f"skyledger.{folder}" for folder in FOLDERS)

PRIVATE_IMPORTS_ALLOWED: set[tuple[str, str]] = set()


def test_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is part of the dev extra"
    done = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ledger_exports_exactly_its_public_names() -> None:
    assert ledger.__all__ == sorted(ledger.__all__)
    for name in ledger.__all__:
        value = getattr(ledger, name)
        assert getattr(value, "__name__", name) == name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        ledger.nothing  # noqa: B018


def test_pure_code_does_not_load_the_store() -> None:
    code = (
        "import sys, skyledger.ledger.ids, skyledger.ledger.events, skyledger.units.sources;"
        "print(sorted(m for m in ('psycopg', 'eventsourcing', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff, "ruff is part of the dev extra"
    done = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_is_clean_on_ledger_and_units() -> None:
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _project_modules() -> dict[str, Path]:
    """Return every module of the project's packages by dotted name."""
    found = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = ("skyledger", *path.relative_to(ROOT).with_suffix("").parts)
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_imports(module: str, path: Path, modules: set[str]) -> Iterator[tuple[str, str]]:
    """Yield (imported module, what) for each private name ``module`` takes from another
    module of the project: ``from m import _x``, ``import m._x`` or ``m._x`` on a module."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    bound: dict[str, str] = {}  # local name -> project module it is bound to
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, source] if source else base)
            if not source.startswith(PACKAGES):
                continue
            if any(_is_private(part) for part in source.split(".")):
                yield source, f"from {source} import ..."
            for alias in node.names:
                if _is_private(alias.name):
                    yield source, f"from {source} import {alias.name}"
                elif f"{source}.{alias.name}" in modules:
                    bound[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith(PACKAGES):
                    continue
                if any(_is_private(part) for part in alias.name.split(".")):
                    yield alias.name, f"import {alias.name}"
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    bound[top] = top
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            chain, value = [], node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in bound:
                target = ".".join([bound[value.id], *reversed(chain)])
                if target in modules and target != module:
                    yield target, f"{target}.{node.attr} (line {node.lineno})"


def test_no_module_imports_a_private_name_of_another() -> None:
    modules = _project_modules()
    offenders = [
        f"{module}: {what}"
        for module, path in modules.items()
        for source, what in _private_imports(module, path, set(modules))
        if source != module and (module, source) not in PRIVATE_IMPORTS_ALLOWED
    ]
    assert not offenders, "private names used across modules:\n" + "\n".join(offenders)


def _cycles(graph: grimp.ImportGraph, package: str) -> list[list[tuple[str, str]]]:
    """Return the import cycles between the children of ``package`` (a subpackage counts as
    one module, with all it holds), each as the imports (importer, imported) within it."""
    children = sorted(graph.find_children(package))

    def child_of(module: str) -> str | None:
        for child in children:
            if module == child or module.startswith(child + "."):
                return child
        return None

    edges: dict[str, dict[str, tuple[str, str]]] = {child: {} for child in children}
    for child in children:
        for importer in {child, *graph.find_descendants(child)}:
            for imported in graph.find_modules_directly_imported_by(importer):
                other = child_of(imported)
                if other is not None and other != child:
                    edges[child].setdefault(other, (importer, imported))
    # Tarjan's strongly connected components: a component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[tuple[str, str]]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(edges[a][b] for a in group for b in edges[a] if b in group))

    for child in children:
        if child not in index:
            visit(child)
    return found


def test_no_import_cycle_within_a_package() -> None:
    graph = grimp.build_graph("skyledger", cache_dir=None)
    packages = sorted(m for m in graph.modules if graph.find_children(m))
    assert {*PACKAGES, "skyledger.units.packets"} <= set(packages)
    cycles = [
        f"{package}: " + ", ".join(f"{a} imports {b}" for a, b in imports)
        for package in packages
        for imports in _cycles(graph, package)
    ]
    assert not cycles, "import cycles within a package:\n" + "\n".join(cycles)


def test_one_import_package_is_installed() -> None:
    dist = distribution("skyledger")
    assert (dist.read_text("top_level.txt") or "").split() == ["skyledger"]
    built_in = [ep.value for ep in dist.entry_points if ep.group == "skyledger.units"]
    assert built_in, "the built-in units are entry points"
    assert [v for v in built_in if not v.startswith("skyledger.units.")] == []
