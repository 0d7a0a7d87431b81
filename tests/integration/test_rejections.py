"""A node that rejects a service's task is avoided for it: the next task goes to a node that can
run it (real mosquitto, real Docker Engine, a process node beside a Docker node)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Cluster, shoal, wait_for

pytestmark = pytest.mark.integration

IMAGE = "shoal/busybox:latest"


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False).stdout


def _tasks(c: Cluster, service: str) -> list[dict[str, Any]]:
    out = shoal("service", "ps", "--format", "json", "--no-trunc", service, data=c.manager).stdout
    return [json.loads(line) for line in out.splitlines()]


def _running_on(c: Cluster, service: str) -> list[str]:
    return sorted(
        t["node"]
        for t in _tasks(c, service)
        if t["desired_state"] == "running" and t["state"] == "running"
    )


def test_a_node_that_rejected_the_task_is_avoided_and_the_capable_node_runs_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    if not _docker("image", "inspect", "--format", "{{.Id}}", IMAGE).strip():
        pytest.skip(f"the {IMAGE} image is not loaded in the Docker engine")
    c = cluster
    shoal("node", "update", "--availability", "drain", "mgr", data=c.manager)
    c.join("proc", driver="process")
    c.join("dock", driver="docker")
    try:
        # One task on dock already, so spread alone would always choose proc.
        shoal(
            "service", "create", "--detach", "--name", "filler", "--stop-grace-period", "1s",
            "--constraint", "node.hostname==dock", IMAGE, "sleep", "600", data=c.manager,
        )  # fmt: skip
        wait_for(lambda: _running_on(c, "filler") == ["dock"], 60, "the filler on dock")
        # The process driver rejects any mount: a lasting reason on that node.
        shoal(
            "service", "create", "--detach", "--name", "mounted", "--stop-grace-period", "1s",
            "--mount", f"type=bind,source={tmp_path},target=/data,readonly",
            IMAGE, "sleep", "600", data=c.manager,
        )  # fmt: skip
        wait_for(lambda: _running_on(c, "mounted") == ["dock"], 60, "the task running on dock")
        rows = _tasks(c, "mounted")
        rejected = [t for t in rows if t["state"] == "rejected"]
        assert rejected, rows
        assert {t["node"] for t in rejected} == {"proc"}, rows
        assert "mounts or devices" in rejected[0]["error"], rejected[0]
        # Once avoided, proc is not tried again while dock runs the task.
        assert len(rejected) == 1, rows
    finally:
        cluster_id = c.info(c.manager)["cluster_id"]
        found = _docker("ps", "-aq", "--filter", f"label=com.shoal.cluster={cluster_id}").split()
        if found:
            _docker("rm", "-f", *found)
