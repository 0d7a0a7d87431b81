"""A real 3-server NATS cluster configured by broker.nats_conf, with certificates from shoal's
own CA, reached by MQTT clients over mutual TLS."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from certs import Role, new_node_id
from tests.broker.nats_support import (
    NATS,
    TIMEOUT,
    NatsCluster,
    identity,
    running_nats_cluster,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(not Path(NATS).exists(), reason="nats-server is not installed"),
]


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    with running_nats_cluster(tmp_path_factory.mktemp("nats")) as cluster:
        yield cluster


async def _subscribe(client: aiomqtt.Client, topic: str) -> int:
    """Subscribe at QoS 1; the granted QoS, or 0x80 for a refusal."""
    (code,) = await client.subscribe(topic, qos=1)
    return int(getattr(code, "value", code))


async def _next(client: aiomqtt.Client, timeout: float = TIMEOUT) -> aiomqtt.Message:
    async def first() -> aiomqtt.Message:
        async for message in client.messages:
            return message
        raise AssertionError("the connection ended")

    return await asyncio.wait_for(first(), timeout)


async def test_a_node_talks_to_a_manager_on_another_server_at_qos1(
    nats_cluster: NatsCluster,
) -> None:
    c, node = nats_cluster, nats_cluster.nodes[0]
    async with c.client(c.manager, 2) as manager, c.client(node, 0) as worker:
        assert await _subscribe(manager, c.topics.node_status(node.id)) == 1
        assert await _subscribe(worker, c.topics.node_assign(node.id)) == 1
        await worker.publish(c.topics.node_status(node.id), b"task t1 running", qos=1)
        got = await _next(manager)
        assert (got.topic.value, got.payload) == (c.topics.node_status(node.id), b"task t1 running")
        await manager.publish(c.topics.node_assign(node.id), b"tasks v2", qos=1)
        got = await _next(worker)
        assert (got.topic.value, got.payload) == (c.topics.node_assign(node.id), b"tasks v2")


async def test_a_retained_state_reaches_a_late_subscriber_on_another_server(
    nats_cluster: NatsCluster,
) -> None:
    c, node = nats_cluster, nats_cluster.nodes[1]
    topic = c.topics.node_state(node.id)
    async with c.client(node, 0) as worker:
        await worker.publish(topic, b"ready", qos=1, retain=True)
    async with c.client(c.manager, 1) as manager:
        # the retained message reaches the other servers' views shortly after it is stored
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while True:
            await manager.subscribe(topic, qos=1)
            with contextlib.suppress(TimeoutError):
                got = await _next(manager, timeout=1.0)
                break
            await manager.unsubscribe(topic)
            assert asyncio.get_running_loop().time() < deadline, "no retained message"
        assert (got.payload, got.retain) == (b"ready", True)


async def test_a_node_cannot_read_another_nodes_topics(nats_cluster: NatsCluster) -> None:
    c, a, b = nats_cluster, nats_cluster.nodes[0], nats_cluster.nodes[1]
    async with c.client(b, 2) as intruder, c.client(c.manager, 0) as manager:
        assert await _subscribe(intruder, c.topics.node_assign(a.id)) == 0x80
        assert await _subscribe(intruder, c.topics.all_nodes("assign")) == 0x80
        # where NATS delivers QoS 1 subscriptions: readers may subscribe there, MQTT clients not
        assert await _subscribe(intruder, "$MQTT/sub/#") == 0x80
        assert await _subscribe(intruder, c.topics.node_assign(b.id)) == 1
        await manager.publish(c.topics.node_assign(a.id), b"secret of a", qos=1)
        await manager.publish(c.topics.node_assign(b.id), b"for b", qos=1)
        got = await _next(intruder)
        assert (got.topic.value, got.payload) == (c.topics.node_assign(b.id), b"for b")


async def test_a_monitor_cannot_publish(nats_cluster: NatsCluster) -> None:
    c = nats_cluster
    topic = c.topics.mon("node", c.nodes[0].id)
    async with c.client(c.manager, 1) as reader, c.client(c.monitor, 1) as monitor:
        assert await _subscribe(reader, topic) == 1
        # NATS acknowledges a forbidden QoS 1 publish and drops it: had it been stored, it
        # would come before the manager's, which is published after that acknowledgement
        await monitor.publish(topic, b"forged", qos=1)
        await reader.publish(topic, b"genuine", qos=1)
        got = await _next(reader)
        assert got.payload == b"genuine"


async def _reload(c: NatsCluster, users: list[dict[str, Any]]) -> None:
    for i in range(len(c.servers)):
        c.files(i).config.write_text(c.config(i, users))
        signal_reload = await asyncio.create_subprocess_exec(
            NATS, "--signal", f"reload={c.files(i).pid}"
        )
        assert await asyncio.wait_for(signal_reload.wait(), 10) == 0


async def test_a_node_added_to_the_users_may_connect_after_a_reload_and_is_cut_off_when_removed(
    nats_cluster: NatsCluster,
) -> None:
    c = nats_cluster
    newcomer = identity(c.authority, c.root, new_node_id(), Role.WORKER)
    topic = c.topics.node_state(newcomer.id)
    with pytest.raises(aiomqtt.MqttError):
        async with c.client(newcomer, 0):
            pass
    await _reload(c, c.users([newcomer.id]))
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    for server in range(len(c.servers)):
        while True:
            try:
                async with c.client(newcomer, server) as client:
                    await client.publish(topic, b"ready", qos=1)
                break
            except aiomqtt.MqttError:
                assert asyncio.get_running_loop().time() < deadline, f"server {server} refuses"
                await asyncio.sleep(0.2)
    async with c.client(newcomer, 1) as client:
        await _reload(c, c.users())
        with pytest.raises(aiomqtt.MqttError):
            while asyncio.get_running_loop().time() < deadline:
                await client.publish(topic, b"still here", qos=1)
                await asyncio.sleep(0.2)


def test_mqtt_sessions_and_messages_are_kept_on_all_three_servers(
    nats_cluster: NatsCluster,
) -> None:
    logs = [nats_cluster.files(i).log.read_text() for i in range(len(nats_cluster.servers))]
    created = [line for log in logs for line in log.splitlines() if "Creating MQTT streams" in line]
    assert created, "no server created the MQTT streams"
    assert all("with replicas 3 " in line for line in created), created


_NODE_WITH_A_WILL = """
import asyncio, sys, aiomqtt
from broker.tls import client_context
ca, cert, key, port, node, topic = sys.argv[1:]
async def main():
    will = aiomqtt.Will(topic, b"down", qos=1, retain=True)
    async with aiomqtt.Client("127.0.0.1", int(port), identifier=node, will=will,
            tls_context=client_context(ca, cert, key), protocol=aiomqtt.ProtocolVersion.V311):
        print("connected", flush=True)
        await asyncio.sleep(60)
asyncio.run(main())
"""


async def test_a_killed_nodes_will_reaches_a_manager_on_another_server(
    nats_cluster: NatsCluster,
) -> None:
    c, node = nats_cluster, nats_cluster.nodes[0]
    topic = c.topics.node_state(node.id)
    async with c.client(c.manager, 2) as manager:
        assert await _subscribe(manager, topic) == 1
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _NODE_WITH_A_WILL,
            *(str(x) for x in (c.ca, node.cert, node.key, c.ports[0], node.id, topic)),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
            assert line == b"connected\n"
        finally:
            proc.kill()
            await proc.wait()
        got = await _next(manager)
        assert (got.topic.value, got.payload) == (topic, b"down")
