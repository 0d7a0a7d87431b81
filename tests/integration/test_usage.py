"""A node's mon/node/<id>/usage names every task it runs, with that task's memory and CPU, as
read from the real driver (a process of the process driver, a container of a real Docker
Engine), by a monitoring certificate over a real mosquitto."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.topics import Topics
from tests.harness import Cluster, shoal
from tests.integration.mqtt import collect, mqtt

IMAGE = "shoal/busybox:latest"


async def _usage(c: Cluster, mon: Path, node_id: str) -> dict[str, Any]:
    topic = Topics(c.info(c.manager)["cluster_id"]).mon("node", node_id, "usage")
    async with mqtt(c.port, ca=mon / "ca.pem", cert=mon / "cert.pem", key=mon / "key.pem") as m:
        await m.subscribe(topic, qos=1)
        got = dict(await collect(m, 1.5, retained=True))
    return dict(json.loads(got[topic])) if topic in got else {}


async def _task_usage(c: Cluster, tmp: Path, node: Path, service: str) -> dict[str, Any]:
    """The usage entry of the service's one running task, once the node has published it."""
    mon = tmp / "mon"
    if not mon.exists():
        shoal("cert", "issue", "monitor", "--out", str(mon), data=c.manager)
    node_id = c.info(node)["node_id"]
    rows = shoal("service", "ps", "-q", "--no-trunc", service, data=c.manager).stdout.split()
    assert len(rows) == 1, rows
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        doc = await _usage(c, mon, node_id)
        entry = (doc.get("tasks") or {}).get(rows[0])
        if entry is not None and entry.get("cpu") is not None:
            return dict(entry)
        assert loop.time() < deadline, f"no usage of task {rows[0]} in {doc}"


async def test_a_process_task_is_in_its_nodes_usage(sampled: Cluster, tmp_path: Path) -> None:
    c = sampled
    shoal("service", "create", "--detach", "--name", "nap", "/bin/sleep", "600", data=c.manager)
    entry = await _task_usage(c, tmp_path, c.manager, "nap")
    assert entry["memory"] > 0 and 0 <= entry["cpu"] < 1, entry


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def docker_node(sampled: Cluster) -> Iterator[Path]:
    if _docker("image", "inspect", IMAGE).returncode != 0:
        pytest.skip(f"the {IMAGE} image is not loaded in the Docker engine")
    yield sampled.join("dock", "worker", "docker", "--usage-interval", "1")
    cluster_id = sampled.info(sampled.manager)["cluster_id"]
    ids = _docker("ps", "-aq", "--filter", f"label=com.shoal.cluster={cluster_id}").stdout.split()
    if ids:
        _docker("rm", "-f", *ids)


async def test_a_container_task_is_in_its_nodes_usage(
    sampled: Cluster, docker_node: Path, tmp_path: Path
) -> None:
    c = sampled
    shoal(
        "service", "create", "--detach", "--name", "box", "--init",
        "--stop-grace-period", "1s", "--constraint", "node.hostname==dock",
        IMAGE, "sleep", "600", data=c.manager,
    )  # fmt: skip
    entry = await _task_usage(c, tmp_path, docker_node, "box")
    assert entry["memory"] > 0 and 0 <= entry["cpu"] < 1, entry
