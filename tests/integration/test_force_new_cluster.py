"""`shoal swarm init --force-new-cluster`: a swarm whose managers lost their quorum for good is
recovered from the one manager left, with its services, and its workers' tasks untouched."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from broker.tls import REVOKED
from tests.harness import (
    Cluster,
    info_of,
    join_managers,
    new_cluster,
    shoal,
    start_daemon,
    wait_for,
)

pytestmark = pytest.mark.integration


def _tasks(c: Cluster, service: str) -> list[dict[str, Any]]:
    out = shoal("service", "ps", "--format", "json", service, data=c.manager).stdout
    return [json.loads(line) for line in out.splitlines()]


def _running(c: Cluster, service: str) -> list[dict[str, Any]]:
    return [
        t for t in _tasks(c, service) if t["desired_state"] == "running" and t["state"] == "running"
    ]


def _kill(data: Path) -> None:
    os.kill(int((data / "shoal.pid").read_text()), signal.SIGKILL)


def _web_on_w1(c: Cluster, mgr: Path) -> dict[str, Any]:
    """Service web's one task, running on the worker w1."""
    shoal(
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--constraint",
        "node.hostname==w1",
        "/bin/sh",
        "-c",
        "sleep 600",
        data=mgr,
    )
    (task,) = wait_for(lambda: _running(c, "web"), 20, "the task running on w1")
    return dict(task)


def test_force_new_cluster_recovers_a_swarm_that_lost_two_of_three_managers(
    tmp_path: Path,
) -> None:
    with new_cluster(tmp_path) as (c, _):
        mgr, m2, m3 = join_managers(c, 3)
        c.join("w1", driver="process")
        task = _web_on_w1(c, mgr)
        assert task["container_id"].startswith("pid-")

        # two manager hosts are lost for good: no quorum, no leader, no write
        _kill(m2)
        _kill(m3)
        c.nodes.remove(m2)
        c.nodes.remove(m3)
        (tmp_path / "lost.txt").write_text("never written")
        lost = str(tmp_path / "lost.txt")
        failed = shoal("secret", "create", "lost", lost, data=mgr, check=False, timeout=90)
        assert failed.returncode != 0, failed.stdout

        out = shoal("swarm", "init", "--force-new-cluster", data=mgr)
        assert "Swarm initialized: current node" in out.stdout, out.stdout
        assert "were removed from the swarm" in out.stdout, out.stdout
        assert "Warning" not in out.stderr, out.stderr
        info = info_of(mgr)
        assert info is not None and info["is_leader"], info

        # the state is all there, and writes go through
        ls = shoal("service", "ls", "--format", "{{.Name}}", data=mgr).stdout.split()
        assert ls == ["web"]
        secrets = shoal("secret", "ls", "--format", "{{.Name}}", data=mgr).stdout.split()
        assert "lost" not in secrets  # the write that failed for want of a quorum stays undone
        nodes = {n["hostname"]: n for n in c.node_ls()}
        assert sorted(nodes) == ["mgr", "w1"], nodes
        assert nodes["mgr"]["manager_status"] == "Leader"

        # the worker's task was never restarted: the same process runs on
        again = wait_for(lambda: _running(c, "web"), 20, "the task still running")
        assert [t["container_id"] for t in again] == [task["container_id"]]
        assert [t["id"] for t in again] == [task["id"]]
        shoal("service", "scale", "--detach", "web=2", data=mgr)
        wait_for(lambda: len(_running(c, "web")) == 2, 30, "the service scaled to 2")
        assert task["container_id"] in {t["container_id"] for t in _running(c, "web")}

        # the swarm grows back: a new manager joins the group of one
        c.join("m4", role="manager")
        wait_for(
            lambda: (
                sorted(n["manager_status"] for n in c.node_ls() if n["role"] == "manager")
                == ["Leader", "Reachable"]
            ),
            30,
            "m4 in the raft group",
        )


