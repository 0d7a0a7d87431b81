"""The import graph in docs/architecture.md is the one the code has now."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("imports_script", ROOT / "scripts" / "imports.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_architecture_doc_shows_the_import_graph_of_the_code() -> None:
    script = _script()
    shown = script.current((ROOT / "docs" / "architecture.md").read_text())
    assert shown == script.block(ROOT), (
        "docs/architecture.md's import graph (between <!-- imports --> and <!-- /imports -->) "
        "is not the code's: run `python scripts/imports.py --write` and review the diff"
    )
