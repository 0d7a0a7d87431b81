"""Managers as separate processes over a real mosquitto: the cluster's state survives the
loss of a minority, and no acknowledged change is lost when leaders are killed with -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.harness import (
    Cluster,
    info_of,
    join_managers,
    shoal,
    start_daemon,
    wait_for,
)

pytestmark = pytest.mark.integration


def _leader(dirs: list[Path], alive: set[Path]) -> Path:
    def find() -> Path | None:
        for d in alive:
            info = info_of(d)
            if info and info.get("is_leader"):
                return d
        return None

    return wait_for(find, 15, "a leader")


def _write(alive: set[Path], acked: list[str]) -> None:
    """One write through any surviving manager; remembered only once acknowledged."""
    for d in sorted(alive):
        proc = shoal("cert", "issue", "monitor", "--out", str(d / "out"), data=d, check=False)
        if proc.returncode == 0:
            acked.append(proc.stdout.splitlines()[0])
            return
    raise AssertionError("no surviving manager accepted a write")


def _kill_leaders(cluster: Cluster, n: int, kills: int) -> None:
    dirs = join_managers(cluster, n)
    alive = set(dirs)
    procs: list[subprocess.Popen[bytes]] = []
    acked: list[str] = []
    try:
        for _ in range(kills):
            _write(alive, acked)
            leader = _leader(dirs, alive)
            old = info_of(leader)
            assert old is not None
            os.kill(int((leader / "shoal.pid").read_text()), signal.SIGKILL)
            alive.discard(leader)
            new = _leader(dirs, alive)
            assert new != leader
            _write(alive, acked)  # the new leader accepts writes
            procs.append(start_daemon(leader))
            alive.add(leader)
            wait_for(lambda d=leader: (info_of(d) or {}).get("connected"), 20, "restart")
        # every acknowledged write is there, on every manager
        for d in dirs:

            def caught_up(d: Path = d) -> bool:
                ls = shoal("cert", "ls", data=d, check=False)
                return ls.returncode == 0 and all(a in ls.stdout for a in acked)

            wait_for(caught_up, 20, f"{d.name} to list every acknowledged write")
        applied = {d.name: (info_of(d) or {}).get("applied") for d in dirs}
        assert len(acked) == 2 * kills
        assert None not in applied.values(), applied
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)


def test_three_managers_survive_repeated_leader_kills(cluster: Cluster) -> None:
    _kill_leaders(cluster, 3, kills=4)


@pytest.mark.slow
def test_five_managers_survive_repeated_leader_kills(cluster: Cluster) -> None:
    _kill_leaders(cluster, 5, kills=6)


def test_a_manager_that_leaves_is_removed_from_the_raft_group(cluster: Cluster) -> None:
    dirs = join_managers(cluster, 3)
    shoal("swarm", "leave", "--force", data=dirs[2])
    cluster.nodes.remove(dirs[2])
    wait_for(lambda: len(cluster.node_ls()) == 2, 10, "the manager to be gone")
    # two managers left, both voters: a write still commits
    out = shoal("swarm", "join-token", "--rotate", "worker", data=dirs[1]).stdout
    assert "Successfully rotated" in out


def test_follower_forwards_commands_to_the_leader(cluster: Cluster) -> None:
    dirs = join_managers(cluster, 3)
    follower = next(d for d in dirs if not (info_of(d) or {}).get("is_leader"))
    before = cluster.token()
    shoal("swarm", "join-token", "--rotate", "worker", data=follower)
    after = shoal("swarm", "join-token", "-q", "worker", data=follower).stdout.strip()
    assert after != before
    assert cluster.token() == after


def _role_in_cert(data: Path) -> str:
    from certs import Identity, load_cert

    return Identity.from_cert(load_cert((data / "tls/node.pem").read_bytes())).role.value


def test_promote_and_demote_change_raft_membership_and_certificates(cluster: Cluster) -> None:
    w = cluster.join("w1")
    out = shoal("node", "promote", "w1", data=cluster.manager).stdout
    assert "promoted to a manager" in out
    wait_for(
        lambda: (
            {n["hostname"]: n["manager_status"] for n in cluster.node_ls()}["w1"] == "Reachable"
        ),
        15,
        "w1 to join the raft group",
    )
    assert _role_in_cert(w) == "shoal-manager"
    assert [n["hostname"] for n in json_lines(shoal("node", "ls", "--format", "json", data=w))]
    out = shoal("node", "demote", "w1", data=w).stdout  # a manager may demote itself
    assert "demoted" in out
    assert _role_in_cert(w) == "shoal-worker"
    assert {n["hostname"]: n["manager_status"] for n in cluster.node_ls()}["w1"] == ""
    refused = shoal("node", "ls", data=w, check=False)
    assert refused.returncode == 1 and "not a swarm manager" in refused.stderr


def json_lines(proc: subprocess.CompletedProcess[str]) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_demotions_that_would_break_the_swarm_are_refused(cluster: Cluster) -> None:
    last = shoal("node", "demote", "mgr", data=cluster.manager, check=False)
    assert last.returncode == 1 and "last manager" in last.stderr
    dirs = join_managers(cluster, 3)
    broker = shoal("node", "demote", "mgr", data=cluster.manager, check=False)
    assert broker.returncode == 1 and "embedded broker" in broker.stderr
    os.kill(int((dirs[2] / "shoal.pid").read_text()), signal.SIGKILL)
    wait_for(
        lambda: {n["hostname"]: n["status"] for n in cluster.node_ls()}["m3"] == "down",
        10,
        "m3 to be seen down",
    )
    quorum = shoal("node", "demote", "m2", data=cluster.manager, check=False)
    assert quorum.returncode == 1 and "would not have a quorum" in quorum.stderr
    assert {n["hostname"]: n["role"] for n in cluster.node_ls()}["m2"] == "manager"


def test_the_leader_can_leave_and_the_swarm_goes_on(cluster: Cluster) -> None:
    dirs = join_managers(cluster, 3)
    # make a manager other than the broker's host lead: restart the current leader
    os.kill(int((dirs[0] / "shoal.pid").read_text()), signal.SIGKILL)
    leader = _leader(dirs, set(dirs[1:]))
    proc = start_daemon(dirs[0])
    try:
        wait_for(lambda: (info_of(dirs[0]) or {}).get("connected"), 20, "restart")
        shoal("swarm", "leave", "--force", data=leader)
        cluster.nodes.remove(leader)
        names = {n["hostname"] for n in cluster.node_ls()}
        assert leader.name not in names and len(names) == 2
        out = shoal("swarm", "join-token", "--rotate", "worker", data=cluster.manager).stdout
        assert "Successfully rotated" in out
    finally:
        shoal("swarm", "leave", "--force", data=dirs[2 if leader == dirs[1] else 1], check=False)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def test_the_broker_host_cannot_leave_while_others_depend_on_it(cluster: Cluster) -> None:
    cluster.join("w1")
    refused = shoal("swarm", "leave", "--force", data=cluster.manager, check=False)
    assert refused.returncode == 1 and "embedded broker" in refused.stderr
    assert cluster.info(cluster.manager)["connected"] is True
