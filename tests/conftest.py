"""Suite-wide rules: which tests take turns on the machine's real broker and engine.

The tests against the real mosquitto and Docker Engine (everything in tests/integration and
tests/chaos, and the node's tests in tests/worker) share the
machine's ports, overlay devices and engine, and several keep a cluster for a whole module.
When the suite runs on several pytest workers (``pytest -n 2``, as scripts/test does), they
all go to one worker, in their order, while the in-process tests are spread over the others.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

# paths (relative to the root, as in node ids) of the tests that take turns
ENGINE_TESTS = (
    "tests/integration/",
    "tests/chaos/",
    # the node's tests: the docker driver's use the engine, and a node agent in the test's
    # own process claims this host's overlay networking for the life of that process, so
    # they run after the clusters that need it, as in one process
    "tests/worker/",
)


def takes_turns(nodeid: str) -> bool:
    return nodeid.split("::", 1)[0].startswith(ENGINE_TESTS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if takes_turns(item.nodeid):
            item.add_marker(pytest.mark.integration)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Only the tests that take turns may set up this host's overlay networking: the nodes
    that other tests start (in parallel with them) run without it."""
    if takes_turns(item.nodeid):
        os.environ.pop("SHOAL_OVERLAY", None)
    else:
        os.environ["SHOAL_OVERLAY"] = "off"


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """All the tests that take turns are one unit of work, sent to one worker in their order;
    every other test is a unit of its own."""
    from xdist.scheduler import LoadScopeScheduling

    class EngineTakesTurns(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "engine" if takes_turns(nodeid) else nodeid

    return EngineTakesTurns(config, log)
