"""A session names why a connect attempt failed by probing the broker, and that probe never
costs it the connection it has meanwhile: against the real embedded mosquitto, which takes
the client id from the certificate, an MQTT CONNECT from the probe would take over the node's
session (the broker cuts the live connection and wipes the session's subscriptions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.servers import Address
from broker.session import Session, SessionConfig
from broker.tls import client_context
from broker.topics import Topics
from certs import ClusterCA, Role, make_csr, new_node_id, new_private_key
from tests.harness import Cluster
from tests.integration.mqtt import write_ident

pytestmark = pytest.mark.integration


async def test_the_probe_of_a_failed_attempt_leaves_the_next_connection_up(
    cluster: Cluster, tmp_path: Path
) -> None:
    ca = ClusterCA.load(cluster.ca_dir)
    key = new_private_key()
    node = new_node_id()
    cert = ca.issue(make_csr(key), node_id=node, role=Role.WORKER)
    ident = write_ident(tmp_path / "w", node, cert, key, cluster.ca_file)
    topics = Topics(cluster.info(cluster.manager)["cluster_id"])
    session = Session(
        SessionConfig(
            client_id=node,
            sender=node,
            tls=lambda: client_context(ident.ca, ident.cert, ident.key),
            host="127.0.0.1",
            port=cluster.port,
            clean_session=False,
        )
    )
    session.start()
    try:
        await session.wait_connected(10)
        assert session.connects == 1
        # an earlier attempt timed out; its diagnosis reaches the broker once this one is up
        session._diagnose(TimeoutError("Operation timed out"), Address("127.0.0.1", cluster.port))
        assert session._diagnosis is not None
        await session._diagnosis
        # a QoS 1 round trip after the probe: acknowledged on the same connection
        await session.publish(topics.node_status(node), b"x", timeout=10)
        assert session.connects == 1, "the probe took over the session"
        assert session.connected
        assert session.last_error is None  # the connection is up: no stale failure shown
    finally:
        await session.close()
