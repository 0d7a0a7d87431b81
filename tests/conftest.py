"""Suite-wide collection rules.

Tests against the real mosquitto and Docker Engine (marked ``integration``, and everything in
tests/integration and tests/chaos) share the machine's ports, overlay devices and engine, so
when the suite runs on several workers (``pytest -n 2``, as scripts/test does) they all run on
one worker, one at a time, while the in-process tests fill the others.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent
_REAL_DIRS = (_HERE / "integration", _HERE / "chaos")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path))
        real = item.get_closest_marker("integration") is not None or any(
            path.is_relative_to(d) for d in _REAL_DIRS
        )
        if real:
            item.add_marker(pytest.mark.xdist_group("engine"))
