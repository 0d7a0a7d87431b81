"""The typed objects the replicated store holds (names follow Docker Swarm's).

Each kind is a frozen dataclass with an ``id``; ``to_dict``/``from_dict`` give the msgpack form
kept in Raft entries and snapshots. ``from_dict`` is strict: the log is ours, but a snapshot
may come from another manager, so a malformed object is a `StoreError`, never a crash.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

__all__ = ["KINDS", "Client", "Cluster", "Node", "StoreError", "StoreObject", "kind_of"]


class StoreError(Exception):
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


@dataclass(frozen=True, slots=True)
class Node(StoreObject):
    KIND: ClassVar[str] = "node"
    role: str = "worker"  # manager | worker
    hostname: str = ""
    serials: tuple[str, ...] = ()  # certificate serials, decimal (they exceed 64 bits)
    status: str = "unknown"  # ready | down | unknown
    availability: str = "active"  # active | pause | drain
    labels: dict[str, str] = field(default_factory=dict)
    created: str = ""
    updated: str = ""


@dataclass(frozen=True, slots=True)
class Client(StoreObject):
    """A certificate held by a person or tool: role admin or monitor."""

    KIND: ClassVar[str] = "client"
    role: str = "monitor"
    serial: str = ""


KINDS: dict[str, type[StoreObject]] = {k.KIND: k for k in (Cluster, Node, Client)}


def kind_of(obj: StoreObject) -> str:
    return type(obj).KIND
