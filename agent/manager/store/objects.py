"""The typed objects the replicated store holds (names follow Docker Swarm's).

Each kind is a frozen dataclass with an ``id``; ``to_dict``/``from_dict`` give the msgpack form
kept in Raft entries and snapshots. ``from_dict`` is strict: the log is ours, but a snapshot
may come from another manager, so a malformed object is a `StoreError`, never a crash.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from agent.manager.store.codec import CODECS
from agent.manager.store.fields import (
    ClientRole,
    NodeAvailability,
    NodeRole,
    NodeStatus,
    TaskEndpoint,
    UpdateState,
    UpdateStatus,
    set_by_manager,
)
from agent.model.errors import ShoalError
from agent.model.spec import ServiceSpec, TaskSpec
from agent.model.tasks import DesiredState, TaskStatus

__all__ = [
    "KINDS",
    "Client",
    "ClientRole",
    "Cluster",
    "Config",
    "Network",
    "NetworkAllocation",
    "Node",
    "NodeAvailability",
    "NodeRole",
    "NodeStatus",
    "Secret",
    "Service",
    "StoreError",
    "StoreObject",
    "Task",
    "TaskEndpoint",
    "UpdateState",
    "UpdateStatus",
    "kind_of",
    "set_by_manager",
]


class StoreError(ShoalError):
    """The store refused something (a malformed object, a conflicting transaction)."""


@dataclass(frozen=True, slots=True)
class StoreObject:
    KIND: ClassVar[str] = ""
    id: str

    def to_dict(self) -> dict[str, Any]:
        return {name: encode(getattr(self, name)) for name, _, encode in _plan(type(self))}

    @classmethod
    def from_dict(cls: type[T], obj: Any) -> T:
        if not isinstance(obj, dict):
            raise StoreError(f"malformed {cls.KIND}: expected a map")
        kwargs: dict[str, Any] = {}
        for name, decode, _ in _plan(cls):
            if name not in obj:
                if name in _required(cls):
                    raise StoreError(f"malformed {cls.KIND}: {name} is missing")
                continue
            try:
                kwargs[name] = decode(obj[name])
            except ValueError as exc:
                raise StoreError(f"malformed {cls.KIND}.{name}: {exc}") from None
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise StoreError(f"malformed {cls.KIND}: {exc}") from None


T = TypeVar("T", bound=StoreObject)

_Plan = tuple[tuple[str, Callable[[Any], Any], Callable[[Any], Any]], ...]
_PLANS: dict[type, _Plan] = {}
_REQUIRED: dict[type, frozenset[str]] = {}


def _plan(cls: type[StoreObject]) -> _Plan:
    """Each field's name, decoder and encoder, in declaration order (the order of the map)."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = tuple((f.name, *CODECS[str(f.type)]) for f in dataclasses.fields(cls))
    return plan


def _required(cls: type[StoreObject]) -> frozenset[str]:
    required = _REQUIRED.get(cls)
    if required is None:
        required = _REQUIRED[cls] = frozenset(
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
    return required


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
    home_assistant: bool = False  # the leader publishes Home Assistant discovery entries
    home_assistant_prefix: str = "homeassistant"  # Home Assistant's discovery prefix


@dataclass(frozen=True, slots=True)
class Node(StoreObject):
    KIND: ClassVar[str] = "node"
    role: NodeRole = NodeRole.WORKER
    hostname: str = ""
    serials: tuple[str, ...] = ()  # certificate serials, decimal (they exceed 64 bits)
    cert: bytes = b""  # the node's latest certificate (PEM): secrets are sealed to its key
    status: NodeStatus = NodeStatus.UNKNOWN
    availability: NodeAvailability = NodeAvailability.ACTIVE
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
    role: ClientRole = ClientRole.MONITOR
    serial: str = ""


@dataclass(frozen=True, slots=True)
class Service(StoreObject):
    """A service: its spec, the spec before the last update (for rollback; None before the
    first), and how the last update went (None if it never had one). ``endpoint`` is kept as
    it always was, ``{}``: a service's addresses are in the allocator's record."""

    KIND: ClassVar[str] = "service"
    name: str = ""
    spec: ServiceSpec = field(kw_only=True)
    spec_version: int = 0
    previous_spec: ServiceSpec | None = None
    update_status: UpdateStatus | None = None
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
    desired_state: DesiredState = DesiredState.RUNNING
    spec: TaskSpec = field(kw_only=True)
    spec_version: int = 0
    # None until a manager sets it; task_id "" when a manager did, the task's id when its node did
    status: TaskStatus | None = None
    endpoint: TaskEndpoint = field(default_factory=TaskEndpoint)  # published ports, resolved
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
