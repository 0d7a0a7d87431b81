"""A real 3-server NATS cluster configured by broker.nats_conf, with certificates from shoal's
own CA, reached by MQTT clients over mutual TLS: what the tests under tests/broker that need
one share (`running_nats_cluster`)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from broker.nats_conf import NatsFiles, NatsServer, nats_users, render_nats_config
from broker.tls import client_context
from broker.topics import Topics
from certs import (
    ClusterCA,
    Role,
    key_to_pem,
    make_csr,
    new_cluster_id,
    new_monitor_id,
    new_node_id,
    new_private_key,
)
from tests.harness import free_ports

NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"
TIMEOUT = 15.0


@dataclass(frozen=True)
class Identity:
    id: str
    cert: Path
    key: Path


@dataclass(frozen=True)
class NatsCluster:
    topics: Topics
    ca: Path
    ports: list[int]
    manager: Identity
    nodes: list[Identity]
    monitor: Identity
    authority: ClusterCA
    root: Path
    servers: list[NatsServer]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    """The servers' processes, in the order of `servers`."""

    def users(self, extra_nodes: Sequence[str] = ()) -> list[dict[str, Any]]:
        return nats_users(
            self.topics,
            managers=[self.manager.id],
            nodes=[*(n.id for n in self.nodes), *extra_nodes],
            monitors=[self.monitor.id],
        )

    def start(self, i: int) -> None:
        """Start server `i` (again, after a kill) from its files."""
        files = self.files(i)
        proc = subprocess.Popen(
            [NATS, "-c", str(files.config)],
            stdout=subprocess.DEVNULL,
            stderr=(files.directory / "stderr").open("ab"),
        )
        if i < len(self.procs):
            self.procs[i] = proc
        else:
            self.procs.append(proc)

    def kill(self, i: int) -> None:
        """kill -9 server `i` and wait for it to be gone."""
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(10)

    def files(self, i: int) -> NatsFiles:
        return NatsFiles(self.root / f"s{i}")

    def config(self, i: int, users: list[dict[str, Any]]) -> str:
        cluster_id = self.topics.cluster_id
        return render_nats_config(
            self.files(i), self.servers, i, cluster_id=cluster_id, users=users
        )

    @contextlib.asynccontextmanager
    async def client(
        self, who: Identity, server: int, timeout: float = TIMEOUT
    ) -> AsyncIterator[aiomqtt.Client]:
        ctx = client_context(self.ca, who.cert, who.key)
        async with aiomqtt.Client(
            "127.0.0.1",
            self.ports[server],
            identifier=who.id,
            tls_context=ctx,
            protocol=aiomqtt.ProtocolVersion.V311,
            timeout=timeout,
        ) as client:
            yield client


def identity(ca: ClusterCA, root: Path, node_id: str, role: Role) -> Identity:
    key = new_private_key()
    cert = ca.issue(make_csr(key), node_id=node_id, role=role)
    (root / f"{node_id}.pem").write_bytes(cert)
    (root / f"{node_id}-key.pem").write_bytes(key_to_pem(key))
    return Identity(node_id, root / f"{node_id}.pem", root / f"{node_id}-key.pem")


def write_server(ca: ClusterCA, files: NatsFiles, config: str) -> None:
    files.directory.mkdir(parents=True)
    key = new_private_key()
    files.server_key.write_bytes(key_to_pem(key))
    files.server_chain.write_bytes(ca.issue_server_cert(key, ["127.0.0.1"], client_auth=True))
    files.ca.write_bytes(ca.cert_pem)
    files.config.write_text(config)


async def wait_until_serving(cluster: NatsCluster) -> None:
    """Every server accepts an MQTT session (which needs the JetStream cluster formed)."""
    for server in range(len(cluster.ports)):
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            try:
                async with cluster.client(cluster.manager, server, timeout=2.0):
                    break
            except aiomqtt.MqttError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)


@contextlib.contextmanager
def running_nats_cluster(root: Path) -> Iterator[NatsCluster]:
    """Three servers on free loopback ports, serving MQTT when this yields; all killed after."""
    ca = ClusterCA.create(new_cluster_id())
    topics = Topics(ca.cluster_id)
    ports = free_ports(9)
    servers = [
        NatsServer(f"s{i}", "127.0.0.1", ports[3 * i], ports[3 * i + 1], ports[3 * i + 2])
        for i in range(3)
    ]
    cluster = NatsCluster(
        topics,
        root / "ca.pem",
        [s.mqtt_port for s in servers],
        manager=identity(ca, root, new_node_id(), Role.MANAGER),
        nodes=[identity(ca, root, new_node_id(), Role.WORKER) for _ in range(2)],
        monitor=identity(ca, root, new_monitor_id(), Role.MONITOR),
        authority=ca,
        root=root,
        servers=servers,
    )
    (root / "ca.pem").write_bytes(ca.cert_pem)
    try:
        for i in range(3):
            write_server(ca, cluster.files(i), cluster.config(i, cluster.users()))
            cluster.start(i)
        asyncio.run(wait_until_serving(cluster))
        yield cluster
    finally:
        for proc in cluster.procs:
            proc.send_signal(signal.SIGKILL)
        for proc in cluster.procs:
            proc.wait(10)