def test_force_new_cluster_on_a_worker_or_an_empty_data_dir_is_refused(tmp_path: Path) -> None:
    empty = shoal("swarm", "init", "--force-new-cluster", data=tmp_path / "none", check=False)
    assert empty.returncode != 0
    assert "holds no swarm state" in empty.stderr and "Traceback" not in empty.stderr
    with new_cluster(tmp_path) as (c, _):
        w = c.join("w1", driver="hollow")
        proc = shoal("swarm", "init", "--force-new-cluster", data=w, check=False)
        assert proc.returncode != 0
        assert "is a worker; run it on a manager" in proc.stderr, proc.stderr
        assert len(c.node_ls()) == 2  # nothing changed


def test_force_new_cluster_on_a_healthy_swarm_warns_and_goes_ahead(tmp_path: Path) -> None:
    with new_cluster(tmp_path) as (c, _):
        mgr, m2 = join_managers(c, 2)
        out = shoal("swarm", "init", "--force-new-cluster", data=mgr)
        assert "Warning: the swarm still has a quorum of managers" in out.stderr, out.stderr
        managers = [n for n in c.node_ls() if n["role"] == "manager"]
        assert [n["hostname"] for n in managers] == ["mgr"]
        assert (info_of(mgr) or {}).get("is_leader")
        c.nodes.remove(m2)
        shoal("swarm", "leave", "--force", data=m2, check=False)


def test_force_new_cluster_starts_a_stopped_manager_and_recovers_from_its_state(
    tmp_path: Path,
) -> None:
    with new_cluster(tmp_path) as (c, _):
        mgr, m2 = join_managers(c, 2)
        w1 = c.join("w1", driver="process")
        task = _web_on_w1(c, mgr)
        _kill(m2)
        c.nodes.remove(m2)
        pid = int((mgr / "shoal.pid").read_text())
        os.kill(pid, signal.SIGTERM)  # the survivor's daemon is stopped, as systemd stops it
        wait_for(lambda: info_of(mgr) is None, 30, "the survivor's daemon stopped")

        out = shoal("swarm", "init", "--force-new-cluster", data=mgr)
        assert "Swarm initialized: current node" in out.stdout, out.stdout
        assert (info_of(mgr) or {}).get("is_leader")
        assert [n["hostname"] for n in c.node_ls()] == ["mgr", "w1"]
        again = wait_for(lambda: _running(c, "web"), 30, "the task still running")
        assert [t["container_id"] for t in again] == [task["container_id"]]
        # the worker is back on the broker, with the same task, never restarted
        wait_for(lambda: c.info(w1)["connected"], 30, "w1 connected again")
        assert c.info(w1)["tasks"] == {task["id"]: "running"}
        assert all(r == 0 for r in c.info(w1)["restarts"].values())
        # the lost manager comes back after all, with its old state: the broker refuses it
        back = start_daemon(m2)
        try:
            refused = wait_for(
                lambda: (info_of(m2) or {}).get("last_error") == REVOKED, 30, "m2 refused"
            )
            assert refused and not (info_of(m2) or {}).get("connected")
            assert [n["hostname"] for n in c.node_ls()] == ["mgr", "w1"]
            assert (info_of(mgr) or {}).get("is_leader")
        finally:
            back.kill()
            back.wait()


def test_force_new_cluster_without_the_broker_says_so_and_changes_nothing(tmp_path: Path) -> None:
    with new_cluster(tmp_path) as (c, _):
        mgr, m2 = join_managers(c, 2)
        broker = c.info(mgr)["broker_pid"]
        _kill(mgr)  # the broker's host is lost, and its broker with it
        os.kill(broker, signal.SIGKILL)
        wait_for(lambda: not (info_of(m2) or {}).get("connected", True), 30, "m2 cut off")
        proc = shoal("swarm", "init", "--force-new-cluster", data=m2, check=False)
        assert proc.returncode != 0
        assert "cannot reach the swarm's broker at 127.0.0.1:" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        info = info_of(m2)
        assert info is not None and info["manager"] and not info["is_leader"]
