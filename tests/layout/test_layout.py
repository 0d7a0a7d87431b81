"""The package layout holds: no module imports across a boundary the table below forbids.

Every module under agent/, broker/, certs/ and stacks/ is parsed with :mod:`ast` (never
imported), and each of its imports, wherever it stands (top level, function body,
``TYPE_CHECKING`` block), is checked against :data:`BOUNDARIES`. A boundary is a row of data:
which modules it binds, which it forbids them to import, which are exempt. A failure names the
file, the line and the import.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agent", "broker", "certs", "stacks")


@dataclass(frozen=True)
class Boundary:
    """Modules matching ``sources`` (but not ``exempt``) never import one matching ``forbidden``.

    Each entry is a dotted module name, which also covers everything inside it, or an
    :func:`fnmatch` pattern (``agent.manager.*api``).
    """

    name: str
    sources: tuple[str, ...]
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = ()


def _matches(module: str, patterns: tuple[str, ...]) -> bool:
    return any(
        module == p or module.startswith(p + ".") or fnmatchcase(module, p) for p in patterns
    )


CLI = ("agent.cli",)

BOUNDARIES = [
    pytest.param(
        Boundary("manager -> worker", ("agent.manager",), ("agent.worker", "agent.net")),
        id="manager-worker",
    ),
    pytest.param(
        Boundary("worker -> manager", ("agent.worker",), ("agent.manager",)),
        id="worker-manager",
    ),
    pytest.param(
        Boundary(
            "model -> manager or worker",
            ("agent.model",),
            ("agent.manager", "agent.worker", "agent.net"),
        ),
        id="model-roles",
    ),
    pytest.param(Boundary("broker -> agent", ("broker",), ("agent",)), id="broker-agent"),
    pytest.param(Boundary("certs -> agent", ("certs",), ("agent",)), id="certs-agent"),
    pytest.param(
        Boundary("anything -> cli", PACKAGES, CLI, exempt=CLI),
        id="anything-cli",
    ),
    pytest.param(
        Boundary("raft -> wal", ("agent.manager.raft",), ("agent.manager.wal",)),
        id="raft-wal",
    ),
    pytest.param(Boundary("net -> manager", ("agent.net",), ("agent.manager",)), id="net-manager"),
    pytest.param(
        Boundary(
            "stacks -> roles",  # stack files become specs (agent.model.spec), nothing more
            ("stacks",),
            ("agent.manager", "agent.worker", "agent.net", "agent.daemon"),
        ),
        id="stacks-roles",
    ),
    pytest.param(
        Boundary(
            "dashboard -> roles",  # it reads the monitoring topics, as any monitoring tool
            ("agent.dashboard",),
            ("agent.manager", "agent.worker", "agent.net", "agent.daemon"),
        ),
        id="dashboard-roles",
    ),
    pytest.param(
        Boundary(
            "core -> loop",  # <thing>.py is pure; <thing>_loop.py drives it in the shell
            tuple(
                f"agent.manager.reconcile.{core}"
                for core in ("allocation", "allocator", "orchestrator", "scheduler", "updater")
            ),
            (
                "asyncio",
                "agent.manager.reconcile.*_loop",
                "agent.manager.reconcile.reconciler",
                "broker.session",
            ),
        ),
        id="core-loop",
    ),
]


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    source: str  # the importing module
    targets: tuple[str, ...]  # the modules the import may name
    text: str
    typing_only: bool = False  # under ``if TYPE_CHECKING:``: never runs


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, source: str) -> Iterator[Import]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(source, filename=str(path))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = tuple(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            # ``from agent import worker`` names agent.worker: a name may be a submodule
            targets = (stem, *(f"{stem}.{alias.name}" for alias in node.names))
        else:
            continue
        text = " ".join((ast.get_source_segment(source, node) or "").split())
        yield Import(path, node.lineno, module, targets, text, id(node) in typing_only)


@functools.cache
def _all_imports() -> list[Import]:
    return [
        found
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for found in _imports(path, path.read_text())
    ]


def crossings(boundary: Boundary, imports: list[Import]) -> list[str]:
    """``file:line: import`` for every import in ``imports`` that crosses ``boundary``."""
    return [
        f"{i.path.relative_to(ROOT)}:{i.line}: {i.text}"
        for i in imports
        if _matches(i.source, boundary.sources)
        and not _matches(i.source, boundary.exempt)
        and any(_matches(t, boundary.forbidden) for t in i.targets)
    ]


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_no_import_crosses_a_forbidden_boundary(boundary: Boundary) -> None:
    bound = {i.source for i in _all_imports() if _matches(i.source, boundary.sources)}
    assert bound, f"{boundary.name}: no module matches {boundary.sources}; fix the table"
    found = crossings(boundary, _all_imports())
    assert not found, f"{boundary.name} is forbidden, yet:\n" + "\n".join(found)


def test_a_relative_or_submodule_import_names_the_module_it_reaches() -> None:
    path = ROOT / "agent" / "manager" / "store" / "objects.py"
    text = (
        "from ...worker.executor import Executor\nfrom agent import worker\nfrom . import store\n"
    )
    boundary = Boundary("manager -> worker", ("agent.manager",), ("agent.worker",))
    assert crossings(boundary, list(_imports(path, text))) == [
        "agent/manager/store/objects.py:1: from ...worker.executor import Executor",
        "agent/manager/store/objects.py:2: from agent import worker",
    ]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of a graph that hold more than one node, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _modules() -> set[str]:
    return {i.source for i in _all_imports()} | {
        _module_name(path) for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }


def _reached(target: str, names: set[str]) -> str | None:
    """The module an import target lands in (``pkg.mod.func`` lands in ``pkg.mod``)."""
    while target and target not in names:
        target = target.rpartition(".")[0]
    return target or None


def test_no_modules_import_each_other_in_a_circle() -> None:
    names = _modules()
    edges: dict[str, set[str]] = {name: set() for name in names}
    for i in _all_imports():
        if i.typing_only:
            continue
        for target in i.targets:
            reached = _reached(target, names)
            if reached is not None and reached != i.source:
                edges[i.source].add(reached)
    assert cycles(edges) == [], "modules that import each other in a circle (at run time)"


def test_the_packages_import_each_other_in_one_direction() -> None:
    names = _modules()
    packages = {_module_name(p) for pk in PACKAGES for p in (ROOT / pk).rglob("__init__.py")}
    edges: dict[str, set[str]] = {name: set() for name in packages}
    for i in _all_imports():  # every import counts here, TYPE_CHECKING ones too
        source = _reached(i.source, packages)
        for target in i.targets:
            reached = _reached(target, names)
            into = _reached(reached, packages) if reached else None
            if source is not None and into is not None and into != source:
                edges[source].add(into)
    assert cycles(edges) == [], "packages that import each other in a circle"


def test_a_circle_of_imports_is_found_and_a_line_is_not() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
