"""Pure generation of one server's configuration in an N-server NATS cluster with MQTT.

Each server has:
- an MQTT listener with mutual TLS and `verify_and_map`: a client is the user whose name is
  its certificate's subject ("CN=<id>,OU=shoal-<role>,O=<cluster>"), with no password;
- a client (NATS protocol) port on the given host that no user may use: every user allows
  MQTT connections only;
- a cluster block with TLS routes to every other server (mutual TLS, the cluster CA);
- JetStream with its own store directory (NATS keeps MQTT sessions, QoS 1 messages and
  retained messages in replicated JetStream streams, which is what makes them survive a
  server).

Permissions come from broker.acl.cluster_users, the same list the mosquitto ACL is rendered
from, translated by `mqtt_subjects` (`/` -> `.`, `+` -> `*`, `#` -> the parent and `.>`).
Readers also get `$MQTT.sub.>`, the subjects NATS delivers QoS 1 subscriptions on.

What NATS cannot express, and how it is handled:
- mosquitto's per-client patterns (`%c`): every identity is a user of its own, generated from
  the identities the managers know (nodes, admins, monitors). A change (a node joins, is
  removed, an admin or monitor certificate is issued) is applied by rendering every server's
  file again and running `nats-server --signal reload=<pid file>` (or sending SIGHUP) on each;
  connected clients whose user disappeared are disconnected by the reload.
- the anonymous enrollment listener: a NATS server has one MQTT listener, and with
  `verify_and_map` it refuses clients without a certificate, so joining is not served here.
- certificate revocation lists: NATS 2.9 reads no CRL; a removed identity is removed from
  the users (and so refused after a reload), but a revoked certificate of an identity that is
  still listed works until it expires.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.acl import AclUser, cluster_users
from broker.errors import BrokerError
from broker.mosquitto_conf import MAX_PACKET_BYTES
from broker.topics import Topics, check_id

__all__ = [
    "MQTT_REPLICAS",
    "QOS1_DELIVERY_SUBJECT",
    "NatsFiles",
    "NatsServer",
    "certificate_subject",
    "mqtt_subjects",
    "nats_users",
    "render_nats_config",
    "render_nats_server",
    "render_nats_users",
]

QOS1_DELIVERY_SUBJECT = "$MQTT.sub.>"
MQTT_REPLICAS = 3  # copies of MQTT sessions, QoS 1 and retained messages (NATS's maximum is 5)
_FORBIDDEN_IN_LEVEL = frozenset("./ *>\t\r\n")


@dataclass(frozen=True, slots=True)
class NatsFiles:
    """Where one NATS server's files live, all under one directory."""

    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "nats.conf"

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def server_chain(self) -> Path:
        return self.directory / "server-chain.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server-key.pem"

    @property
    def store(self) -> Path:
        return self.directory / "jetstream"

    @property
    def users(self) -> Path:
        """The `authorization` block, included by the config: what changes with the swarm."""
        return self.directory / "users.conf"

    @property
    def log(self) -> Path:
        return self.directory / "nats.log"

    @property
    def pid(self) -> Path:
        return self.directory / "nats.pid"


