"""The node agent end to end: a service's tasks reach the node over MQTT, containers run on the
real Docker Engine, status goes back to managers and to monitoring topics, and the node stays
autonomous when the broker goes away."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from broker.envelope import Envelope, decode, encode
from broker.topics import Topics
from tests.harness import Cluster, shoal, start_daemon, wait_for
from tests.integration.mqtt import as_client, collect, enroll_identity

pytestmark = pytest.mark.integration


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False).stdout


@pytest.fixture
async def fleet(cluster: Cluster, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    worker = await asyncio.to_thread(cluster.join, "w1")
    info = cluster.info(worker)
    m = await enroll_identity(tmp_path / "m", cluster.enroll_port, cluster.token("manager"))
    yield {
        "cluster": cluster,
        "worker": worker,
        "node": info["node_id"],
        "cid": info["cluster_id"],
        "m": m,
        "topics": Topics(info["cluster_id"]),
    }
    ids = _docker("ps", "-aq", "--filter", f"label=com.shoal.cluster={info['cluster_id']}")
    if ids.split():
        _docker("rm", "-f", *ids.split())


def _service(c: Cluster, name: str, script: str, *flags: str) -> None:
    """A one-replica service pinned to the worker w1, created the way users do."""
    shoal(
        "service",
        "create",
        "--detach",
        "--name",
        name,
        "--constraint",
        "node.hostname==w1",
        "--restart-condition",
        "none",
        "--stop-grace-period",
        "500ms",
        "--init",
        *flags,
        "shoal/busybox:latest",
        "/bin/sh",
        "-c",
        script,
        data=c.manager,
    )


def _parts(fleet: dict[str, Any]) -> tuple[Cluster, Path, Topics, str, str]:
    return fleet["cluster"], fleet["worker"], fleet["topics"], fleet["node"], fleet["cid"]


def _task_of(c: Cluster, service: str) -> str:
    rows = [
        json.loads(x)
        for x in shoal(
            "service", "ps", "--format", "json", service, data=c.manager
        ).stdout.splitlines()
    ]
    live = [r["id"] for r in rows if r["desired_state"] == "running"]
    return live[0] if live else ""


def _running_on_worker(c: Cluster, w: Path, service: str) -> str:
    """The id of the service's task once the worker runs it, else ""."""
    task = _task_of(c, service)
    return task if task and _tasks(c, w).get(task) == "running" else ""


async def _run_sleeper(fleet: dict[str, Any]) -> str:
    """A long-running service task on the worker; its task id once it runs."""
    c, w, _, _, _ = _parts(fleet)
    await asyncio.to_thread(_service, c, "sleeper", "sleep 3600")
    return str(
        await asyncio.to_thread(
            wait_for, lambda: _running_on_worker(c, w, "sleeper"), 30, "the task running"
        )
    )


def _tasks(cluster: Cluster, worker: Path) -> dict[str, str]:
    return dict(cluster.info(worker)["tasks"])


def _container(cid: str, task: str) -> str:
    return _docker(
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        f"label=com.shoal.cluster={cid}",
        "--filter",
        f"label=com.shoal.task.id={task}",
    ).strip()


