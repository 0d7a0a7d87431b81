"""A session fails over among the servers of a real 3-server NATS cluster when the one it
uses is killed (kill -9), and a QoS 1 message in flight across the kill still arrives."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from broker.errors import NotConnected
from broker.servers import start_index
from broker.session import Session, SessionConfig
from broker.tls import client_context
from tests.broker.nats_support import (
    NATS,
    TIMEOUT,
    Identity,
    NatsCluster,
    running_nats_cluster,
    wait_until_serving,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(not Path(NATS).exists(), reason="nats-server is not installed"),
]
FAILOVER_WITHIN = 10.0


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    with running_nats_cluster(tmp_path_factory.mktemp("nats")) as cluster:
        yield cluster


@contextlib.asynccontextmanager
async def session_of(c: NatsCluster, who: Identity) -> AsyncIterator[Session]:
    session = Session(
        SessionConfig(
            addresses=tuple(f"127.0.0.1:{port}" for port in c.ports),
            client_id=who.id,
            sender=who.id,
            tls=lambda: client_context(c.ca, who.cert, who.key),
            connect_timeout=5.0,
        )
    )
    session.start()
    try:
        await session.wait_connected(TIMEOUT)
        yield session
    finally:
        await session.close()


@contextlib.asynccontextmanager
async def killed(c: NatsCluster, server: int) -> AsyncIterator[float]:
    """kill -9 a server; when it was killed. It is started again after, and serving."""
    c.kill(server)
    try:
        yield time.monotonic()
    finally:
        c.start(server)
        await wait_until_serving(c)


async def until(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        await asyncio.sleep(0.02)


def port_of(c: NatsCluster, session: Session) -> int:
    assert session.connected_to is not None
    return session.connected_to.port


async def test_a_session_first_tries_the_server_its_client_id_hashes_to(
    nats_cluster: NatsCluster, caplog: pytest.LogCaptureFixture
) -> None:
    c = nats_cluster
    for who in (c.nodes[0], c.nodes[1], c.manager):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="shoal.session"):
            async with session_of(c, who):
                pass
        # the first attempt either connects there or leaves it (NATS sometimes holds a
        # connect until its JetStream settles, and the session then moves on)
        first = next(r.getMessage() for r in caplog.records if r.name == "shoal.session")
        hashed = f"127.0.0.1:{c.ports[start_index(who.id, 3)]}"
        assert first == f"connected to {hashed}" or first.startswith(f"left {hashed} (")


async def test_a_session_fails_over_to_the_next_server_within_seconds_of_a_kill(
    nats_cluster: NatsCluster,
) -> None:
    c, node = nats_cluster, nats_cluster.nodes[0]
    async with session_of(c, node) as session:
        first = c.ports.index(port_of(c, session))
        async with killed(c, first) as at:
            await until(
                lambda: session.connected and port_of(c, session) != c.ports[first],
                FAILOVER_WITHIN,
                "connected to another server",
            )
            print(f"failover took {time.monotonic() - at:.2f} s")  # for docs/operations.md


async def test_a_qos1_publish_in_flight_across_a_kill_reaches_a_subscriber_on_another_server(
    nats_cluster: NatsCluster,
) -> None:
    c, node = nats_cluster, nats_cluster.nodes[1]
    topic = c.topics.node_status(node.id)
    async with session_of(c, node) as session:
        start = c.ports.index(port_of(c, session))
        async with c.client(c.manager, (start + 2) % 3) as manager:
            (granted,) = await manager.subscribe(topic, qos=1)
            assert int(getattr(granted, "value", granted)) == 1
            # the server stops answering with the message on its way, then dies: no PUBACK
            c.procs[start].send_signal(signal.SIGSTOP)
            publish = asyncio.create_task(session.publish(topic, b"task t1 running", timeout=30))
            await asyncio.sleep(0.3)
            assert not publish.done(), "acknowledged by a stopped server"
            async with killed(c, start):
                await asyncio.wait_for(publish, 30)
                assert port_of(c, session) != c.ports[start]

                async def first() -> bytes:
                    async for message in manager.messages:
                        return bytes(message.payload)  # type: ignore[arg-type]
                    raise AssertionError("the subscriber's connection ended")

                assert await asyncio.wait_for(first(), TIMEOUT) == b"task t1 running"


async def test_a_qos1_publish_fails_only_when_its_timeout_passes_with_no_server_up(
    nats_cluster: NatsCluster,
) -> None:
    c, node = nats_cluster, nats_cluster.nodes[0]
    async with session_of(c, node) as session:
        for server in range(3):
            c.procs[server].send_signal(signal.SIGSTOP)
        try:
            began = time.monotonic()
            with pytest.raises(NotConnected):
                await session.publish(c.topics.node_status(node.id), b"lost", timeout=2.0)
            assert 1.9 <= time.monotonic() - began < 4.0
        finally:
            for server in range(3):
                c.procs[server].send_signal(signal.SIGCONT)
