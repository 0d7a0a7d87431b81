"""Network partitions: a worker, a follower and the leader cut from the broker in turn (see
partitions_support), on one swarm of three managers and a worker in network namespaces.

- A cut-off worker keeps its tasks; the managers replace them elsewhere after the disconnect
  window; once healed, the worker stops the replaced ones: exactly the desired replicas run.
- A cut-off follower misses nothing: the others commit, and it catches up once healed.
- An isolated leader (a minority of one) acknowledges no write; the majority elects a new
  leader and goes on; after healing the three agree and no acknowledged write is lost.
"""

from __future__ import annotations

import concurrent.futures
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.partitions_support import PartitionSwarm, partition_swarm
from tests.chaos.report import ChaosReport
from tests.harness import wait_for
from tests.integration.netns import can_make_namespaces

_CANNOT = can_make_namespaces()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(_CANNOT is not None, reason=str(_CANNOT)),
]


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartitionSwarm]:
    with partition_swarm(tmp_path_factory.mktemp("orph")) as s:
        yield s


def _sleepers(marker: str) -> list[int]:
    """Every live process on this machine running `sleep <marker>`, on whichever node."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")[:-1]
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if argv == [b"/bin/sleep", marker.encode()] and state not in ("Z", "X"):
            pids.append(int(proc.name))
    return sorted(pids)


def _pid_on(s: PartitionSwarm, node: str) -> dict[str, int]:
    """Task id -> pid of the process tasks `node` started (its records on disk)."""
    root = s.data[node] / "worker" / "processes" / "processes"
    found = {}
    for record in root.glob("*/process.json") if root.is_dir() else ():
        found[record.parent.name] = int(json.loads(record.read_text())["pid"])
    return found


def _running(s: PartitionSwarm, service: str) -> list[dict[str, Any]]:
    out = s.shoal("service", "ps", service, "--format", "json", check=False).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [r for r in rows if r["desired_state"] == "running" and r["state"] == "running"]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def test_a_cut_off_worker_keeps_its_tasks_then_stops_those_replaced_meanwhile(
    swarm: PartitionSwarm, chaos_report: ChaosReport
) -> None:
    s = swarm
    marker = str(86400 + random.randrange(10000))
    s.shoal(
        "service", "create", "--detach", "--name", "orphw", "--replicas", "4",
        "--stop-grace-period", "1s", "/bin/sleep", marker,
    )  # fmt: skip
    wait_for(lambda: len(_running(s, "orphw")) == 4 and len(_sleepers(marker)) == 4, 40, "4 up")
    assert sorted(t["node"] for t in _running(s, "orphw")) == ["m1", "m2", "m3", "w1"]
    (w1_pid,) = _pid_on(s, "w1").values()
    others = {n: set(_pid_on(s, n).values()) for n in ("m1", "m2", "m3")}
    cut_at = time.monotonic()
    s.cut("w1")
    # the managers replace its task on another node after the disconnect window
    wait_for(
        lambda: len([t for t in _running(s, "orphw") if t["node"] != "w1"]) == 4,
        30,
        "the cut-off worker's task replaced elsewhere",
    )
    replaced_after = time.monotonic() - cut_at
    wait_for(lambda: not s.connected("w1"), 10, "the worker to see it is cut off")
    while time.monotonic() - cut_at < 10:  # the fault lasts ~10 s; the task must live through
        assert _alive(w1_pid), "the cut-off worker stopped its task"
        time.sleep(0.5)
    assert _alive(w1_pid)
    most = len(_sleepers(marker))  # the replaced task and its replacement, both running
    healed_at = time.monotonic()
    s.heal("w1")
    wait_for(lambda: s.connected("w1"), 40, "the worker to reconnect")
    wait_for(lambda: not _alive(w1_pid), 20, "the worker to stop its replaced task")
    wait_for(
        lambda: len(_running(s, "orphw")) == 4 and len(_sleepers(marker)) == 4, 20, "4 replicas"
    )
    converge = time.monotonic() - healed_at
    needless = sum(1 for n, pids in others.items() if not pids <= set(_pid_on(s, n).values()))
    duplicates = len(_sleepers(marker)) - 4
    chaos_report.record(
        "worker cut from the broker ~10 s",
        injected=1,
        duplicates=duplicates,
        needlessly_replaced=needless,
        converge_s=converge,
        note=f"replaced after {replaced_after:.1f} s; {most} running during the cut",
    )
    assert most == 5 and duplicates == 0 and needless == 0
    s.shoal("service", "rm", "orphw")
    wait_for(lambda: not _sleepers(marker), 30, "the service's tasks gone")


def test_a_cut_off_follower_catches_up_after_healing(
    swarm: PartitionSwarm, chaos_report: ChaosReport
) -> None:
    s = swarm
    leader = s.leader()
    follower = next(n for n in ("m2", "m3", "m1") if n != leader)
    s.cut(follower)
    wait_for(lambda: not s.connected(follower), 10, "the follower cut off")
    names = [f"orph-b-{i}" for i in range(5)]
    acked = [name for name in names if s.write(name, node=str(leader))[0]]
    assert acked == names, "the majority must go on committing"
    assert s.info(follower)["applied"] < s.info(str(leader))["applied"]
    healed_at = time.monotonic()
    s.heal(follower)

    def caught_up() -> bool:
        applied = s.applied()
        return s.connected(follower) and applied[follower] == applied[str(leader)]

    wait_for(caught_up, 60, "the follower to catch up")
    converge = time.monotonic() - healed_at
    found = s.configs(follower) & set(acked)
    chaos_report.record(
        "manager (follower) cut from the broker",
        injected=1,
        acked=len(acked),
        found=len(found),
        converge_s=converge,
    )
    assert found == set(acked)
    assert s.leader() == leader


def test_an_isolated_leader_acknowledges_nothing_and_the_majority_goes_on(
    swarm: PartitionSwarm, chaos_report: ChaosReport
) -> None:
    s = swarm
    old = s.leader()
    assert old is not None
    s.cut(old)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        minority = pool.submit(s.write, "orph-c-minority", old)  # may hang until its timeout
        wait_for(lambda: s.leader() not in (None, old), 30, "the majority to elect a leader")
        new = str(s.leader())
        names = [f"orph-c-{i}" for i in range(5)]
        acked = [name for name in names if s.write(name, node=new)[0]]
        minority_acked, minority_took = minority.result(timeout=60)
    assert not minority_acked, "a leader cut from the majority acknowledged a write"
    assert minority_took < 30
    assert acked == names
    healed_at = time.monotonic()
    s.heal(old)

    def converged() -> bool:
        applied = s.applied()
        return s.leader() == new and len(set(applied.values())) == 1

    wait_for(converged, 60, "the three managers in step again")
    converge = time.monotonic() - healed_at
    found = s.configs(old) & set(acked)
    chaos_report.record(
        "leader isolated (minority of one)",
        injected=1,
        acked=len(acked),
        found=len(found),
        converge_s=converge,
        note=f"the isolated leader's write failed after {minority_took:.1f} s",
    )
    assert found == set(acked)
    assert "orph-c-minority" not in s.configs(new)