async def test_assigned_tasks_run_and_report_over_mqtt(fleet: dict[str, Any]) -> None:
    c, w, t, node, cid = _parts(fleet)
    async with as_client(fleet["m"], c.port) as watcher:
        await watcher.subscribe(t.node_status(node), qos=1)
        await asyncio.to_thread(_service, c, "web", "echo hello; sleep 3600")
        task = await asyncio.to_thread(
            wait_for, lambda: _running_on_worker(c, w, "web"), 30, "the task running"
        )
        got = await collect(watcher, 0.5)
    states = [
        s["state"] for _, p in got if (e := decode(p)).type == "status" for s in e.body["tasks"]
    ]
    assert "running" in states
    container = _container(cid, task)
    assert container
    labels = json.loads(_docker("inspect", "--format", "{{json .Config.Labels}}", container))
    assert labels["com.shoal.node"] == node and labels["com.shoal.service.name"] == "web"
    async with as_client(fleet["m"], c.port) as mon:
        await mon.subscribe(t.mon("node", node, "tasks"), qos=1)
        await mon.subscribe(t.mon("node", node, "description"), qos=1)
        retained = dict(await collect(mon, 1.0, retained=True))
    doc = json.loads(retained[t.mon("node", node, "tasks")])
    assert doc[task]["state"] == "running" and doc[task]["container_id"] == container
    desc = json.loads(retained[t.mon("node", node, "description")])
    assert desc["hostname"] == "w1" and desc["platform"]["os"] == "linux"
    assert desc["engine"]["name"] == "docker" and desc["engine"]["version"]
    # the service goes: its task is shut down and its container removed
    shoal("service", "rm", "web", data=c.manager)
    await asyncio.to_thread(wait_for, lambda: not _container(cid, task), 30, "removal")


async def test_agent_restart_readopts_running_containers(fleet: dict[str, Any]) -> None:
    c, w, _, _, cid = _parts(fleet)
    task = await _run_sleeper(fleet)
    before = _container(cid, task)
    os.kill(int((w / "shoal.pid").read_text()), signal.SIGKILL)
    start_daemon(w)
    await asyncio.to_thread(
        wait_for,
        lambda: _safe_info(w).get("connected"),
        20,
        "the restarted agent",
    )
    await asyncio.to_thread(wait_for, lambda: _tasks(c, w).get(task) == "running", 20, "run")
    assert _container(cid, task) == before


async def test_bad_assignment_messages_are_rejected_without_disturbing_tasks(
    fleet: dict[str, Any],
) -> None:
    c, w, t, node, cid = _parts(fleet)
    m = fleet["m"]
    task = await _run_sleeper(fleet)
    before, rejected = _container(cid, task), c.info(w)["rejected"]
    topic = t.node_assign(node)
    async with as_client(m, c.port) as sub:  # what the managers sent: the retained set
        await sub.subscribe(topic, qos=1)
        current = decode(dict(await collect(sub, 1.0, retained=True))[topic]).body
    async with as_client(m, c.port) as pub:
        await pub.publish(topic, b"\x00garbage", qos=1)
        await pub.publish(topic, msgpack.packb([1, "assign", "m", 1, 0, {"version": "x"}]), qos=1)
        await pub.publish(
            topic,
            encode(Envelope("assign", "m", 1, {"version": 10**9, "tasks": [{"task_id": 7}]})),
            qos=1,
        )
        await pub.publish(
            topic, encode(Envelope("assign", "m", 1, {"version": 1, "tasks": []})), qos=1
        )
    await asyncio.to_thread(
        wait_for, lambda: c.info(w)["rejected"] >= rejected + 4, 10, "four rejections"
    )
    # a task for another node in an otherwise valid set is refused by the executor
    foreign = {**current["tasks"][0], "task_id": "task2", "node_id": "someoneelse"}
    body = {"version": current["version"] + 1, "tasks": [*current["tasks"], foreign]}
    async with as_client(m, c.port) as pub:
        await pub.publish(topic, encode(Envelope("assign", m.node_id, 9, body)), qos=1)
    await asyncio.to_thread(
        wait_for, lambda: c.info(w)["rejected_assignments"] >= 1, 10, "the executor's refusal"
    )
    assert _container(cid, "task2") == ""
    assert _tasks(c, w) == {task: "running"}
    assert _container(cid, task) == before
    reasons = c.info(w)["rejected_reasons"]
    assert any("trailing bytes" in r or "not valid msgpack" in r for r in reasons), reasons
    assert "assignment set older than the one applied" in reasons


