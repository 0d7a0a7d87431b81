"""The Docker Swarm walkthrough, over MQTT: three managers and two workers on one machine, one
real Docker Engine, a service created, scaled, drained, its node killed, updated with a failing
healthcheck that rolls back, and removed without a container left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Cluster, new_cluster, shoal, start_daemon, wait_for

pytestmark = pytest.mark.integration


def _docker(*args: str) -> list[str]:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, check=False).stdout
    return out.split()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Cluster]:
    with new_cluster(tmp_path) as (c, _):
        cid = c.info(c.manager)["cluster_id"]
        try:
            for name, role in (
                ("m2", "manager"),
                ("m3", "manager"),
                ("w1", "worker"),
                ("w2", "worker"),
            ):
                c.join(name, role)
            yield c
        finally:
            left = _docker("ps", "-aq", "--filter", f"label=com.shoal.cluster={cid}")
            if left:
                _docker("rm", "-f", *left)


def _tasks(c: Cluster, service: str, data: Path | None = None) -> list[dict[str, Any]]:
    out = shoal("service", "ps", "--format", "json", service, data=data or c.manager).stdout
    return [json.loads(line) for line in out.splitlines()]


def _running(c: Cluster, service: str) -> list[dict[str, Any]]:
    return [
        t for t in _tasks(c, service) if t["desired_state"] == "running" and t["state"] == "running"
    ]


def _converged(c: Cluster, service: str, n: int) -> bool:
    tasks = _tasks(c, service)
    live = [t for t in tasks if t["desired_state"] == "running"]
    return len(live) == n and all(t["state"] == "running" for t in live)


def _containers(cid: str, service: str, node: str = "") -> list[str]:
    filters = ["--filter", f"label=com.shoal.cluster={cid}"]
    filters += ["--filter", f"label=com.shoal.service.name={service}"]
    if node:
        filters += ["--filter", f"label=com.shoal.node={node}"]
    return _docker("ps", "-q", *filters)


def test_the_swarm_walkthrough(fleet: Cluster) -> None:
    c = fleet
    cid = c.info(c.manager)["cluster_id"]
    m2 = c.root / "m2"
    nodes = {n["hostname"]: n for n in c.node_ls()}
    assert sorted(nodes) == ["m2", "m3", "mgr", "w1", "w2"]
    wait_for(lambda: all(n["status"] == "ready" for n in c.node_ls()), 20, "every node ready")

    # create: progress until converged, like docker service create without --detach
    out = shoal(
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "3",
        "--restart-delay",
        "1s",
        "--stop-grace-period",
        "500ms",
        "--init",
        "shoal/busybox:latest",
        "sleep",
        "3600",
        data=c.manager,
    ).stdout
    assert "verify: Service converged" in out
    assert "overall progress: 3 out of 3 tasks" in out
    assert len(_running(c, "web")) == 3
    # spread: three tasks on three different nodes
    assert len({t["node_id"] for t in _running(c, "web")}) == 3

    # scale up and down, from another manager (commands reach the leader)
    out = shoal("service", "scale", "web=5", data=m2).stdout
    assert "web scaled to 5" in out and "verify: Service converged" in out
    assert len({t["node_id"] for t in _running(c, "web")}) == 5
    shoal("service", "scale", "web=2", data=m2)
    wait_for(lambda: len(_containers(cid, "web")) == 2, 30, "two containers after scaling down")
    assert len(_running(c, "web")) == 2

    # drain a node that runs a task: the task moves elsewhere
    victim = _running(c, "web")[0]["node_id"]
    shoal("node", "update", "--availability", "drain", victim, data=c.manager)
    wait_for(
        lambda: _converged(c, "web", 2) and all(t["node_id"] != victim for t in _running(c, "web")),
        30,
        "the drained node's task to move",
    )
    wait_for(lambda: not _containers(cid, "web", victim), 30, "the drained node's container gone")
    shoal("node", "update", "--availability", "active", victim, data=c.manager)

    # a worker's agent dies: its tasks are replaced on the others once its session ends
    shoal("service", "scale", "web=5", data=c.manager)
    w1 = nodes["w1"]["id"]
    wait_for(lambda: any(t["node_id"] == w1 for t in _running(c, "web")), 30, "a task on w1")
    os.kill(int((c.root / "w1" / "shoal.pid").read_text()), signal.SIGKILL)
    wait_for(
        lambda: {n["hostname"]: n["status"] for n in c.node_ls()}["w1"] == "down",
        10,
        "w1 marked down by its will",
    )
    wait_for(
        lambda: _converged(c, "web", 5) and all(t["node_id"] != w1 for t in _running(c, "web")),
        30,
        "w1's task replaced on the other nodes",
    )
    # w1 comes back: it stops what is no longer its to run, and runs nothing twice
    start_daemon(c.root / "w1")
    wait_for(
        lambda: {n["hostname"]: n["status"] for n in c.node_ls()}["w1"] == "ready",
        20,
        "w1 back",
    )
    wait_for(lambda: len(_containers(cid, "web")) == 5, 30, "five containers in all")

    # a rolling update whose healthcheck fails rolls back by itself
    proc = shoal(
        "service",
        "update",
        "--update-parallelism",
        "2",
        "--update-failure-action",
        "rollback",
        "--update-monitor",
        "2s",
        "--health-cmd",
        "exit 1",
        "--health-interval",
        "500ms",
        "--health-retries",
        "1",
        "web",
        data=c.manager,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "rollback: update rolled back due to failure" in proc.stdout + proc.stderr
    inspect = json.loads(shoal("service", "inspect", "web", data=c.manager).stdout)[0]
    assert inspect["UpdateStatus"]["State"] == "rollback_completed"
    assert "Healthcheck" not in inspect["Spec"]["TaskTemplate"]["ContainerSpec"]
    wait_for(lambda: _converged(c, "web", 5), 30, "five healthy tasks after the rollback")

    # remove: nothing left behind on any node
    shoal("service", "rm", "web", data=c.manager)
    wait_for(lambda: not _containers(cid, "web"), 30, "every container removed")
    wait_for(
        lambda: not _docker("ps", "-aq", "--filter", f"label=com.shoal.cluster={cid}"),
        30,
        "no stopped container either",
    )
    assert shoal("service", "ls", "--format", "json", data=c.manager).stdout.strip() == ""
