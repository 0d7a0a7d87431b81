"""A monitoring certificate is read-only at the broker: it cannot write any topic of the tree,
whether the topic names its own id, another node's, a manager's or an admin's. Against the real
embedded mosquitto started by `shoal swarm init`; a manager-identity watcher subscribed to the
whole tree is the judge (denials are silent: a QoS 1 publish is acknowledged all the same)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from broker import topics as topic_tree
from broker.topics import Topics, enroll_req, enroll_resp
from tests.harness import Cluster, shoal
from tests.integration.mqtt import Ident, as_client, collect, enroll_identity

pytestmark = pytest.mark.integration

# every topic builder of the tree, with the ids it takes (a new builder must be added here)
_BUILDERS: dict[str, Callable[[Topics, str], list[str]]] = {
    "node_state": lambda t, x: [t.node_state(x)],
    "node_status": lambda t, x: [t.node_status(x)],
    "node_req": lambda t, x: [t.node_req(x)],
    "node_resp": lambda t, x: [t.node_resp(x)],
    "node_assign": lambda t, x: [t.node_assign(x)],
    "node_net": lambda t, x: [t.node_net(x)],
    "node_logs": lambda t, x: [t.node_logs(x, x), t.node_logs(x, "m-other")],
    "node": lambda t, x: [t.node(x, "state"), t.node(x, "other")],
    "mgr_raft": lambda t, x: [t.mgr_raft(x)],
    "mgr_req": lambda t, x: [t.mgr_req(x)],
    "ctl": lambda t, x: [t.ctl(x, "req")],
    "stack_ctl": lambda t, x: [t.stack_ctl(x, "web", "deploy"), t.stack_ctl(x, "web", "rm")],
    "stack_result": lambda t, x: [t.stack_result(x, "web")],
    "mon": lambda t, x: [
        t.mon("node", x),
        t.mon("node", x, "description"),
        t.mon("node", x, "tasks"),
        t.mon("service", x),
        t.mon("broker"),
        t.mon("events"),
    ],
    "enroll_req": lambda t, x: [enroll_req(x)],
    "enroll_resp": lambda t, x: [enroll_resp(x)],
    "discovery_config": lambda t, x: [
        t.discovery_config("homeassistant", "sensor", f"node_{x}_status")
    ],
}


_NOT_BUILDERS = (
    *("node_of", "logs_node_of", "parse_stack_ctl", "all_nodes", "logs_for"),
    *("discovery_configs", "discovery_tree"),
)
# (parsers and filters)


def _tree_builders() -> set[str]:
    """The names of every function and method of broker/topics.py that spells a topic."""
    methods = {
        name
        for name, fn in inspect.getmembers(Topics, inspect.isfunction)
        if not name.startswith("_") and name not in _NOT_BUILDERS
    }
    return methods | {"enroll_req", "enroll_resp"}


def test_the_forged_topics_cover_every_builder_of_the_topic_tree() -> None:
    assert set(_BUILDERS) == _tree_builders()
    assert set(topic_tree.__all__) >= {"enroll_req", "enroll_resp"}


def _every_topic(t: Topics, ids: list[str]) -> list[str]:
    return sorted({topic for build in _BUILDERS.values() for x in ids for topic in build(t, x)})


def _issue(cluster: Cluster, role: str, out: Path) -> Ident:
    ident_id = shoal("cert", "issue", role, "--out", str(out), data=cluster.manager).stdout
    return Ident(ident_id.splitlines()[0], out / "cert.pem", out / "key.pem", out / "ca.pem")


async def _collect_until(
    client: aiomqtt.Client, topic: str, timeout: float
) -> list[tuple[str, bytes]]:
    """Every live message until one arrives on `topic` (which must)."""
    got: list[tuple[str, bytes]] = []

    async def read() -> None:
        async for m in client.messages:
            if not m.retain:
                got.append((m.topic.value, bytes(m.payload)))  # type: ignore[arg-type]
                if m.topic.value == topic:
                    return

    await asyncio.wait_for(read(), timeout)
    return got


async def test_a_monitor_cannot_write_any_topic_of_the_tree(
    cluster: Cluster, tmp_path: Path
) -> None:
    info = cluster.info(cluster.manager)
    t = Topics(info["cluster_id"])
    mon = await asyncio.to_thread(_issue, cluster, "monitor", tmp_path / "mon")
    adm = await asyncio.to_thread(_issue, cluster, "admin", tmp_path / "adm")
    worker = await enroll_identity(tmp_path / "w", cluster.enroll_port, cluster.token("worker"))
    judge = await enroll_identity(tmp_path / "j", cluster.enroll_port, cluster.token("manager"))
    ids = [mon.node_id, worker.node_id, info["node_id"], judge.node_id, adm.node_id, "n-unknown"]
    forged = _every_topic(t, ids)
    assert len(forged) > 80
    async with as_client(judge, cluster.port) as watcher:
        await watcher.subscribe(t.base + "/#", qos=1)
        await watcher.subscribe("shoal/enroll/#", qos=1)
        await watcher.subscribe(t.discovery_configs("homeassistant"), qos=1)
        async with as_client(mon, cluster.port) as m:
            for qos in (0, 1):  # QoS 0 first: the QoS 1 acks then prove the broker read them
                for retain in (False, True):
                    for topic in forged:
                        await m.publish(topic, b"forged", qos=qos, retain=retain)
        # the positive control: a worker's legitimate publish reaches the watcher
        async with as_client(worker, cluster.port) as w:
            await w.publish(t.node_status(worker.node_id), b"mine", qos=1)
        got = await _collect_until(watcher, t.node_status(worker.node_id), 10.0)
    assert got[-1] == (t.node_status(worker.node_id), b"mine")
    assert [topic for topic, payload in got if payload == b"forged"] == []
    # nothing forged was retained either: a new subscriber finds none of it
    async with as_client(judge, cluster.port) as late:
        await late.subscribe(t.base + "/#", qos=1)
        await late.subscribe("shoal/enroll/#", qos=1)
        await late.subscribe(t.discovery_configs("homeassistant"), qos=1)
        retained = await collect(late, 1.5, retained=True)
    assert [topic for topic, payload in retained if payload == b"forged"] == []
    # and the managers saw no fake node
    assert sorted(n["id"] for n in cluster.node_ls()) == sorted(
        [info["node_id"], worker.node_id, judge.node_id]
    )
