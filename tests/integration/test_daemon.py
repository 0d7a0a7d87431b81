"""The node daemon keeps itself and the embedded broker alive: certificate renewal without a
token, and a broker that is restarted when it dies."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from certs import Identity, Role, load_cert
from tests.harness import Cluster, new_cluster, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def short_lived(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster whose certificates live 10 seconds, so renewal happens within the test."""
    with new_cluster(tmp_path, "--cert-expiry", "10s") as (c, _):
        yield c


def test_certificates_renew_on_their_own_and_keep_their_role(short_lived: Cluster) -> None:
    c = short_lived
    w = c.join("w1")
    first = c.info(w)
    wait_for(lambda: c.info(w)["cert_serial"] != first["cert_serial"], 15, "a renewal")
    wait_for(lambda: c.info(w)["connected"], 5, "reconnecting with the new certificate")
    ident = Identity.from_cert(load_cert((w / "tls/node.pem").read_bytes()))
    assert ident.node_id == first["node_id"]
    assert ident.role is Role.WORKER
    # renewal happened before expiry: the node never dropped out of the swarm's view
    mgr_first = first
    assert mgr_first["cert_not_after"] != c.info(w)["cert_not_after"]
    assert {n["hostname"]: n["status"] for n in c.node_ls()}["w1"] == "ready"


def test_embedded_broker_is_restarted_when_it_dies(cluster: Cluster) -> None:
    w = cluster.join("w1")
    pid = cluster.info(cluster.manager)["broker_pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: cluster.info(cluster.manager)["broker_pid"] not in (None, pid),
        10,
        "a new broker process",
    )
    wait_for(lambda: cluster.info(cluster.manager)["connected"], 10, "the manager to reconnect")
    wait_for(lambda: cluster.info(w)["connected"], 20, "the worker to reconnect")
    assert cluster.info(w)["connects"] >= 2


def test_the_daemon_ignores_sigpipe_so_a_closed_peer_cannot_end_it(cluster: Cluster) -> None:
    # A write to a connection its peer closed (the routing mesh does many) must fail on that
    # socket with EPIPE, not kill the node: SIGPIPE stays ignored, as Python sets it.
    pid = int((cluster.manager / "shoal.pid").read_text())
    status = Path(f"/proc/{pid}/status").read_text()
    ignored = int(
        next(line for line in status.splitlines() if line.startswith("SigIgn:")).split()[1], 16
    )
    assert ignored & (1 << (signal.SIGPIPE - 1)), status
