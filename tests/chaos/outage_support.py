"""Support for the broker outage tests: a cluster of one manager (with the embedded broker)
and two process-driver workers running four long tasks spread 2+2, a writer that keeps
creating services through the manager, and ways to take the broker away."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness import Cluster, shoal, wait_for

SERVICE = "steady"
HEARTBEAT = "2s"  # the MQTT keepalive follows it: a frozen broker is noticed within 2-4 s
LAG = 5.0  # one node reports back this long after the broker: past the 2 s disconnect window


@dataclass(frozen=True)
class Running:
    """One running task as the managers and its node both see it."""

    task_id: str
    node: str
    container_id: str


def live_tasks(c: Cluster) -> list[dict[str, Any]]:
    out = shoal("service", "ps", "--format", "json", SERVICE, data=c.manager, timeout=30).stdout
    return [t for t in map(json.loads, out.splitlines()) if t["desired_state"] == "running"]


def running(c: Cluster) -> set[Running]:
    """The service's running tasks, each confirmed by the process its node runs for it."""
    on_nodes: dict[str, str] = {}
    for data in c.nodes:
        info = c.info(data)
        for task_id, state in info["tasks"].items():
            if state == "running":
                on_nodes[task_id] = info["hostname"]
    return {
        Running(t["id"], t["node"], t["container_id"])
        for t in live_tasks(c)
        if t["state"] == "running" and on_nodes.get(t["id"]) == t["node"] and t["container_id"]
    }


def spread(tasks: set[Running]) -> list[int]:
    return sorted(Counter(t.node for t in tasks).values())


def start_steady(c: Cluster) -> set[Running]:
    """Two workers, four long tasks on them, two each."""
    for name in ("w1", "w2"):
        c.join(name, "worker", "process", "--heartbeat", HEARTBEAT)
    shoal(
        "service",
        "create",
        "--detach",
        "--name",
        SERVICE,
        "--replicas",
        "4",
        "--constraint",
        "node.role==worker",
        "/bin/sleep",
        "3600",
        data=c.manager,
    )
    return wait_for(lambda: _converged(c), 60, "4 tasks running, 2 on each worker")


def _converged(c: Cluster) -> set[Running] | None:
    if not all(c.info(d)["connected"] for d in [c.manager, *c.nodes]):
        return None
    nodes = c.node_ls()
    if len(nodes) != 3 or any(n["status"].lower() != "ready" for n in nodes):
        return None
    now = running(c)
    if len(now) != 4 or spread(now) != [2, 2] or len(live_tasks(c)) != 4:
        return None
    return now


def wait_converged(c: Cluster, timeout: float) -> tuple[set[Running], float]:
    start = time.monotonic()
    now = wait_for(lambda: _converged(c), timeout, "all nodes ready, 4 tasks running 2+2")
    return now, time.monotonic() - start


def broker_pid(c: Cluster) -> int:
    return int((c.manager / "broker" / "mosquitto.pid").read_text().strip())


def freeze(pid: int, seconds: float, *, kill: bool, lagging: int, lag: float) -> None:
    """Stop the broker for `seconds` (TCP stays open, nothing is answered), then let it go on,
    or kill it so that the manager's supervisor starts a new one. The daemon `lagging` (its
    tasks run on) is stopped as long and `lag` seconds more: a node that reports back late,
    as one whose reconnect backoff has grown does."""
    os.kill(lagging, signal.SIGSTOP)
    try:
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)  # the fault itself lasts this long: nothing is waited for
        finally:
            os.kill(pid, signal.SIGKILL if kill else signal.SIGCONT)
        time.sleep(lag)
    finally:
        os.kill(lagging, signal.SIGCONT)


@dataclass
class Writer:
    """Creates empty services through the manager, one after another, until stopped; every
    acknowledged create must be found afterwards."""

    c: Cluster
    acked: list[str] = field(default_factory=list)
    failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            name = f"load-{n}"
            try:
                proc = shoal(
                    "service",
                    "create",
                    "--detach",
                    "--name",
                    name,
                    "--replicas",
                    "0",
                    "/bin/sleep",
                    "1",
                    data=self.c.manager,
                    check=False,
                    timeout=40,
                )
            except subprocess.TimeoutExpired:
                self.failed += 1
                continue
            if proc.returncode == 0:
                self.acked.append(name)
            else:
                self.failed += 1
                self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def found(self) -> int:
        out = shoal("service", "ls", "--format", "json", data=self.c.manager).stdout
        names = {json.loads(line)["name"] for line in out.splitlines()}
        return sum(1 for name in self.acked if name in names)


