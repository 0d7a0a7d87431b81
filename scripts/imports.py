"""Print who imports whom among shoal's packages, as a Mermaid graph; ``--write`` puts it in
docs/architecture.md.

    python scripts/imports.py            print the block
    python scripts/imports.py --write    rewrite it between the markers in docs/architecture.md

Every module under agent/, broker/, certs/ and stacks/ is parsed with :mod:`ast` (never
imported). A node is a package (a directory with an ``__init__.py``) and stands for the modules
directly in it, so ``agent`` is the daemon, joining and the modules the roles share, and
``agent.manager`` is the manager role without its subpackages. An edge ``A --> B`` says some
module of A imports one of B, wherever the import stands (top level, function body,
``TYPE_CHECKING`` block). tests/layout/test_layout_picture.py fails when the doc's block is not
what this prints.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "broker", "certs", "stacks")
DOC = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- imports -->", "<!-- /imports -->"


def _modules(root: Path) -> dict[str, Path]:
    """Every module's dotted name and file; a package's name is that of its ``__init__.py``."""
    out: dict[str, Path] = {}
    for top in PACKAGES:
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imported(name: str, path: Path, tree: ast.AST) -> Iterator[str]:
    """The dotted names a module imports (``from X import y`` gives ``X.y``, which may or may
    not be a module), relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)


def graph(root: Path = ROOT) -> tuple[list[str], set[tuple[str, str]]]:
    """The packages and the edges (importer, imported) between different ones."""
    modules = _modules(root)
    packages = sorted(m for m, p in modules.items() if p.name == "__init__.py")

    def node_of(module: str) -> str:
        while module not in packages:
            module = module.rpartition(".")[0]
        return module

    edges: set[tuple[str, str]] = set()
    for name, path in modules.items():
        source = node_of(name)
        tree = ast.parse(path.read_text(), filename=str(path))
        for target in _imported(name, path, tree):
            if target.split(".")[0] not in PACKAGES:
                continue
            while target not in modules:  # `from pkg import function` names no module
                target = target.rpartition(".")[0]
            imported = node_of(target)
            if imported != source:
                edges.add((source, imported))
    return packages, edges


def block(root: Path = ROOT) -> str:
    """The Markdown to put between the markers: a Mermaid ``graph TD``."""
    packages, edges = graph(root)

    def ident(package: str) -> str:
        return package.replace(".", "_")

    lines = [
        "```mermaid",
        "graph TD",
        *(f'    {ident(p)}["{p}"]' for p in packages),
        *(f"    {ident(a)} --> {ident(b)}" for a, b in sorted(edges)),
        "```",
    ]
    return "\n".join(lines)


def rewrite(text: str, new_block: str) -> str:
    """``text`` with what stands between the markers replaced by ``new_block``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{DOC}: markers {BEGIN} ... {END} not found")
    return text[: start + len(BEGIN)] + "\n" + new_block + "\n" + text[end:]


def current(text: str) -> str:
    """What stands between the markers in ``text`` (stripped)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return ""
    return text[start + len(BEGIN) : end].strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"rewrite the block in {DOC.name}")
    args = ap.parse_args(argv)
    new = block()
    if not args.write:
        print(new)
        return 0
    text = DOC.read_text()
    DOC.write_text(rewrite(text, new))
    what = "unchanged" if current(text) == new else "rewritten"
    print(f"{DOC.relative_to(ROOT)}: import graph {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
