"""The typed objects the replicated store holds (names follow Docker Swarm's).

Each kind is a frozen dataclass with an ``id``; ``to_dict``/``from_dict`` give the msgpack form
kept in Raft entries and snapshots. ``from_dict`` is strict: the log is ours, but a snapshot
may come from another manager, so a malformed object is a `StoreError`, never a crash.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from agent.model.errors import ShoalError

__all__ = [
    "KINDS",
    "Client",
    "Cluster",
    "Config",
    "Network",
    "NetworkAllocation",
    "Node",
    "Secret",
    "Service",
    "StoreError",
    "StoreObject",
    "Task",
    "kind_of",
]


class StoreError(ShoalError):
    """The store refused something (a malformed object, a conflicting transaction)."""


@dataclass(frozen=True, slots=True)
class StoreObject:
    KIND: ClassVar[str] = ""
    id: str

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = (
                dict(value)
                if isinstance(value, dict)
                else (list(value) if isinstance(value, tuple) else value)
            )
        return out

    @classmethod
    def from_dict(cls: type[T], obj: Any) -> T:
        if not isinstance(obj, dict):
            raise StoreError(f"malformed {cls.KIND}: expected a map")
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in obj:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise StoreError(f"malformed {cls.KIND}: {f.name} is missing")
                continue
            value = obj[f.name]
            expected = _TYPES.get(str(f.type))
            if expected is not None and not isinstance(value, expected):
                raise StoreError(f"malformed {cls.KIND}.{f.name}: {type(value).__name__}")
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise StoreError(f"malformed {cls.KIND}: {exc}") from None


T = TypeVar("T", bound=StoreObject)

_TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "bool": bool,
    "bytes": bytes,
    "str | None": (str, type(None)),
    "tuple[int, ...]": (list, tuple),
    "tuple[str, ...]": (list, tuple),
    "dict[str, str]": dict,
    "dict[str, Any]": dict,
}


@dataclass(frozen=True, slots=True)
class Cluster(StoreObject):
    """The one cluster object (id "cluster"): tokens, CA, revocations, settings."""

    KIND: ClassVar[str] = "cluster"
    cluster_id: str = ""
    worker_token: str = ""
    manager_token: str = ""
    cert_lifetime_s: int = 90 * 86400
    ca_cert: bytes = b""
    ca_key: bytes = b""
    revoked: dict[str, str] = field(default_factory=dict)  # serial (decimal) -> when
    unlock_key: str = ""  # autolock: managers' local keys are wrapped with it ("" = off)
    task_history_limit: int = 5  # tasks kept per slot (or per node for global services)
    node_grace_s: int = 30  # after a broker outage or a new leader: time nodes get to report back


@dataclass(frozen=True, slots=True)
class Node(StoreObject):
    KIND: ClassVar[str] = "node"
    role: str = "worker"  # manager | worker
    hostname: str = ""
    serials: tuple[str, ...] = ()  # certificate serials, decimal (they exceed 64 bits)
    cert: bytes = b""  # the node's latest certificate (PEM): secrets are sealed to its key
    status: str = "unknown"  # ready | down | unknown
    availability: str = "active"  # active | pause | drain
    labels: dict[str, str] = field(default_factory=dict)
    # what the node last said about itself ("describe"): hostname, platform {os, arch},
    # resources {nano_cpus, memory_bytes}, engine {driver, name, version, labels}
    description: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    updated: str = ""


@dataclass(frozen=True, slots=True)
class Client(StoreObject):
    """A certificate held by a person or tool: role admin or monitor."""

    KIND: ClassVar[str] = "client"
    role: str = "monitor"
    serial: str = ""


@dataclass(frozen=True, slots=True)
class Service(StoreObject):
    """A service: its spec (agent.model.spec.ServiceSpec.to_dict()), the spec before the last update
    (for rollback), and how the last update went."""

    KIND: ClassVar[str] = "service"
    name: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    spec_version: int = 0
    previous_spec: dict[str, Any] = field(default_factory=dict)
    update_status: dict[str, Any] = field(default_factory=dict)
    endpoint: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    updated: str = ""


@dataclass(frozen=True, slots=True)
class Task(StoreObject):
    """One task: desired state written by managers, observed status by its node only."""

    KIND: ClassVar[str] = "task"
    service_id: str = ""
    slot: int = 0  # replicated services; 0 for global ones (one task per node)
    node_id: str = ""
    desired_state: str = "running"
    spec: dict[str, Any] = field(default_factory=dict)
    spec_version: int = 0
    status: dict[str, Any] = field(default_factory=dict)  # agent.model.TaskStatus.to_dict()
    # published ports as resolved for this task: {"ports": [PortConfig.to_dict(), ...]}
    endpoint: dict[str, Any] = field(default_factory=dict)
    restarts: tuple[int, ...] = ()  # when this slot was restarted (ms since the epoch), recent last
    created: str = ""
    updated: str = ""


@dataclass(frozen=True, slots=True)
class Secret(StoreObject):
    """A secret. Its data lies in the store, which the write-ahead log encrypts at rest;
    nodes receive it sealed to their own key."""

    KIND: ClassVar[str] = "secret"
    name: str = ""
    data: bytes = b""
    labels: dict[str, str] = field(default_factory=dict)
    created: str = ""
    updated: str = ""


@dataclass(frozen=True, slots=True)
class Config(StoreObject):
    KIND: ClassVar[str] = "config"
    name: str = ""
    data: bytes = b""
    labels: dict[str, str] = field(default_factory=dict)
    created: str = ""
    updated: str = ""


@dataclass(frozen=True, slots=True)
class Network(StoreObject):
    KIND: ClassVar[str] = "network"
    name: str = ""
    driver: str = "overlay"
    subnet: str = ""
    attachable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    created: str = ""


@dataclass(frozen=True, slots=True)
class NetworkAllocation(StoreObject):
    """What the allocator gave out (agent.manager.reconcile.allocation.Allocation.to_dict()): one
        object, id "cluster", written by the leader's allocator only, so a new leader keeps every
    address."""

    KIND: ClassVar[str] = "allocation"
    data: dict[str, Any] = field(default_factory=dict)


KINDS: dict[str, type[StoreObject]] = {
    k.KIND: k
    for k in (Cluster, Node, Client, Service, Task, Secret, Config, Network, NetworkAllocation)
}


def kind_of(obj: StoreObject) -> str:
    return type(obj).KIND
