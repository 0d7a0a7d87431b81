"""Options of the Raft tests (registered when pytest is pointed at tests/raft or a file in it).

--rewrite        regenerate the expected output of the transcript tests (review the diff)
--sim-seeds N    run N simulation seeds instead of the default
--sim-seed S     replay one simulation seed (with a trace of what happened on failure)
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("shoal raft")
    group.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="rewrite the expected output of tests/raft/testdata/*.txt",
    )
    group.addoption("--sim-seeds", type=int, default=None, help="number of simulation seeds")
    group.addoption("--sim-seed", type=int, default=None, help="replay one simulation seed")