def outage(
    c: Cluster, report: Any, *, seconds: float, kill: bool, fault: str, converge: float = 90.0
) -> None:
    """Take the broker away under a writer, bring it back, and check nothing was replaced."""
    before = start_steady(c)
    connects = {d: c.info(d)["connects"] for d in [c.manager, *c.nodes]}
    writer = Writer(c)
    writer.start()
    try:
        wait_for(lambda: writer.acked, 20, "the writer's first acknowledged create")
        lagging = int((c.nodes[1] / "shoal.pid").read_text())
        freeze(broker_pid(c), seconds, kill=kill, lagging=lagging, lag=LAG)
        after, took = wait_converged(c, converge)
    finally:
        writer.stop()
    replaced = len(before - after)
    found = writer.found()
    report.record(
        fault,
        injected=1,
        acked=len(writer.acked),
        found=found,
        duplicates=0,
        needlessly_replaced=replaced,
        converge_s=took,
        note=f"{writer.failed} writes refused",
    )
    assert found == len(writer.acked), "acknowledged creates were lost"
    # every session noticed the broker had stopped answering, and came back
    again = {d: c.info(d)["connects"] for d in [c.manager, *c.nodes]}
    assert all(again[d] > connects[d] for d in connects), (connects, again)
    assert after == before, f"tasks replaced: before {sorted(before)}, after {sorted(after)}"


def all_on_w1(c: Cluster) -> list[dict[str, Any]] | None:
    """The service's four live tasks, once all of them run on w1."""
    live = live_tasks(c)
    on_w1 = [t for t in live if t["node"] == "w1" and t["state"] == "running"]
    return live if len(live) == 4 and len(on_w1) == 4 else None


def node_gone_past_grace(c: Cluster, report: Any, *, grace: float, fault: str) -> None:
    """The broker freezes and one node never reports back: once the broker has returned and
    the grace period is over (not before), that node's tasks move to the node that is left."""
    before = start_steady(c)
    shoal("swarm", "update", "--node-grace", f"{grace:g}s", data=c.manager)
    bad = shoal("swarm", "update", "--node-grace", "0s", data=c.manager, check=False)
    assert bad.returncode != 0 and "--node-grace must be from 1s to 1h" in bad.stderr, bad
    gone = int((c.nodes[1] / "shoal.pid").read_text())
    kept = {t for t in before if t.node == "w1"}
    os.kill(gone, signal.SIGSTOP)
    try:
        os.kill(broker_pid(c), signal.SIGSTOP)
        time.sleep(8)  # the outage lasts this long: nothing is waited for
        os.kill(broker_pid(c), signal.SIGCONT)
        back = time.monotonic()

        live = wait_for(lambda: all_on_w1(c), grace + 60, "the lost node's tasks running on w1")
        took = time.monotonic() - back
        still = {Running(t["id"], t["node"], t["container_id"]) for t in live}
        report.record(
            fault,
            injected=1,
            needlessly_replaced=len(kept - still),
            converge_s=took,
            note=f"grace {grace:g} s",
        )
        assert kept <= still, "the tasks of the node that stayed were replaced"
        assert took >= grace, f"the lost node's tasks moved {took:.1f} s after the broker returned"
    finally:
        os.kill(gone, signal.SIGCONT)
    wait_for(
        lambda: {n["hostname"]: n["status"].lower() for n in c.node_ls()}["w2"] == "ready",
        60,
        "w2 ready again",
    )


def node_dies_in_the_outage(c: Cluster, report: Any, *, grace: float, fault: str) -> None:
    """A node's daemon dies while the broker is frozen, and the broker is then killed (the
    manager starts a new one): no will of that node is ever delivered, yet once it has been
    silent for three of its heartbeats after the outage it counts as down and its tasks move
    to the node that is left."""
    before = start_steady(c)
    shoal("swarm", "update", "--node-grace", f"{grace:g}s", data=c.manager)
    kept = {t for t in before if t.node == "w1"}
    os.kill(broker_pid(c), signal.SIGSTOP)
    try:
        os.kill(int((c.nodes[1] / "shoal.pid").read_text()), signal.SIGKILL)
        time.sleep(8)  # the outage lasts this long: nothing is waited for
    finally:
        os.kill(broker_pid(c), signal.SIGKILL)
    back = time.monotonic()

    live = wait_for(lambda: all_on_w1(c), 90, "the dead node's tasks running on w1")
    took = time.monotonic() - back
    still = {Running(t["id"], t["node"], t["container_id"]) for t in live}
    status = {n["hostname"]: n["status"].lower() for n in c.node_ls()}
    report.record(
        fault,
        injected=1,
        needlessly_replaced=len(kept - still),
        converge_s=took,
        note=f"grace {grace:g} s, heartbeat {HEARTBEAT}",
    )
    assert kept <= still, "the tasks of the node that stayed were replaced"
    assert status["w2"] == "down", status
    kill_orphans(c.nodes[1])


def kill_orphans(data: Path) -> None:
    """End the process tasks a killed daemon left running (its records on disk)."""
    for record in (data / "worker" / "processes" / "processes").glob("*/process.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            os.kill(int(json.loads(record.read_text())["pid"]), signal.SIGKILL)
