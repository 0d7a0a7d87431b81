"""Creating a swarm's first manager and a joining node's files: what `swarm init` and
`swarm join` write before the daemon starts. Nothing is left behind when a step fails."""

from __future__ import annotations

import dataclasses
import shutil
import socket
from dataclasses import dataclass
from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric import ec

from agent.join import Enrolled
from agent.manager.broker_host import BrokerHost
from agent.manager.keys import DataKeyFile, write_node_key
from agent.manager.logstore import bootstrap_log
from agent.manager.nats_host import LOCAL_HOSTS, NatsHost
from agent.manager.raft import Snapshot
from agent.manager.store import Cluster, Node, NodeRole, NodeStatus, initial_snapshot
from agent.model.errors import ShoalError
from agent.model.stamps import now_text
from agent.paths import DataDir, NodeConfig
from broker.mosquitto_conf import ListenSpec
from broker.nats_conf import NatsServer
from broker.topics import DISCOVERY_PREFIX, check_discovery_prefix
from certs import (
    ClusterCA,
    Identity,
    JoinToken,
    Role,
    key_to_pem,
    make_csr,
    new_cluster_id,
    new_node_id,
    new_private_key,
    new_unlock_key,
    write_file_atomic,
)

__all__ = [
    "BrokerPlan",
    "default_advertise",
    "forget",
    "free_ports",
    "init_cluster",
    "write_joined",
]


@dataclass(frozen=True, slots=True)
class BrokerPlan:
    """A NATS cluster for `swarm init --broker nats`: its servers, and the hosts named with
    --broker-hosts (none: every server runs on this machine, supervised by its daemon)."""

    servers: tuple[NatsServer, ...]
    hosts: tuple[str, ...] = ()

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(_address(s.host, s.mqtt_port) for s in self.servers)

    def node_config(self, node: NodeConfig) -> NodeConfig:
        first = self.servers[0]
        local = not self.hosts or all(h in LOCAL_HOSTS for h in self.hosts)
        return dataclasses.replace(
            node,
            broker_host=first.host,
            broker_port=first.mqtt_port,
            embedded_broker=local,
            broker_backend="nats",
            broker_addresses=self.addresses,
        )


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def default_advertise(listen_host: str) -> str:
    if listen_host not in ("0.0.0.0", "", "::"):
        return listen_host
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            addr = str(info[4][0])
            if not addr.startswith("127."):
                return addr
    except OSError:
        pass
    return "127.0.0.1"


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (each stays bound until all are chosen)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _connect_host(listen_host: str) -> str:
    return "127.0.0.1" if listen_host in ("0.0.0.0", "", "::") else listen_host


def init_cluster(
    data: DataDir,
    *,
    hostname: str,
    listen_host: str,
    cluster_port: int,
    enroll_port: int,
    advertise_host: str,
    cert_lifetime: timedelta,
    autolock: bool = False,
    driver: str = "auto",
    heartbeat: float = 60.0,
    data_path_addr: str = "",
    behind_nat: bool = False,
    broker: BrokerPlan | None = None,
    usage_interval: float = 30.0,
    metrics_listen: str = "",
    home_assistant: bool = False,
    home_assistant_prefix: str | None = None,
) -> tuple[NodeConfig, str, str]:
    """Create a swarm; returns this node's config, the worker join token and the unlock key
    ("" without autolock). With a NATS `broker`, its servers' directories are written under
    the broker directory instead of mosquitto's files."""
    if data.exists():
        raise ShoalError(
            "This node is already part of a swarm. Use `shoal swarm leave` to leave this swarm"
            " and join another one."
        )
    try:
        cluster_id = new_cluster_id()
        ca = ClusterCA.create(cluster_id)
        data.root.mkdir(parents=True, exist_ok=True)
        data.manager.mkdir(mode=0o700, parents=True, exist_ok=True)
        unlock_key = new_unlock_key() if autolock else ""
        if not autolock:
            ca.save(data.manager)  # a backup of the root CA; the managers use the store's copy
        node_id = new_node_id()
        key = new_private_key()
        cert = ca.issue(make_csr(key), node_id=node_id, role=Role.MANAGER, lifetime=cert_lifetime)
        _write_tls(data, ca.cert_pem, cert, key, unlock_key or None)
        cluster, me = _first_state(ca, node_id, hostname, cert, cert_lifetime, unlock_key)
        prefix = check_discovery_prefix(home_assistant_prefix or DISCOVERY_PREFIX)
        cluster = dataclasses.replace(
            cluster, home_assistant=home_assistant, home_assistant_prefix=prefix
        )
        data_key = DataKeyFile(data.manager / "data-key").create(unlock_key or None)
        snap = Snapshot(index=1, term=1, voters=(node_id,), data=initial_snapshot([cluster, me]))
        bootstrap_log(data.raft, data_key, snap)
        if broker is not None:
            nats = NatsHost(data.broker, cluster_id)
            local = [not broker.hosts or s.host in LOCAL_HOSTS for s in broker.servers]
            nats.create(ca, broker.servers, local=local, extra_hosts=[advertise_host, hostname])
            nats.sync_from(
                ca, managers=[node_id], admins=[], monitors=[], revoked=[], discovery_prefix=prefix
            )
        else:
            hosts = sorted({advertise_host, hostname, "localhost", "127.0.0.1", "::1"})
            host = BrokerHost(
                data.broker, cluster_id, ListenSpec(listen_host, cluster_port, enroll_port)
            )
            host.create(ca, hosts)
            host.sync_from(
                ca, managers=[node_id], admins=[], monitors=[], revoked=[], discovery_prefix=prefix
            )
        node = NodeConfig(
            node_id=node_id,
            cluster_id=cluster_id,
            role="manager",
            hostname=hostname,
            broker_host=_connect_host(listen_host),
            broker_port=cluster_port,
            enroll_port=enroll_port,
            embedded_broker=True,
            listen_host=listen_host,
            advertise_host=advertise_host,
            driver=driver,
            heartbeat=heartbeat,
            data_path_addr=data_path_addr,
            behind_nat=behind_nat,
            usage_interval=usage_interval,
            metrics_listen=metrics_listen,
        )
        if broker is not None:
            node = broker.node_config(node)
        data.save_node(node)
        return node, cluster.worker_token, unlock_key
    except BaseException:
        forget(data)
        raise


