"""A node the swarm removes (`shoal node rm --force`) leaves no orphans: once it learns it was
removed (the broker refuses its revoked certificate) it stops and removes its tasks, process
tasks and containers alike, clears its saved assignments and says so in `shoal info`; a node
that was down at that moment does it on its next start. Real mosquitto, real Docker Engine."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.net.plan import namespace_prefix
from tests.harness import (
    Cluster,
    free_ports,
    kill_leftovers,
    kill_processes_under,
    shoal,
    start_daemon,
    wait_for,
)
from tests.integration.netns import Fabric, can_make_namespaces, fabric, run

pytestmark = pytest.mark.integration
_CANNOT = can_make_namespaces()

IMAGE = "shoal/busybox:latest"


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False).stdout


@pytest.fixture
def nodes(cluster: Cluster) -> Iterator[dict[str, Any]]:
    """A process node running two sleepers and a docker node running one container."""
    if not _docker("image", "inspect", "--format", "{{.Id}}", IMAGE).strip():
        pytest.skip(f"the {IMAGE} image is not loaded in the Docker engine")
    proc = cluster.join("orphp", driver="process")
    dock = cluster.join("orphd", driver="docker")
    common = ("--detach", "--stop-grace-period", "1s", "--restart-delay", "100ms")
    shoal(
        "service", "create", *common, "--name", "orphp", "--replicas", "2",
        "--constraint", "node.hostname==orphp", "/bin/sleep", "3600", data=cluster.manager,
    )  # fmt: skip
    shoal(
        "service", "create", *common, "--name", "orphd", "--init",
        "--constraint", "node.hostname==orphd", IMAGE, "sleep", "3600", data=cluster.manager,
    )  # fmt: skip
    ids = {d: cluster.info(d)["node_id"] for d in (proc, dock)}
    wait_for(lambda: len(_running(proc)) == 2, 30, "two process tasks running")
    wait_for(lambda: len(_running(dock)) == 1, 60, "the container running")
    yield {"cluster": cluster, "proc": proc, "dock": dock, "ids": ids}
    for d in (proc, dock):
        found = _containers(ids[d])
        if found:
            _docker("rm", "-f", *found)
        for pid in _pids(d):
            with_suppressed_kill(pid)


def with_suppressed_kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _info(data: Path) -> dict[str, Any]:
    proc = shoal("info", "--format", "json", data=data, check=False)
    return dict(json.loads(proc.stdout)) if proc.returncode == 0 else {}


def _running(data: Path) -> list[str]:
    return [t for t, state in _info(data).get("tasks", {}).items() if state == "running"]


def _pids(data: Path) -> list[int]:
    """The pids of the process tasks the node started (its records on disk)."""
    root = data / "worker" / "processes" / "processes"
    pids = []
    for record in root.glob("*/process.json") if root.is_dir() else ():
        pids.append(int(json.loads(record.read_text())["pid"]))
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _containers(node_id: str) -> list[str]:
    return _docker("ps", "-aq", "--filter", f"label=com.shoal.node={node_id}").split()


def _saved_assignments(data: Path) -> bytes:
    path = data / "worker" / "assignments.msgpack"
    return path.read_bytes() if path.exists() else b""


def _check_cleaned_up(n: dict[str, Any], pids: list[int], within: float) -> float:
    """Wait until the removed nodes' tasks are gone and they say so; the seconds it took."""
    proc, dock, ids = n["proc"], n["dock"], n["ids"]
    started = time.monotonic()
    wait_for(lambda: not any(_alive(p) for p in pids), within, "the process tasks to end")
    wait_for(lambda: not _containers(ids[dock]), within, "the container to be removed")
    took = time.monotonic() - started
    for data in (proc, dock):
        info = wait_for(lambda d=data: _info(d).get("removed"), within, "the removal noted")
        assert "removed from the swarm" in info and "stopped and removed" in info, info
        assert _info(data)["tasks"] == {}
        assert b"orph" not in _saved_assignments(data)  # the saved set is empty now
        assert "removed from the swarm" in (data / "shoal.log").read_text()
    return took


def test_a_removed_live_node_stops_and_removes_its_tasks(nodes: dict[str, Any]) -> None:
    c, proc, dock = nodes["cluster"], nodes["proc"], nodes["dock"]
    pids = _pids(proc)
    assert len(pids) == 2 and all(map(_alive, pids))
    assert len(_containers(nodes["ids"][dock])) == 1
    for name in ("orphp", "orphd"):
        shoal("node", "rm", "--force", name, data=c.manager)
    took = _check_cleaned_up(nodes, pids, within=10)
    assert took < 10
    assert "stopped and removed 2 tasks" in _info(proc)["removed"]
    assert "stopped and removed 1 task," in _info(dock)["removed"]
    # the daemons stay up to say so, and no longer knock at the broker
    assert _info(proc)["connected"] is False
    # leaving afterwards clears the data dir, as the record advises
    assert "Node left the swarm." in shoal("swarm", "leave", data=proc, timeout=30).stdout
    assert not (proc / "node.json").exists()


