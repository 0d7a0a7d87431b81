"""Bounded requests against a real manager: a billion replicas is refused at once, by the CLI
and by the manager itself (a request that bypasses the CLI), and the manager's memory stays
put. Should a request be accepted, the manager is killed at once rather than left to grow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from agent import control
from agent.model.errors import ShoalError
from agent.model.spec import ContainerSpec, ServiceMode, ServiceSpec, TaskSpec
from agent.paths import DataDir
from tests.harness import Cluster, shoal

pytestmark = pytest.mark.integration

BILLION = 1_000_000_000
MESSAGE = "is 1,000,000,000; at most 10,000 are allowed"
GROWTH = 50 * 1024  # KiB of resident memory the manager may gain meanwhile


def _pid(c: Cluster) -> int:
    return int((c.manager / "shoal.pid").read_text().strip())


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def _refused(c: Cluster, *args: str) -> str:
    """The error of a CLI command that must be refused within a few seconds; one that was
    accepted, or hangs, kills the manager before failing."""
    try:
        proc = shoal(*args, data=c.manager, check=False, timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(_pid(c), signal.SIGKILL)
        pytest.fail(f"{' '.join(args)} got no answer in 10 s (the manager was killed at once)")
    if proc.returncode == 0:
        os.kill(_pid(c), signal.SIGKILL)
        pytest.fail(f"{' '.join(args)} was accepted (the manager was killed at once)")
    return proc.stderr


def _direct(c: Cluster, cmd: str, args: dict[str, object]) -> str:
    """A request sent as any client could, without the CLI's checks."""
    try:
        control.call(DataDir(c.manager).socket, cmd, args, timeout=5)
    except ShoalError as exc:
        return str(exc)
    os.kill(_pid(c), signal.SIGKILL)
    pytest.fail(f"{cmd} was accepted (the manager was killed at once)")


def _answers_quickly(c: Cluster) -> list[dict[str, object]]:
    start = time.monotonic()
    out = shoal("service", "ls", "--format", "json", data=c.manager, timeout=5).stdout
    assert time.monotonic() - start < 5
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_create_with_a_billion_replicas_is_refused_and_the_manager_stays_small(
    cluster: Cluster,
) -> None:
    c = cluster
    pid = _pid(c)
    before = _rss_kib(pid)
    assert MESSAGE in _refused(
        c, "service", "create", "--detach", "--name", "huge", "--replicas", str(BILLION),
        "shoal/busybox:latest",
    )  # fmt: skip
    spec = ServiceSpec(
        name="huge",
        task_template=TaskSpec(container=ContainerSpec(image="shoal/busybox:latest")),
        mode=ServiceMode(replicas=BILLION),
    )
    assert MESSAGE in _direct(c, "service-create", {"spec": spec.to_dict()})
    assert _answers_quickly(c) == []
    assert _rss_kib(pid) - before < GROWTH


def test_scale_to_a_billion_replicas_is_refused_and_the_service_keeps_its_spec(
    cluster: Cluster,
) -> None:
    c = cluster
    shoal("service", "create", "--detach", "--name", "x", "--replicas", "0",
          "shoal/busybox:latest", data=c.manager)  # fmt: skip
    pid = _pid(c)
    before = _rss_kib(pid)
    assert MESSAGE in _refused(c, "service", "scale", "--detach", f"x={BILLION}")
    assert MESSAGE in _direct(c, "service-scale", {"service": "x", "replicas": BILLION})
    (row,) = _answers_quickly(c)
    assert row["desired"] == 0
    assert _rss_kib(pid) - before < GROWTH