@dataclass(frozen=True, slots=True)
class NatsServer:
    """One server of the cluster: its name and where it listens."""

    name: str
    host: str
    client_port: int
    mqtt_port: int
    cluster_port: int

    def __post_init__(self) -> None:
        check_id(self.name, "server name")
        if not self.host or any(c in self.host for c in ' "\\\n\r/'):
            raise BrokerError(f"server {self.name}: {self.host!r} is not a host name or address")
        for what in ("client_port", "mqtt_port", "cluster_port"):
            port = getattr(self, what)
            if not 0 < port < 65536:
                raise BrokerError(f"server {self.name}: {what} {port} is not a TCP port")

    @property
    def route(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"nats-route://{host}:{self.cluster_port}"


def mqtt_subjects(topic_filter: str) -> tuple[str, ...]:
    """The NATS subjects an MQTT topic filter covers, as a permission list.

    `/` separates tokens as `.` does; `+` is `*`; a trailing `#` matches its parent as well as
    everything below, so it becomes both. A level that NATS would read differently (a `.`, a
    space, `*` or `>`, an empty level) is refused: NATS closes the connection of a client
    that uses such a topic."""
    levels = topic_filter.split("/")
    tokens: list[str] = []
    for i, level in enumerate(levels):
        last = i == len(levels) - 1
        if level == "#" and last:
            return (".".join(tokens), ".".join([*tokens, ">"])) if tokens else (">",)
        if level == "+":
            tokens.append("*")
            continue
        if not level or "#" in level or "+" in level or _FORBIDDEN_IN_LEVEL & set(level):
            raise BrokerError(
                f"topic filter {topic_filter!r}: level {i + 1} ({level!r}) has no NATS subject"
            )
        tokens.append(level)
    return (".".join(tokens),)


def certificate_subject(cluster_id: str, user: AclUser) -> str:
    """The subject of the identity's certificate as NATS names the user (RFC 4514 order)."""
    return f"CN={user.name},OU=shoal-{user.role},O={check_id(cluster_id, 'cluster id')}"


def _permissions(user: AclUser) -> dict[str, Any]:
    publish: list[str] = []
    subscribe: list[str] = []
    for grant in user.grants:
        subjects = mqtt_subjects(grant.topic_filter)
        if grant.access.writes:
            publish += subjects
        if grant.access.reads:
            subscribe += subjects
    if subscribe:
        subscribe.append(QOS1_DELIVERY_SUBJECT)
    # an empty allow list means "everything" to NATS: deny it all instead
    return {
        "publish": {"allow": publish} if publish else {"deny": [">"]},
        "subscribe": {"allow": subscribe} if subscribe else {"deny": [">"]},
    }


def nats_users(
    topics: Topics,
    *,
    managers: Iterable[str],
    nodes: Iterable[str] = (),
    admins: Iterable[str] = (),
    monitors: Iterable[str] = (),
    discovery_prefix: str | None = None,
) -> list[dict[str, Any]]:
    """`authorization.users`: one user per identity, MQTT connections only."""
    users = cluster_users(
        topics,
        managers=managers,
        nodes=nodes,
        admins=admins,
        monitors=monitors,
        discovery_prefix=discovery_prefix,
    )
    return [
        {
            "user": certificate_subject(topics.cluster_id, u),
            "permissions": _permissions(u),
            "allowed_connection_types": ["MQTT"],
        }
        for u in users
    ]


def _path(path: Path) -> str:
    text = str(path)
    if any(c in text for c in '"\\\n\r'):
        raise BrokerError(f"path {text!r} cannot appear in a NATS configuration")
    return text


def _tls(files: NatsFiles, **extra: Any) -> dict[str, Any]:
    return {
        "cert_file": _path(files.server_chain),
        "key_file": _path(files.server_key),
        "ca_file": _path(files.ca),
        "timeout": 5,
        **extra,
    }


def render_nats_config(
    files: NatsFiles,
    servers: Sequence[NatsServer],
    index: int,
    *,
    cluster_id: str,
    users: list[dict[str, Any]],
    max_file_store: int = 1 << 30,
    max_memory_store: int = 64 << 20,
) -> str:
    """The configuration of `servers[index]`, users included, in one file."""
    config = _server_config(files, servers, index, cluster_id, max_file_store, max_memory_store)
    config["authorization"] = {"users": users}
    return _HEADER + json.dumps(config, indent=2) + "\n"


def render_nats_server(
    files: NatsFiles,
    servers: Sequence[NatsServer],
    index: int,
    *,
    cluster_id: str,
    max_file_store: int = 1 << 30,
    max_memory_store: int = 64 << 20,
) -> str:
    """`nats.conf` of `servers[index]`, which includes `users.conf` (render_nats_users): the
    part that changes as nodes join and leave is a file of its own, rewritten and reloaded
    alone."""
    config = _server_config(files, servers, index, cluster_id, max_file_store, max_memory_store)
    lines = [f"{key}: {json.dumps(value, indent=2)}" for key, value in config.items()]
    return _HEADER + "\n".join(lines) + f"\ninclude {json.dumps(files.users.name)}\n"


def render_nats_users(users: list[dict[str, Any]]) -> str:
    """`users.conf`: the users of every server (see nats_users)."""
    return _HEADER + "authorization: " + json.dumps({"users": users}, indent=2) + "\n"


_HEADER = "# Generated by shoal; changes are overwritten.\n"


def _server_config(
    files: NatsFiles,
    servers: Sequence[NatsServer],
    index: int,
    cluster_id: str,
    max_file_store: int,
    max_memory_store: int,
) -> dict[str, Any]:
    """Everything but the users. Routes go to every other server.

    The server certificate in `files` must be valid for the server's host and carry both the
    server and the client authentication usage: servers dial each other's routes."""
    if not 0 <= index < len(servers):
        raise BrokerError(f"server index {index} is not in a cluster of {len(servers)}")
    names = [s.name for s in servers]
    if len(set(names)) != len(names):
        raise BrokerError(f"server names must differ: {', '.join(names)}")
    me = servers[index]
    config = {
        "server_name": me.name,
        "host": me.host,
        "port": me.client_port,
        "pid_file": _path(files.pid),
        "log_file": _path(files.log),
        "max_payload": MAX_PACKET_BYTES,
        "mqtt": {
            "host": me.host,
            "port": me.mqtt_port,
            "tls": _tls(files, verify_and_map=True),
            # NATS picks the replicas from the servers it sees when the first client comes,
            # which may be fewer than the cluster has: a stream on 2 of 3 stops when one dies
            "stream_replicas": min(len(servers), MQTT_REPLICAS),
        },
        "cluster": {
            "name": f"shoal-{check_id(cluster_id, 'cluster id')}",
            "host": me.host,
            "port": me.cluster_port,
            "tls": _tls(files, verify=True),
            "routes": [s.route for s in servers if s is not me],
        },
        "jetstream": {
            "store_dir": _path(files.store),
            "max_file_store": max_file_store,
            "max_memory_store": max_memory_store,
        },
    }
    if len(servers) == 1:  # JetStream refuses a cluster block with no routes
        del config["cluster"]
    return config