def _first_state(
    ca: ClusterCA,
    node_id: str,
    hostname: str,
    cert: bytes,
    cert_lifetime: timedelta,
    unlock_key: str,
) -> tuple[Cluster, Node]:
    """The swarm's first store: the cluster record and this, its first manager."""
    stamp = now_text()
    cluster = Cluster(
        id="cluster",
        cluster_id=ca.cluster_id,
        worker_token=str(JoinToken.new(ca.digest)),
        manager_token=str(JoinToken.new(ca.digest)),
        cert_lifetime_s=int(cert_lifetime.total_seconds()),
        ca_cert=ca.cert_pem,
        ca_key=key_to_pem(ca.key),
        unlock_key=unlock_key,
    )
    me = Node(
        id=node_id,
        role=NodeRole.MANAGER,
        hostname=hostname,
        serials=(str(Identity.from_cert(cert).serial),),
        cert=cert,
        status=NodeStatus.READY,
        created=stamp,
        updated=stamp,
    )
    return cluster, me


def _write_tls(
    data: DataDir,
    ca_pem: bytes,
    cert: bytes,
    key: ec.EllipticCurvePrivateKey,
    unlock_key: str | None = None,
) -> None:
    data.tls.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_file_atomic(data.ca_cert, ca_pem, 0o644)
    write_node_key(data.node_key, key, unlock_key)
    write_file_atomic(data.node_cert, cert, 0o644)


def write_joined(
    data: DataDir,
    enrolled: Enrolled,
    key: ec.EllipticCurvePrivateKey,
    *,
    hostname: str,
    broker_host: str,
    enroll_port: int,
    broker_addresses: tuple[str, ...] = (),
    driver: str = "auto",
    heartbeat: float = 60.0,
    data_path_addr: str = "",
    behind_nat: bool = False,
    usage_interval: float = 30.0,
    metrics_listen: str = "",
) -> NodeConfig:
    try:
        data.root.mkdir(parents=True, exist_ok=True)
        _write_tls(data, enrolled.ca, enrolled.cert, key)
        node = NodeConfig(
            node_id=enrolled.node_id,
            cluster_id=enrolled.cluster_id,
            role=enrolled.role,
            hostname=hostname,
            broker_host=broker_host,
            broker_port=enrolled.cluster_port,
            enroll_port=enroll_port,
            driver=driver,
            heartbeat=heartbeat,
            data_path_addr=data_path_addr,
            behind_nat=behind_nat,
            broker_backend=enrolled.broker_backend,
            # the servers the swarm named in its answer, else those given to join
            broker_addresses=enrolled.broker_addresses or broker_addresses,
            usage_interval=usage_interval,
            metrics_listen=metrics_listen,
        )
        if enrolled.broker_addresses:  # the first server, for what names one address
            host, _, port = enrolled.broker_addresses[0].rpartition(":")
            node = dataclasses.replace(node, broker_host=host.strip("[]"), broker_port=int(port))
        data.save_node(node)
        return node
    except BaseException:
        forget(data)
        raise


def forget(data: DataDir) -> None:
    """Remove this node's swarm identity and state (leave, or a failed init/join)."""
    for path in (data.node_file, data.pid_file, data.socket):
        path.unlink(missing_ok=True)
    for d in (data.tls, data.manager, data.broker, data.root / "monitor"):
        shutil.rmtree(d, ignore_errors=True)
