"""Fixtures for tests against a real mosquitto (and, where marked, a real Docker Engine).

A cluster is created the way a user creates one: `shoal swarm init` / `shoal swarm join`
in separate data directories, on loopback ports picked free for each test (the helpers are in
tests/harness.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Cluster, new_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session", autouse=True)
def _need_mosquitto() -> None:
    if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
        pytest.fail("mosquitto is not installed: run `make test` (or apt-get install mosquitto)")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with new_cluster(tmp_path) as (c, _):
        yield c


@pytest.fixture
def sampled(tmp_path: Path) -> Iterator[Cluster]:
    """A swarm whose manager (process driver) samples its usage every second, so that
    mon/node/<id>/usage has a document, and the tasks in it, within a second or two."""
    with new_cluster(tmp_path, "--driver", "process", "--usage-interval", "1") as (c, _):
        yield c
