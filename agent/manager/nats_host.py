"""The NATS servers of a swarm whose broker is a NATS cluster: their directories, written at
`swarm init`, and their users kept in step with the cluster state.

Each server i has a self-contained directory `$DATA/broker/nats-<i>/` (broker.nats_conf's
NatsFiles: nats.conf including users.conf, its server certificate and key, the CA, the
JetStream store). `servers.json` beside them lists the servers and which run on this machine;
the daemon supervises those, and `sync_from` rewrites their users.conf (then they are
reloaded). A server on another host runs from a copy of its directory (`shoal broker run`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from agent.model.errors import ShoalError
from broker.nats_conf import (
    NatsFiles,
    NatsServer,
    nats_users,
    render_nats_server,
    render_nats_users,
)
from broker.topics import Topics
from certs import ClusterCA, key_to_pem, new_private_key, write_file_atomic

__all__ = ["SERVER_FILE", "NatsHost", "load_server", "plan_servers"]

_SERVERS_FILE = "servers.json"
SERVER_FILE = "server.json"  # in each server's directory: its name and ports
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True, slots=True)
class _Entry:
    server: NatsServer
    local: bool


def plan_servers(
    count: int, hosts: Sequence[str], *, mqtt_port: int, free_ports: Sequence[int] = ()
) -> list[NatsServer]:
    """The cluster's servers: on `hosts` (one each) with the standard ports and `mqtt_port`,
    or, with no hosts, all on this machine's loopback with `mqtt_port` for the first and
    `free_ports` (3 per server: client, MQTT, cluster) for the rest of the ports."""
    if count < 1:
        raise ShoalError(f"--broker-servers {count}: a NATS cluster needs at least 1 server")
    if hosts:
        if len(hosts) != count:
            raise ShoalError(
                f"--broker-hosts names {len(hosts)} host(s) for --broker-servers {count}:"
                " name one host per server"
            )
        if len(set(hosts)) != len(hosts):
            raise ShoalError(f"--broker-hosts {','.join(hosts)}: a host is named twice")
        return [NatsServer(f"nats-{i}", h, 4222, mqtt_port, 6222) for i, h in enumerate(hosts)]
    if len(free_ports) < 3 * count:
        raise ShoalError(f"{3 * count} free ports are needed for {count} local servers")
    servers = []
    for i in range(count):
        client, mqtt, cluster = free_ports[3 * i : 3 * i + 3]
        servers.append(
            NatsServer(f"nats-{i}", "127.0.0.1", client, mqtt_port if i == 0 else mqtt, cluster)
        )
    return servers


def load_server(directory: Path) -> NatsServer:
    """The server a copied directory runs (its server.json)."""
    path = directory / SERVER_FILE
    try:
        return NatsServer(**json.loads(path.read_text()))
    except FileNotFoundError:
        raise ShoalError(
            f"{directory} is not a NATS server's directory (no {SERVER_FILE}): pass one of"
            " the $DATA/broker/nats-<i> directories `swarm init --broker nats` wrote"
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise ShoalError(f"{path} is unreadable: {exc}") from exc


class NatsHost:
    """This machine's part of the NATS cluster (see the module docstring)."""

    # NATS 2.9 keeps the connections of the users a reload keeps, and they may still
    # publish, but it delivers nothing more to them, even on subscriptions made after: every
    # session must log in again after a reload (see BrokerSync)
    reload_stops_deliveries = True

    def __init__(self, directory: Path, cluster_id: str) -> None:
        self.directory = directory
        self.topics = Topics(cluster_id)
        self.cluster_id = cluster_id

    def files(self, index: int) -> NatsFiles:
        return NatsFiles(self.directory / f"nats-{index}")

    def _entries(self) -> list[_Entry]:
        try:
            doc = json.loads((self.directory / _SERVERS_FILE).read_text())
            return [_Entry(NatsServer(**e["server"]), bool(e["local"])) for e in doc]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ShoalError(f"{self.directory / _SERVERS_FILE} is unreadable: {exc}") from exc

    @property
    def servers(self) -> list[NatsServer]:
        return [e.server for e in self._entries()]

    def local(self) -> list[tuple[NatsFiles, NatsServer]]:
        """The servers this machine runs, with their directories."""
        return [(self.files(i), e.server) for i, e in enumerate(self._entries()) if e.local]

    def create(
        self,
        ca: ClusterCA,
        servers: Sequence[NatsServer],
        *,
        local: Sequence[bool],
        extra_hosts: Sequence[str] = (),
    ) -> None:
        """Write every server's directory (with users.conf holding no one yet)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o750)
        for i, server in enumerate(servers):
            files = self.files(i)
            files.directory.mkdir(mode=0o700, exist_ok=True)
            files.store.mkdir(exist_ok=True)
            key = new_private_key()
            names = sorted({server.host, *extra_hosts} | (LOCAL_HOSTS if local[i] else set()))
            cert = ca.issue_server_cert(key, names, client_auth=True)
            write_file_atomic(files.server_key, key_to_pem(key), 0o600)
            write_file_atomic(files.server_chain, cert + ca.cert_pem, 0o644)
            write_file_atomic(files.ca, ca.cert_pem, 0o644)
            conf = render_nats_server(files, servers, i, cluster_id=self.cluster_id)
            write_file_atomic(files.config, conf.encode(), 0o600)
            write_file_atomic(files.users, render_nats_users([]).encode(), 0o600)
            server_doc = json.dumps(asdict(server)).encode()
            write_file_atomic(files.directory / SERVER_FILE, server_doc, 0o644)
        pairs = zip(servers, local, strict=True)
        doc = [{"server": asdict(s), "local": bool(lo)} for s, lo in pairs]
        write_file_atomic(self.directory / _SERVERS_FILE, json.dumps(doc).encode(), 0o644)

    def sync_from(
        self,
        ca: ClusterCA,
        *,
        managers: list[str],
        admins: list[str],
        monitors: list[str],
        revoked: list[tuple[int, datetime]],
        nodes: Sequence[str] = (),
        discovery_prefix: str | None = None,
    ) -> bool:
        """Rewrite every server directory's users; whether they changed (then the local
        servers are reloaded). NATS reads no CRL: `revoked` is not used; a removed identity
        loses its user instead."""
        users = nats_users(
            self.topics,
            managers=managers,
            nodes=nodes,
            admins=admins,
            monitors=monitors,
            discovery_prefix=discovery_prefix,
        )
        text = render_nats_users(users).encode()
        changed = False
        for i in range(len(self._entries())):
            files = self.files(i)
            with contextlib.suppress(OSError):
                if files.users.read_bytes() == text:
                    continue
            write_file_atomic(files.users, text, 0o600)
            changed = True
        return changed

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
