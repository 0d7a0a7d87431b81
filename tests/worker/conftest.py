"""Fixtures for the worker tests: a Docker Engine client and per-test cluster ids with cleanup."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.model import Assignment
from agent.worker import Executor
from agent.worker.docker import DockerDriver
from tests.worker.helpers import NODE, Recorder, assignment

TEST_IMAGE = "shoal/busybox:latest"


@pytest.fixture
async def engine() -> AsyncIterator[Any]:
    """An aiodocker client to look at what the driver created (skips without an engine)."""
    import aiodocker

    client = aiodocker.Docker()
    try:
        await client.version()
        await client.images.inspect(TEST_IMAGE)
    except Exception as exc:
        await client.close()
        pytest.skip(
            f"needs Docker Engine and {TEST_IMAGE} "
            f"(bash -c 'source scripts/setup.sh; ensure_test_image'): {exc}"
        )
    yield client
    await client.close()


@dataclass
class DockerCluster:
    """One test's cluster id (and any foreign ones it makes), executors and drivers."""

    engine: Any
    state_dir: Path
    cluster_id: str = field(default_factory=lambda: f"test{secrets.token_hex(5)}")
    clusters: list[str] = field(default_factory=list)
    drivers: list[DockerDriver] = field(default_factory=list)
    files_root: Path | None = None  # where drivers keep secrets and configs (None: default)

    def __post_init__(self) -> None:
        self.clusters.append(self.cluster_id)

    def foreign_cluster(self) -> str:
        other = f"test{secrets.token_hex(5)}"
        self.clusters.append(other)
        return other

    def driver(self) -> DockerDriver:
        driver = DockerDriver(files_root=self.files_root)
        self.drivers.append(driver)
        return driver

    def executor(self, recorder: Recorder, **kwargs: Any) -> Executor:
        return Executor(
            self.driver(),
            self.state_dir,
            recorder,
            node_id=NODE,
            cluster_id=self.cluster_id,
            default_grace=1.0,
            **kwargs,
        )

    def task(self, *, init: bool | None = True, **kwargs: Any) -> Assignment:
        kwargs.setdefault("cluster_id", self.cluster_id)
        kwargs.setdefault("task_id", f"t{secrets.token_hex(5)}")
        kwargs.setdefault("grace", 1.0)
        return assignment(init=init, **kwargs)

    def sh(self, script: str, **kwargs: Any) -> Assignment:
        return self.task(command=("/bin/sh", "-c", script), **kwargs)

    def sleeper(self, **kwargs: Any) -> Assignment:
        return self.task(command=("sleep", "3600"), **kwargs)

    async def containers(self, a: Assignment) -> list[Any]:
        filters = {"label": [f"com.shoal.task.id={a.task_id}"]}
        return list(await self.engine.containers.list(all=True, filters=json.dumps(filters)))


@pytest.fixture
async def dk(engine: Any, tmp_path: Path) -> AsyncIterator[DockerCluster]:
    cluster = DockerCluster(engine, tmp_path / "state")
    cluster.state_dir.mkdir()
    try:
        yield cluster
    finally:
        for driver in cluster.drivers:
            await driver.close()
        for cluster_id in cluster.clusters:
            filters = {"label": [f"com.shoal.cluster={cluster_id}"]}
            for c in await engine.containers.list(all=True, filters=json.dumps(filters)):
                await c.delete(force=True, v=True)