def test_a_node_removed_while_down_cleans_up_when_it_starts_again(nodes: dict[str, Any]) -> None:
    c, proc, dock = nodes["cluster"], nodes["proc"], nodes["dock"]
    pids = _pids(proc)
    for data in (proc, dock):
        os.kill(int((data / "shoal.pid").read_text()), signal.SIGKILL)
    # the tasks outlive their daemon
    assert all(map(_alive, pids)) and len(_containers(nodes["ids"][dock])) == 1
    for name in ("orphp", "orphd"):
        shoal("node", "rm", "--force", name, data=c.manager)
    for data in (proc, dock):
        start_daemon(data)
    _check_cleaned_up(nodes, pids, within=20)
    # a later start remembers the removal at once, without the broker
    os.kill(int((proc / "shoal.pid").read_text()), signal.SIGTERM)
    wait_for(lambda: not (proc / "shoal.pid").exists(), 15, "the daemon to stop")
    start_daemon(proc)
    info = wait_for(lambda: _info(proc).get("removed"), 10, "the removal remembered")
    assert "stopped and removed 2 tasks" in info


def test_a_node_cut_off_from_the_broker_keeps_its_tasks(nodes: dict[str, Any]) -> None:
    """Losing the broker is not a removal: the node keeps every task running (edge autonomy)."""
    c, proc = nodes["cluster"], nodes["proc"]
    pids = _pids(proc)
    broker_pid = _info(c.manager)["broker_pid"]
    os.kill(int((c.manager / "shoal.pid").read_text()), signal.SIGKILL)
    os.kill(broker_pid, signal.SIGKILL)
    wait_for(lambda: not _info(proc).get("connected", True), 10, "the disconnect")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the whole window: nothing may stop meanwhile
        assert all(map(_alive, pids)) and _info(proc).get("removed") is None
        time.sleep(0.5)
    assert len(_running(proc)) == 2


def _ns_cli(f: Fabric, node: str, data: Path, *args: str) -> str:
    cmd = [*f.prefix_of(node), sys.executable, "-m", "agent.cli", "--data-dir", str(data), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _node_devices(f: Fabric, node: str) -> list[str]:
    out = run("ip", "-n", f.nodes[node], "-o", "link", "show")
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    return [n for n in names if n.startswith("sh")]


def _task_namespaces(node_id: str) -> list[str]:
    prefix = namespace_prefix(node_id)
    listed = run("ip", "netns", "list").splitlines()
    return [line.split()[0] for line in listed if line.startswith(prefix)]


@pytest.mark.skipif(_CANNOT is not None, reason=str(_CANNOT))
def test_a_removed_node_removes_its_overlay_networking(tmp_path: Path) -> None:
    """In network namespaces, so that the removed node runs overlay networking of its own."""
    port, enroll = free_ports(2)
    data = {"m": tmp_path / "m", "w": tmp_path / "w"}
    with fabric("m", "w", tag=f"orph{random.randrange(16**3):03x}") as f:
        try:
            m = f.addresses["m"]
            _ns_cli(
                f, "m", data["m"], "swarm", "init", "--listen-addr", f"{m}:{port}",
                "--advertise-addr", m, "--enroll-port", str(enroll), "--hostname", "m",
                "--driver", "process",
            )  # fmt: skip
            token = _ns_cli(f, "m", data["m"], "swarm", "join-token", "-q", "worker").strip()
            _ns_cli(
                f, "w", data["w"], "swarm", "join", "--token", token, "--hostname", "orphw",
                "--enroll-port", str(enroll), "--driver", "process", f"mqtts://{m}:{port}",
            )  # fmt: skip
            node_id = _info(data["w"])["node_id"]
            _ns_cli(f, "m", data["m"], "network", "create", "orphnet")
            _ns_cli(
                f, "m", data["m"], "service", "create", "--detach", "--name", "orphn",
                "--network", "orphnet", "--stop-grace-period", "1s",
                "--constraint", "node.hostname==orphw", "/bin/sleep", "3600",
            )  # fmt: skip
            wait_for(lambda: _running(data["w"]), 30, "the task running on its network")
            assert _node_devices(f, "w") and _task_namespaces(node_id)
            pids = _pids(data["w"])
            _ns_cli(f, "m", data["m"], "node", "rm", "--force", "orphw")
            wait_for(lambda: _info(data["w"]).get("removed"), 15, "the removal done")
            assert not any(map(_alive, pids))
            assert _node_devices(f, "w") == []
            assert _task_namespaces(node_id) == []
            rules = run("ip", "netns", "exec", f.nodes["w"], "iptables-save")
            assert "SHOAL" not in rules, rules
        finally:
            for d in data.values():
                subprocess.run(
                    [*f.prefix_of("m"), sys.executable, "-m", "agent.cli", "--data-dir", str(d),
                     "swarm", "leave", "--force"],
                    capture_output=True, timeout=60, check=False,
                )  # fmt: skip
                kill_leftovers(d)
            kill_processes_under(tmp_path)
