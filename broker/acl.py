"""Who may do what on the cluster's topics, independent of the broker that enforces it.

One list of users, each with its grants (read, write or readwrite on an MQTT topic filter).
broker/mosquitto_conf.py renders it as a mosquitto ACL file, broker/nats_conf.py as NATS
`authorization.users`; both therefore give every identity the same rights.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from broker.topics import DISCOVERY_PREFIX, ROOT, Topics, check_id

__all__ = ["Access", "AclRole", "AclUser", "Grant", "cluster_users", "node_grants"]


class Access(StrEnum):
    READ = "read"
    WRITE = "write"
    READWRITE = "readwrite"

    @property
    def reads(self) -> bool:
        return self is not Access.WRITE

    @property
    def writes(self) -> bool:
        return self is not Access.READ


class AclRole(StrEnum):
    """The role an identity's certificate carries (its OU without the `shoal-` prefix)."""

    MANAGER = "manager"
    WORKER = "worker"
    ADMIN = "admin"
    MONITOR = "monitor"


@dataclass(frozen=True, slots=True)
class Grant:
    access: Access
    topic_filter: str


@dataclass(frozen=True, slots=True)
class AclUser:
    """One identity: its certificate CN (the MQTT user name), its role and its grants."""

    name: str
    role: AclRole
    grants: tuple[Grant, ...]


def node_grants(topics: Topics, node_id: str) -> tuple[Grant, ...]:
    """What one node may do: write its own state, status, requests, followed log lines and
    monitoring documents; read its own answers, assignments and routing table."""
    b, n = topics.base, check_id(node_id, "node id")
    w, r = Access.WRITE, Access.READ
    return (
        Grant(w, f"{b}/node/{n}/state"),
        Grant(w, f"{b}/node/{n}/status"),
        Grant(w, f"{b}/node/{n}/req"),
        Grant(w, f"{b}/node/{n}/logs/+"),
        Grant(r, f"{b}/node/{n}/resp"),
        Grant(r, f"{b}/node/{n}/assign"),
        Grant(r, f"{b}/node/{n}/net"),
        Grant(w, f"{b}/mon/node/{n}/#"),
    )


def cluster_users(
    topics: Topics,
    *,
    managers: Iterable[str],
    nodes: Iterable[str] = (),
    admins: Iterable[str] = (),
    monitors: Iterable[str] = (),
    discovery_prefix: str | None = None,
) -> list[AclUser]:
    """Every identity of the cluster with its grants; an identity not listed may do nothing.

    Managers get the whole cluster tree and the enrollment tree; `nodes` are the workers
    (a manager listed there too stays a manager); admins their own control tree and read
    access to monitoring; monitors may only read monitoring.

    The cluster's Home Assistant discovery entries under the configured prefix
    (`<discovery_prefix>/+/shoal_<cluster>/#`, default `homeassistant`) are written by
    managers and read by monitors whether discovery is on or off: turning it off changes no
    grant, so the clears the leader then publishes reach Home Assistant (which holds a
    monitoring certificate) instead of racing the broker's reload. The entries say nothing
    that `mon/` does not. (A first level `+` would do for mosquitto, but a NATS server with
    such a permission stops serving its MQTT clients.)"""
    discovery = topics.discovery_tree(discovery_prefix or DISCOVERY_PREFIX)
    b, rw, r = topics.base, Access.READWRITE, Access.READ
    users: list[AclUser] = []
    manager_ids = sorted(set(managers))
    for m in manager_ids:
        grants = (
            Grant(rw, f"{b}/#"),
            Grant(rw, f"{ROOT}/enroll/#"),
            Grant(rw, discovery),
        )
        users.append(AclUser(check_id(m, "manager id"), AclRole.MANAGER, grants))
    for n in sorted(set(nodes) - set(manager_ids)):
        users.append(AclUser(n, AclRole.WORKER, node_grants(topics, n)))
    for a in sorted(set(admins)):
        a = check_id(a, "admin id")
        users.append(
            AclUser(a, AclRole.ADMIN, (Grant(rw, f"{b}/ctl/{a}/#"), Grant(r, f"{b}/mon/#")))
        )
    watch = (Grant(r, f"{b}/mon/#"), Grant(r, discovery))
    for m in sorted(set(monitors)):
        users.append(AclUser(check_id(m, "monitor id"), AclRole.MONITOR, watch))
    return users
