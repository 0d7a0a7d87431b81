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
            "stacks -> roles",  # stack files become specs (agent.spec), nothing more
            ("stacks",),
            ("agent.manager", "agent.worker", "agent.net", "agent.daemon"),
        ),
        id="stacks-roles",
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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, source: str) -> Iterator[Import]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source, filename=str(path))):
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
        yield Import(path, node.lineno, module, targets, text)


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