@pytest.mark.slow
async def test_tasks_live_on_while_the_broker_is_down_for_30_seconds(
    fleet: dict[str, Any],
) -> None:
    c, w, t, node, cid = _parts(fleet)
    task1 = await _run_sleeper(fleet)
    await asyncio.to_thread(
        _service,
        c,
        "crasher",
        "sleep 1; exit 1",
        "--restart-condition",
        "any",
        "--restart-delay",
        "500ms",
    )
    task2 = await asyncio.to_thread(
        wait_for,
        lambda: _task_of(c, "crasher") in _tasks(c, w) and _task_of(c, "crasher"),
        30,
        "the crashing task on the worker",
    )
    stable = _container(cid, task1)
    # the broker goes away: its supervisor (the manager) first, then mosquitto itself
    broker_pid = c.info(c.manager)["broker_pid"]
    os.kill(int((c.manager / "shoal.pid").read_text()), signal.SIGKILL)
    os.kill(broker_pid, signal.SIGKILL)
    await asyncio.to_thread(wait_for, lambda: not c.info(w)["connected"], 10, "disconnect")
    # only tasks the node runs now matter offline; the crasher may have been replaced once
    task2 = next(iter(set(_tasks(c, w)) - {task1}), task2)
    restarts_before = _restarts(c, w, task2)
    await asyncio.sleep(30)
    assert not c.info(w)["connected"]
    assert _container(cid, task1) == stable  # kept running
    assert _restarts(c, w, task2) >= restarts_before + 3  # the crashing task restarted locally
    # the broker returns: the node reconnects and publishes its state as it is now
    start_daemon(c.manager)
    await asyncio.to_thread(wait_for, lambda: c.info(w)["connected"], 30, "reconnect")
    async with as_client(fleet["m"], c.port) as mon:
        await mon.subscribe(t.mon("node", node, "tasks"), qos=1)
        doc = json.loads(dict(await collect(mon, 1.5, retained=True))[t.mon("node", node, "tasks")])
    assert doc[task1]["state"] == "running" and doc[task1]["container_id"] == stable
    assert doc[task2]["restarts"] >= 3
    assert _container(cid, task1) == stable


def _safe_info(data: Path) -> dict[str, Any]:
    proc = shoal("info", "--format", "json", data=data, check=False)
    return dict(json.loads(proc.stdout)) if proc.returncode == 0 else {}


def _restarts(c: Cluster, w: Path, task: str) -> int:
    out = shoal("info", "--format", "json", data=w).stdout
    return int(json.loads(out).get("restarts", {}).get(task, 0))


async def test_leaving_the_swarm_removes_the_nodes_containers(fleet: dict[str, Any]) -> None:
    c, w, _, node, cid = _parts(fleet)
    task = await _run_sleeper(fleet)
    assert _container(cid, task)
    # a task slow to stop (sleep as PID 1 ignores SIGTERM: the whole grace period passes)
    await asyncio.to_thread(
        shoal,
        "service",
        "create",
        "--detach",
        "--name",
        "slow",
        "--constraint",
        "node.hostname==w1",
        "--no-init",
        "--stop-grace-period",
        "7s",
        "shoal/busybox:latest",
        "sleep",
        "3600",
        data=c.manager,
    )
    slow = await asyncio.to_thread(
        wait_for, lambda: _running_on_worker(c, w, "slow"), 30, "the slow task running"
    )
    assert _container(cid, slow)
    out = await asyncio.to_thread(shoal, "swarm", "leave", data=w)
    assert "Node left the swarm." in out.stdout
    c.nodes.remove(w)
    all_ids = _docker("ps", "-aq", "--filter", f"label=com.shoal.node={node}").split()
    assert all_ids == []


def test_an_idle_worker_does_not_load_cryptography(cluster: Cluster) -> None:
    """Edge devices pay for every MB: the worker daemon renews its certificate through a
    child process, so the cryptography library never sits in its memory."""
    w = cluster.join("w1", driver="process")
    shoal("info", data=w)  # exercise the control socket too
    pid = int((w / "shoal.pid").read_text())
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "cryptography" not in maps
    shoal("swarm", "leave", data=w)
    cluster.nodes.remove(w)
