"""A swarm whose broker is a 3-server NATS cluster run by the init node's daemon, on loopback,
with the process driver. One swarm for the whole module."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Cluster, free_ports, kill_processes_under, shoal, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("nats-server") or Path("/usr/sbin/nats-server").exists()),
        reason="nats-server is not installed",
    ),
]


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("natsrun")
    port, enroll = free_ports(2)
    mgr = root / "mgr"
    shoal(
        "swarm", "init", "--broker", "nats", "--listen-addr", f"127.0.0.1:{port}",
        "--enroll-port", str(enroll), "--hostname", "mgr", "--driver", "process",
        data=mgr, timeout=120,
    )  # fmt: skip
    c = Cluster(root=root, port=port, enroll_port=enroll, manager=mgr)
    try:
        c.join("w1", "worker", "process", "--timeout", "40", timeout=90)
        yield c
    finally:
        for d in [*c.nodes, mgr]:
            shoal("swarm", "leave", "--force", data=d, check=False, timeout=90)
        kill_processes_under(root)


def _servers(c: Cluster) -> list[Path]:
    return sorted((c.manager / "broker").glob("nats-*"))


def _pid(server: Path) -> int:
    return int((server / "nats.pid").read_text().strip())


def test_init_with_nats_runs_three_servers_and_a_ready_manager(swarm: Cluster) -> None:
    servers = _servers(swarm)
    assert [s.name for s in servers] == ["nats-0", "nats-1", "nats-2"]
    assert all(Path(f"/proc/{_pid(s)}").exists() for s in servers)
    node = json.loads((swarm.manager / "node.json").read_text())
    assert node["broker_backend"] == "nats" and len(node["broker_addresses"]) == 3
    assert swarm.info(swarm.manager)["connected"]


def test_a_worker_joins_through_the_enrollment_endpoint(swarm: Cluster) -> None:
    node = json.loads((swarm.root / "w1" / "node.json").read_text())
    assert node["broker_backend"] == "nats"
    rows = {n["hostname"]: n for n in swarm.node_ls()}
    assert rows["w1"]["status"] == "ready"


def test_a_service_with_two_replicas_runs(swarm: Cluster) -> None:
    shoal("service", "create", "--name", "web", "--replicas", "2", "sleep", "300",
          data=swarm.manager, timeout=90)  # fmt: skip
    out = shoal("service", "ls", data=swarm.manager).stdout
    assert "2/2" in out, out


def test_a_killed_server_is_restarted(swarm: Cluster) -> None:
    server = _servers(swarm)[1]
    old = _pid(server)
    os.kill(old, signal.SIGKILL)
    wait_for(
        lambda: server.joinpath("nats.pid").exists() and _pid(server) != old
        and Path(f"/proc/{_pid(server)}").exists(),
        timeout=15, what="nats-1 to run again",
    )  # fmt: skip


def test_removing_a_worker_cuts_its_live_session_within_5s(swarm: Cluster) -> None:
    w1 = swarm.root / "w1"
    # The test before kills a server: w1 may be failing over from it (NATS stalls 4-10 s).
    wait_for(lambda: swarm.info(w1)["connected"], timeout=30, what="w1 to be connected")
    rm = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "--data-dir", str(swarm.manager),
         "node", "rm", "--force", "w1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        log = w1 / "shoal.log"
        wait_for(
            lambda: "the broker refused this identity" in log.read_text(),
            timeout=5, what="the removed worker's session to be cut",
        )  # fmt: skip
    finally:
        assert rm.wait(90) == 0
