"""The node agent end to end: assignments arrive over MQTT, containers run on the real Docker
Engine, status goes back to managers and to monitoring topics, and the node stays autonomous
when the broker goes away."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from agent.spec import SECOND, ContainerSpec, RestartPolicy, TaskSpec
from agent.worker import Assignment
from broker.envelope import Envelope, decode, encode
from broker.topics import Topics
from tests.integration.conftest import Cluster, shoal, wait_for
from tests.integration.mqtt import Ident, as_client, collect, enroll_identity

pytestmark = pytest.mark.integration


def _task(cluster_id: str, node_id: str, task_id: str, script: str, **restart: Any) -> dict:  # type: ignore[type-arg]
    spec = TaskSpec(
        container=ContainerSpec(
            image="shoal/busybox:latest",
            command=("/bin/sh", "-c", script),
            stop_grace_period_ns=SECOND // 2,
            init=True,
        ),
        restart_policy=RestartPolicy(**restart) if restart else RestartPolicy(condition="none"),
    )
    return Assignment(
        task_id=task_id,
        service_id="svc1",
        service_name="web",
        slot=int(task_id[-1]),
        node_id=node_id,
        spec=spec,
        desired_state="running",
        version=1,
        cluster_id=cluster_id,
    ).to_dict()


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


async def _publish(client: Any, topic: str, version: int, tasks: list[dict]) -> None:  # type: ignore[type-arg]
    body = {"version": version, "tasks": tasks}
    await client.publish(topic, encode(Envelope("assign", "m", version, body)), qos=1, retain=True)


async def _assign(m: Ident, port: int, topic: str, version: int, tasks: list[dict]) -> None:  # type: ignore[type-arg]
    async with as_client(m, port) as c:
        body = {"version": version, "tasks": tasks}
        await c.publish(
            topic, encode(Envelope("assign", m.node_id, version, body)), qos=1, retain=True
        )


def _parts(fleet: dict[str, Any]) -> tuple[Cluster, Path, Topics, str, str]:
    return fleet["cluster"], fleet["worker"], fleet["topics"], fleet["node"], fleet["cid"]


async def _run_sleeper(fleet: dict[str, Any], version: int = 1) -> str:
    """Assign one long-running task1 to the worker; its container id once it runs."""
    c, w, t, node, cid = _parts(fleet)
    task = _task(cid, node, "task1", "sleep 3600")
    await _assign(fleet["m"], c.port, t.node_assign(node), version, [task])
    await asyncio.to_thread(wait_for, lambda: _tasks(c, w).get("task1") == "running", 30, "run")
    return _container(cid, "task1")


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
        await _publish(
            watcher,
            t.node_assign(node),
            1,
            [_task(cid, node, "task1", "echo hello; sleep 3600")],
        )
        await asyncio.to_thread(
            wait_for, lambda: _tasks(c, w).get("task1") == "running", 30, "task1 running"
        )
        got = await collect(watcher, 0.5)
    states = [
        s["state"] for _, p in got if (e := decode(p)).type == "status" for s in e.body["tasks"]
    ]
    assert "running" in states
    container = _container(cid, "task1")
    assert container
    labels = json.loads(_docker("inspect", "--format", "{{json .Config.Labels}}", container))
    assert labels["com.shoal.node"] == node and labels["com.shoal.task.id"] == "task1"
    async with as_client(fleet["m"], c.port) as mon:
        await mon.subscribe(t.mon("node", node, "tasks"), qos=1)
        await mon.subscribe(t.mon("node", node, "description"), qos=1)
        retained = dict(await collect(mon, 1.0, retained=True))
    doc = json.loads(retained[t.mon("node", node, "tasks")])
    assert doc["task1"]["state"] == "running" and doc["task1"]["container_id"] == container
    desc = json.loads(retained[t.mon("node", node, "description")])
    assert desc["hostname"] == "w1" and desc["platform"]["os"] == "linux"
    assert desc["engine"]["name"] == "docker" and desc["engine"]["version"]
    # an empty set: the task is shut down and its container removed
    await _assign(fleet["m"], c.port, t.node_assign(node), 2, [])
    await asyncio.to_thread(wait_for, lambda: not _container(cid, "task1"), 30, "removal")


async def test_agent_restart_readopts_running_containers(fleet: dict[str, Any]) -> None:
    c, w, _, _, cid = _parts(fleet)
    await _run_sleeper(fleet)
    before = _container(cid, "task1")
    os.kill(int((w / "shoal.pid").read_text()), signal.SIGKILL)
    _start_daemon(w)
    await asyncio.to_thread(
        wait_for,
        lambda: _safe_info(w).get("connected"),
        20,
        "the restarted agent",
    )
    await asyncio.to_thread(wait_for, lambda: _tasks(c, w).get("task1") == "running", 20, "run")
    assert _container(cid, "task1") == before


async def test_bad_assignment_messages_are_rejected_without_disturbing_tasks(
    fleet: dict[str, Any],
) -> None:
    c, w, t, node, cid = _parts(fleet)
    m = fleet["m"]
    await _assign(m, c.port, t.node_assign(node), 5, [_task(cid, node, "task1", "sleep 3600")])
    await asyncio.to_thread(wait_for, lambda: _tasks(c, w).get("task1") == "running", 30, "run")
    before, rejected = _container(cid, "task1"), c.info(w)["rejected"]
    topic = t.node_assign(node)
    async with as_client(m, c.port) as pub:
        await pub.publish(topic, b"\x00garbage", qos=1)
        await pub.publish(topic, msgpack.packb([1, "assign", "m", 1, 0, {"version": "x"}]), qos=1)
        await pub.publish(
            topic,
            encode(Envelope("assign", "m", 1, {"version": 6, "tasks": [{"task_id": 7}]})),
            qos=1,
        )
        await pub.publish(
            topic, encode(Envelope("assign", "m", 1, {"version": 1, "tasks": []})), qos=1
        )
    await asyncio.to_thread(
        wait_for, lambda: c.info(w)["rejected"] >= rejected + 4, 10, "four rejections"
    )
    # a task for another node in an otherwise valid set is refused by the executor
    await _assign(
        m,
        c.port,
        topic,
        7,
        [_task(cid, node, "task1", "sleep 3600"), _task(cid, "someoneelse", "task2", "sleep 3600")],
    )
    await asyncio.to_thread(
        wait_for, lambda: c.info(w)["rejected_assignments"] >= 1, 10, "the executor's refusal"
    )
    assert _container(cid, "task2") == ""
    assert _tasks(c, w) == {"task1": "running"}
    assert _container(cid, "task1") == before
    reasons = c.info(w)["rejected_reasons"]
    assert any("trailing bytes" in r or "not valid msgpack" in r for r in reasons), reasons
    assert "assignment set older than the one applied" in reasons


@pytest.mark.slow
async def test_tasks_live_on_while_the_broker_is_down_for_30_seconds(
    fleet: dict[str, Any],
) -> None:
    c, w, t, node, cid = _parts(fleet)
    await _assign(
        fleet["m"],
        c.port,
        t.node_assign(node),
        1,
        [
            _task(cid, node, "task1", "sleep 3600"),
            _task(cid, node, "task2", "sleep 1; exit 1", condition="any", delay_ns=SECOND // 2),
        ],
    )
    await asyncio.to_thread(wait_for, lambda: _tasks(c, w).get("task1") == "running", 30, "run")
    stable = _container(cid, "task1")
    # the broker goes away: its supervisor (the manager) first, then mosquitto itself
    broker_pid = c.info(c.manager)["broker_pid"]
    os.kill(int((c.manager / "shoal.pid").read_text()), signal.SIGKILL)
    os.kill(broker_pid, signal.SIGKILL)
    await asyncio.to_thread(wait_for, lambda: not c.info(w)["connected"], 10, "disconnect")
    restarts_before = _restarts(c, w)
    await asyncio.sleep(30)
    assert not c.info(w)["connected"]
    assert _container(cid, "task1") == stable  # kept running
    assert _restarts(c, w) >= restarts_before + 3  # the crashing task restarted locally
    # the broker returns: the node reconnects and publishes its state as it is now
    _start_daemon(c.manager)
    await asyncio.to_thread(wait_for, lambda: c.info(w)["connected"], 30, "reconnect")
    async with as_client(fleet["m"], c.port) as mon:
        await mon.subscribe(t.mon("node", node, "tasks"), qos=1)
        doc = json.loads(dict(await collect(mon, 1.5, retained=True))[t.mon("node", node, "tasks")])
    assert doc["task1"]["state"] == "running" and doc["task1"]["container_id"] == stable
    assert doc["task2"]["restarts"] >= 3
    assert _container(cid, "task1") == stable


def _safe_info(data: Path) -> dict[str, Any]:
    proc = shoal("info", "--format", "json", data=data, check=False)
    return dict(json.loads(proc.stdout)) if proc.returncode == 0 else {}


def _start_daemon(data: Path) -> None:
    with open(data / "shoal.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "agent", "daemon", "--data-dir", str(data)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _restarts(c: Cluster, w: Path) -> int:
    out = shoal("info", "--format", "json", data=w).stdout
    return int(json.loads(out).get("restarts", {}).get("task2", 0))


async def test_leaving_the_swarm_removes_the_nodes_containers(fleet: dict[str, Any]) -> None:
    c, w, _, node, cid = _parts(fleet)
    await _run_sleeper(fleet)
    assert _container(cid, "task1")
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
