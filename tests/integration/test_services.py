"""Services over a real broker and real managers, on light nodes: hollow nodes (tasks that do
nothing) for placement and orchestration, process nodes for tasks that end."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from broker.envelope import Envelope, encode
from broker.topics import Topics
from tests.harness import Cluster, shoal, wait_for
from tests.integration.mqtt import as_client, collect, enroll_identity, mqtt

pytestmark = pytest.mark.integration


def _create(c: Cluster, name: str, *flags: str, image: str = "shoal/busybox:latest") -> None:
    shoal("service", "create", "--detach", "--name", name, *flags, image, data=c.manager)


def _tasks(c: Cluster, service: str) -> list[dict[str, Any]]:
    out = shoal("service", "ps", "--format", "json", service, data=c.manager).stdout
    return [json.loads(line) for line in out.splitlines()]


def _live(c: Cluster, service: str) -> list[dict[str, Any]]:
    return [t for t in _tasks(c, service) if t["desired_state"] == "running"]


def _running_on(c: Cluster, service: str) -> list[str]:
    return sorted(t["node"] for t in _live(c, service) if t["state"] == "running")


def _service_row(c: Cluster, service: str) -> dict[str, Any]:
    out = shoal("service", "ls", "--format", "json", data=c.manager).stdout
    return next(r for r in map(json.loads, out.splitlines()) if r["name"] == service)


def test_a_task_that_fits_nowhere_says_why_and_runs_once_a_node_fits(cluster: Cluster) -> None:
    c = cluster
    c.join("w1", driver="hollow")
    c.join("w2", driver="hollow")
    _create(c, "east", "--constraint", "node.labels.zone==east")
    wait_for(
        lambda: "no suitable node" in (_live(c, "east") or [{}])[0].get("message", ""),
        15,
        "the scheduler's explanation",
    )
    (task,) = _live(c, "east")
    assert task["state"] == "pending"
    assert task["message"] == (
        "no suitable node (3 nodes do not satisfy the scheduling constraints)"
    ), task["message"]
    assert task["error"] == task["message"], task  # Docker's ERROR column shows the reason
    table = shoal("service", "ps", "--no-trunc", "east", data=c.manager).stdout
    assert '"no suitable node (3 nodes do not satisfy the scheduling constraints)"' in table, table
    shoal("node", "update", "--label-add", "zone=east", "w2", data=c.manager)
    wait_for(lambda: _running_on(c, "east") == ["w2"], 15, "the task placed on w2")
    inspect = json.loads(shoal("node", "inspect", "w2", data=c.manager).stdout)[0]
    assert (
        inspect["Spec"]["Labels"] == {"zone": "east"} and inspect["Description"]["Hostname"] == "w2"
    )


def test_a_global_service_runs_one_task_per_eligible_node(cluster: Cluster) -> None:
    c = cluster
    c.join("w1", driver="hollow")
    _create(c, "agent", "--mode", "global", "--constraint", "node.role==worker")
    wait_for(lambda: _running_on(c, "agent") == ["w1"], 15, "a task on the worker only")
    c.join("w2", driver="hollow")
    wait_for(lambda: _running_on(c, "agent") == ["w1", "w2"], 15, "a task on the new node")
    shoal("node", "update", "--availability", "drain", "w1", data=c.manager)
    wait_for(lambda: _running_on(c, "agent") == ["w2"], 15, "none on the drained node")
    assert _service_row(c, "agent")["replicas"] == "1/1"


def test_a_replicated_job_runs_to_completion_a_few_at_a_time(cluster: Cluster) -> None:
    c = cluster
    c.join("w1", driver="process")
    _create(
        c,
        "job",
        "--mode",
        "replicated-job",
        "--replicas",
        "4",
        "--max-concurrent",
        "2",
        "--constraint",
        "node.hostname==w1",
        image="/bin/true",
    )
    wait_for(lambda: _service_row(c, "job")["completed"] == 4, 30, "four completions")
    tasks = _tasks(c, "job")
    assert sorted(t["slot"] for t in tasks) == [1, 2, 3, 4]  # each ran once, none again
    assert all(t["state"] == "complete" for t in tasks)
    assert _service_row(c, "job")["replicas"] == "0/0 (4/4 completed)"  # as Docker shows it


def test_failed_tasks_are_replaced_and_history_is_bounded(cluster: Cluster) -> None:
    c = cluster
    c.join("w1", driver="process")
    shoal("swarm", "update", "--task-history-limit", "3", data=c.manager)
    _create(
        c,
        "crash",
        "--restart-delay",
        "100ms",
        "--constraint",
        "node.hostname==w1",
        image="/bin/false",
    )
    # many failures later, slot 1 keeps only three tasks: the live one and two stopped ones
    seen: set[str] = set()

    def many_replacements() -> bool:
        seen.update(t["id"] for t in _tasks(c, "crash"))
        return len(seen) >= 6

    wait_for(many_replacements, 30, "six tasks created in slot 1")
    tasks = _tasks(c, "crash")
    assert {t["slot"] for t in tasks} == {1}
    assert len(tasks) <= 3, tasks
    assert sum(1 for t in tasks if t["desired_state"] == "running") == 1
    failed = [t for t in tasks if t["state"] == "failed"]
    assert failed and all("exit" in t["error"] for t in failed), failed


def test_the_disconnect_window_decides_when_a_lost_nodes_tasks_move(cluster: Cluster) -> None:
    c = cluster
    w1 = c.join("w1", driver="hollow")
    c.join("w2", driver="hollow")
    # both services are on w1 to start with
    for name, window in (("quick", "1s"), ("patient", "10m")):
        _create(
            c,
            name,
            "--disconnect-window",
            window,
            "--constraint",
            "node.role==worker",
            "--placement-pref",
            "spread=node.hostname",
        )
        wait_for(lambda name=name: _running_on(c, name), 15, f"{name} running")
        node = _running_on(c, name)[0]
        if node != "w1":
            shoal("node", "update", "--availability", "drain", "w2", data=c.manager)
            wait_for(lambda name=name: _running_on(c, name) == ["w1"], 15, f"{name} on w1")
            shoal("node", "update", "--availability", "active", "w2", data=c.manager)
    os.kill(int((w1 / "shoal.pid").read_text()), signal.SIGKILL)
    wait_for(lambda: _running_on(c, "quick") == ["w2"], 15, "quick replaced on w2")
    patient = _live(c, "patient")
    assert [t["node"] for t in patient] == ["w1"]  # still waiting for w1 to come back
    assert {n["hostname"]: n["status"] for n in c.node_ls()}["w1"] == "down"


async def test_status_about_another_nodes_task_is_rejected(
    cluster: Cluster, tmp_path: Path
) -> None:
    c = cluster
    await asyncio.to_thread(c.join, "w1", driver="hollow")
    await asyncio.to_thread(_create, c, "web", "--constraint", "node.hostname==w1")
    await asyncio.to_thread(wait_for, lambda: _running_on(c, "web") == ["w1"], 15, "running")
    (task,) = _live(c, "web")
    rogue = await enroll_identity(tmp_path / "rogue", c.enroll_port, c.token("worker"))
    topics = Topics(c.info(c.manager)["cluster_id"])
    before = c.info(c.manager)["rejected_reasons"]
    forged = {"tasks": [{"task_id": task["id"], "state": "failed", "err": "forged"}]}
    async with as_client(rogue, c.port) as client:
        # its own status topic, about someone else's task
        await client.publish(
            topics.node_status(rogue.node_id),
            encode(Envelope("status", rogue.node_id, 1, forged)),
            qos=1,
        )
        # someone else's status topic: the broker refuses it silently
        await client.publish(
            topics.node_status(task["node_id"]),
            encode(Envelope("status", rogue.node_id, 2, forged)),
            qos=1,
        )
    key = "status for a task not assigned to this node"
    await asyncio.to_thread(
        wait_for,
        lambda: c.info(c.manager)["rejected_reasons"].get(key, 0) > before.get(key, 0),
        10,
        "the rejection counted",
    )
    (after,) = _live(c, "web")
    assert after["id"] == task["id"] and after["state"] == "running" and after["error"] == ""


async def test_services_are_published_as_retained_json(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    await asyncio.to_thread(c.join, "w1", driver="hollow")
    await asyncio.to_thread(
        _create, c, "web", "--replicas", "2", "--constraint", "node.hostname==w1"
    )
    await asyncio.to_thread(wait_for, lambda: len(_running_on(c, "web")) == 2, 15, "two running")
    mon = tmp_path / "mon"
    shoal("cert", "issue", "monitor", "--out", str(mon), data=c.manager)
    topics = Topics(c.info(c.manager)["cluster_id"])
    service_id = _service_row(c, "web")["id"]

    async def doc() -> dict[str, Any]:
        async with mqtt(
            c.port, ca=mon / "ca.pem", cert=mon / "cert.pem", key=mon / "key.pem"
        ) as client:
            await client.subscribe(topics.mon("service", service_id), qos=1)
            got = dict(await collect(client, 1.0, retained=True))
        raw = got.get(topics.mon("service", service_id), b"")
        return dict(json.loads(raw)) if raw else {}

    deadline = asyncio.get_running_loop().time() + 10
    while (d := await doc()).get("replicas") != "2/2":
        assert asyncio.get_running_loop().time() < deadline, d
    assert d["name"] == "web" and d["mode"] == "replicated"
    assert sorted(t["name"] for t in d["tasks"]) == ["web.1", "web.2"]
    assert all(t["node"] == "w1" and t["state"] == "running" for t in d["tasks"])
    shoal("service", "rm", "web", data=c.manager)
    deadline = asyncio.get_running_loop().time() + 10
    while await doc():
        assert asyncio.get_running_loop().time() < deadline, "the retained document cleared"


def test_service_logs_come_from_the_nodes_that_run_the_tasks(cluster: Cluster) -> None:
    c = cluster
    c.join("w1", driver="process")
    shoal(
        "service",
        "create",
        "--detach",
        "--name",
        "talk",
        "--replicas",
        "2",
        "--constraint",
        "node.hostname==w1",
        "/bin/sh",
        "-c",
        'echo "hello $0"; sleep 600',
        data=c.manager,
    )
    wait_for(lambda: len(_running_on(c, "talk")) == 2, 15, "two tasks running")

    def logs() -> str:
        return shoal("service", "logs", "talk", data=c.manager).stdout

    out = wait_for(lambda: logs().count("hello") == 2 and logs(), 15, "both tasks' output")
    lines = out.splitlines()
    assert len(lines) == 2 and all("@w1    | hello" in line for line in lines), out
    assert {line.split(".")[1] for line in lines} == {"1", "2"}  # talk.<slot>.<task>@node
    raw = shoal("service", "logs", "--raw", "--tail", "1", "talk", data=c.manager).stdout
    assert raw.count("hello") == 2 and "|" not in raw, raw


def test_a_node_restarts_its_tasks_itself_while_no_manager_answers(cluster: Cluster) -> None:
    c = cluster
    w = c.join("w1", "worker", "process", "--heartbeat", "1s")
    _create(
        c,
        "crasher",
        "--restart-delay",
        "200ms",
        "--constraint",
        "node.hostname==w1",
        image="/bin/false",
    )
    wait_for(lambda: any(t["state"] == "failed" for t in _tasks(c, "crasher")), 20, "a failure")
    # managers replace failed tasks while they answer: the node restarts nothing itself
    assert all(r == 0 for r in c.info(w)["restarts"].values())
    # the manager dies; its broker lives on, so the node stays connected but hears no leader
    broker = c.info(c.manager)["broker_pid"]
    os.kill(int((c.manager / "shoal.pid").read_text()), signal.SIGKILL)
    try:
        wait_for(lambda: any(r >= 2 for r in c.info(w)["restarts"].values()), 30, "local restarts")
        assert c.info(w)["connected"]
        os.kill(broker, 0)  # the broker still runs
    finally:
        os.kill(broker, signal.SIGKILL)  # no daemon is left to stop it


def test_services_without_a_name_get_distinct_generated_ones(cluster: Cluster) -> None:
    c = cluster
    c.join("w1", driver="hollow")
    for _ in range(3):
        shoal("service", "create", "--detach", "shoal/busybox:latest", data=c.manager)
    out = shoal("service", "ls", "--format", "{{.Name}}", data=c.manager).stdout
    names = out.split()
    assert len(names) == 3 and len(set(names)) == 3, names
    # a given name that is taken is an error, not a retry under another name
    proc = shoal(
        "service",
        "create",
        "--detach",
        "--name",
        names[0],
        "shoal/busybox:latest",
        data=c.manager,
        check=False,
    )
    assert proc.returncode == 1 and f"service {names[0]} already exists" in proc.stderr


def test_host_mode_ports_show_on_their_tasks_and_keep_tasks_apart(cluster: Cluster) -> None:
    c = cluster
    c.join("w1", driver="hollow")
    c.join("w2", driver="hollow")
    _create(
        c,
        "edge",
        "--replicas",
        "3",
        "--constraint",
        "node.role==worker",
        "-p",
        "published=8081,target=80,mode=host",
    )
    wait_for(lambda: len(_running_on(c, "edge")) == 2, 15, "one task per worker")
    tasks = _live(c, "edge")
    assert sorted(t["ports"] for t in tasks if t["state"] == "running") == [
        "*:8081->80/tcp",
        "*:8081->80/tcp",
    ]
    (pending,) = [t for t in tasks if t["state"] == "pending"]
    assert "host-mode port already in use" in pending["message"], pending["message"]


def test_networks_get_subnets_and_cannot_go_while_services_use_them(cluster: Cluster) -> None:
    c = cluster
    c.join("w1", driver="hollow")
    shoal("network", "create", "backend", data=c.manager)
    shoal("network", "create", "--subnet", "10.20.0.0/24", "front", data=c.manager)
    rows = {
        r["name"]: r
        for r in map(
            json.loads,
            shoal("network", "ls", "--format", "json", data=c.manager).stdout.splitlines(),
        )
    }
    assert rows["backend"]["subnet"] == "10.0.1.0/24" and rows["front"]["subnet"] == "10.20.0.0/24"
    proc = shoal(
        "network",
        "create",
        "--subnet",
        "10.20.0.128/25",
        "overlapping",
        data=c.manager,
        check=False,
    )
    assert proc.returncode == 1 and "overlap" in proc.stderr, proc.stderr
    proc = shoal("network", "create", "backend", data=c.manager, check=False)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    # a service must name networks that exist
    proc = shoal(
        "service",
        "create",
        "--detach",
        "--name",
        "api",
        "--network",
        "nowhere",
        "shoal/busybox:latest",
        data=c.manager,
        check=False,
    )
    assert proc.returncode == 1 and "network nowhere not found" in proc.stderr
    _create(c, "api", "--network", "backend")
    proc = shoal("network", "rm", "backend", data=c.manager, check=False)
    assert proc.returncode == 1 and "in use by the following service(s): api" in proc.stderr
    shoal("service", "rm", "api", data=c.manager)
    shoal("network", "rm", "backend", "front", data=c.manager)
    assert shoal("network", "ls", "-q", data=c.manager).stdout.strip() == "ingress"


def test_the_ingress_network_can_be_replaced_while_no_service_publishes(cluster: Cluster) -> None:
    c = cluster
    c.join("w1", driver="hollow")
    shoal("network", "create", "--ingress", "--subnet", "10.77.0.0/16", "edge-mesh", data=c.manager)
    (row,) = json.loads(shoal("network", "inspect", "edge-mesh", data=c.manager).stdout)
    assert row["Id"] == "ingress" and row["Ingress"] is True
    assert row["IPAM"]["Config"][0]["Subnet"] == "10.77.0.0/16"
    _create(c, "web", "-p", "8088:80", "--constraint", "node.role==worker")
    wait_for(lambda: _running_on(c, "web") == ["w1"], 15, "web running")
    (inspected,) = json.loads(shoal("service", "inspect", "web", data=c.manager).stdout)
    (vip,) = inspected["Endpoint"]["VirtualIPs"]
    assert vip["NetworkID"] == "ingress" and vip["Addr"].startswith("10.77.0."), vip
    for args, why in (
        (("network", "rm", "edge-mesh"), "in use by the following service(s): web"),
        (("network", "create", "--ingress", "again"), "an ingress network exists already"),
        (("service", "create", "--name", "x", "--network", "edge-mesh", "shoal/busybox:latest"),
         "services cannot name it"),
    ):  # fmt: skip
        proc = shoal(*args, data=c.manager, check=False)
        assert proc.returncode == 1 and why in proc.stderr, proc.stderr
    shoal("service", "rm", "web", data=c.manager)
    shoal("network", "rm", "edge-mesh", data=c.manager)
    (back,) = json.loads(shoal("network", "inspect", "ingress", data=c.manager).stdout)
    assert back["IPAM"]["Config"][0]["Subnet"] == "10.254.0.0/16"  # the default again


def test_inspect_prints_docker_s_shape_for_templates_pretty_and_any_object(
    cluster: Cluster,
) -> None:
    c = cluster
    c.join("w1", driver="process")
    shoal("node", "update", "--label-add", "zone=east", "w1", data=c.manager)
    shoal("service", "create", "--detach", "--name", "web", "--replicas", "1",
          "--publish", "published=8089,target=80,mode=host", "--constraint", "node.role==worker",
          "/bin/sleep", "1000", data=c.manager)  # fmt: skip
    wait_for(lambda: _running_on(c, "web") == ["w1"], 30, "the task running on w1")

    def fmt(kind: str, ref: str, template: str) -> str:
        return shoal(kind, "inspect", "--format", template, ref, data=c.manager).stdout.strip()

    assert fmt("node", "w1", "{{.Spec.Labels}}") == "map[zone:east]"
    assert fmt("service", "web", "{{.Spec.Mode.Replicated.Replicas}}") == "1"
    assert fmt("service", "web", "{{.Spec.TaskTemplate.ContainerSpec.Image}}") == "/bin/sleep"
    pretty = shoal("service", "inspect", "--pretty", "web", data=c.manager).stdout
    for line in (
        "Name:\t\tweb",
        " Replicas:\t1",
        " Constraints:\t[node.role==worker]",
        " Image:\t\t/bin/sleep",
        " Args:\t\t1000 ",
        " PublishedPort = 8089",
        "  PublishMode = host",
    ):
        assert line in pretty.splitlines(), pretty
    (service,) = json.loads(shoal("service", "inspect", "web", data=c.manager).stdout)
    assert service["Version"]["Index"] > 0 and service["CreatedAt"].endswith("Z")
    assert service["Endpoint"]["Ports"][0]["PublishedPort"] == 8089
    task_id = _live(c, "web")[0]["id"]
    (task,) = json.loads(shoal("inspect", task_id, data=c.manager).stdout)
    assert (task["ID"], task["ServiceID"], task["DesiredState"]) == (
        task_id,
        service["ID"],
        "running",
    )
    assert task["Status"]["State"] == "running"
    proc = shoal("inspect", "web", "no-such-thing", data=c.manager, check=False)
    assert proc.returncode == 1 and "No such object: no-such-thing" in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)[0]["Spec"]["Name"] == "web"  # what was found is printed
