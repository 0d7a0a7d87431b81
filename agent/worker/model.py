"""What a node is told to run (:class:`Assignment`) and what it reports (:class:`TaskStatus`).

Both cross the network, so ``from_dict`` trusts nothing: any malformed input raises
:class:`AssignmentError` / :class:`StatusError` naming the first bad field, never anything else.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from agent.spec import PortConfig, SpecError, TaskSpec
from agent.worker.errors import AssignmentError, StatusError

__all__ = [
    "DESIRED_STATES",
    "Assignment",
    "AssignmentError",
    "ConfigBlob",
    "DesiredState",
    "Health",
    "SecretBlob",
    "StatusError",
    "TaskState",
    "TaskStatus",
    "check_references",
    "is_id",
    "parse_configs",
    "parse_secrets",
]

DesiredState = Literal["running", "shutdown", "remove"]
DESIRED_STATES: tuple[DesiredState, ...] = ("running", "shutdown", "remove")
Health = Literal["starting", "healthy", "unhealthy"]
_HEALTH: tuple[Health, ...] = ("starting", "healthy", "unhealthy")

# Ids travel in topic levels, label values, file and container names: no '.', '/', spaces.
_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}")
# A service name is a DNS label, as in Swarm.
_SERVICE_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,62}")


def is_id(value: object) -> bool:
    """True for a task, node, secret or config id: safe in topics, labels and file names."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


class TaskState(enum.Enum):
    """A task's observed state, Swarm's names and order (a task only moves forward)."""

    NEW = "new"
    PENDING = "pending"
    ASSIGNED = "assigned"
    ACCEPTED = "accepted"
    PREPARING = "preparing"
    STARTING = "starting"
    RUNNING = "running"
    COMPLETE = "complete"
    SHUTDOWN = "shutdown"
    FAILED = "failed"
    REJECTED = "rejected"
    REMOVE = "remove"
    ORPHANED = "orphaned"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def is_terminal(self) -> bool:
        """True once the task's process is gone for good (complete, failed, shutdown, ...)."""
        return _RANK[self] > _RANK[TaskState.RUNNING]

    @property
    def is_active(self) -> bool:
        """True from preparing to running: the node is working on the task."""
        return _RANK[TaskState.PREPARING] <= _RANK[self] <= _RANK[TaskState.RUNNING]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, TaskState):
            return NotImplemented
        return _RANK[self] < _RANK[other]

    def __le__(self, other: object) -> bool:
        if not isinstance(other, TaskState):
            return NotImplemented
        return _RANK[self] <= _RANK[other]

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, TaskState):
            return NotImplemented
        return _RANK[self] > _RANK[other]

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, TaskState):
            return NotImplemented
        return _RANK[self] >= _RANK[other]


# swarmkit's numeric order: states sharing a rank are alternatives, not successors.
_RANK: dict[TaskState, int] = {
    TaskState.NEW: 0,
    TaskState.PENDING: 64,
    TaskState.ASSIGNED: 192,
    TaskState.ACCEPTED: 256,
    TaskState.PREPARING: 320,
    TaskState.STARTING: 512,
    TaskState.RUNNING: 576,
    TaskState.COMPLETE: 640,
    TaskState.SHUTDOWN: 704,
    TaskState.FAILED: 768,
    TaskState.REJECTED: 800,
    TaskState.REMOVE: 832,
    TaskState.ORPHANED: 832,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    """One task a manager wants on this node, as the dispatcher sends it.

    A task's spec never changes: a service update creates new tasks. Only ``desired_state``
    (and with it ``version``) moves. ``ports`` are the task's published ports as the allocator
    resolved them (Swarm keeps them on the task's endpoint, not in its spec).
    """

    task_id: str
    service_id: str
    service_name: str
    slot: int | None
    node_id: str
    spec: TaskSpec
    desired_state: DesiredState = "running"
    version: int = 0
    cluster_id: str
    ports: tuple[PortConfig, ...] = ()

    @property
    def container_name(self) -> str:
        """``<service>.<slot>.<task id>`` (``<service>.<node id>.<task id>`` without a slot)."""
        slot = self.node_id if self.slot is None else str(self.slot)
        return f"{self.service_name}.{slot}.{self.task_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "service_id": self.service_id,
            "service_name": self.service_name,
            "slot": self.slot,
            "node_id": self.node_id,
            "spec": self.spec.to_dict(),
            "desired_state": self.desired_state,
            "version": self.version,
            "cluster_id": self.cluster_id,
            "ports": [p.to_dict() for p in self.ports],
        }

    @classmethod
    def from_dict(cls, obj: object) -> Assignment:
        r = _Reader(obj, AssignmentError, _ASSIGNMENT_KEYS, _ASSIGNMENT_REQUIRED)
        spec_obj = r.raw("spec")
        try:
            spec = TaskSpec.from_dict(spec_obj)
        except SpecError as exc:
            raise AssignmentError(f"spec.{exc.path}" if exc.path else "spec", exc.message) from exc
        except (TypeError, ValueError, RecursionError) as exc:  # defensive: never crash on input
            raise AssignmentError("spec", f"malformed task spec ({exc})") from exc
        ports_obj = r.raw("ports", [])
        if not isinstance(ports_obj, list | tuple):
            raise AssignmentError("ports", "expected a list")
        ports: list[PortConfig] = []
        for i, p in enumerate(ports_obj):
            try:
                ports.append(PortConfig.from_dict(p))
            except SpecError as exc:
                where = f"ports[{i}].{exc.path}" if exc.path else f"ports[{i}]"
                raise AssignmentError(where, exc.message) from exc
        slot = r.optional_int("slot", minimum=0)
        desired = r.text("desired_state", "running")
        if desired not in DESIRED_STATES:
            raise AssignmentError(
                "desired_state", f"expected one of running, shutdown, remove, found {desired!r}"
            )
        return cls(
            task_id=r.id("task_id"),
            service_id=r.id("service_id"),
            service_name=r.matching("service_name", _SERVICE_NAME, "a DNS label"),
            slot=slot,
            node_id=r.id("node_id"),
            spec=spec,
            desired_state=cast(DesiredState, desired),
            version=r.integer("version", 0, minimum=0),
            cluster_id=r.id("cluster_id"),
            ports=tuple(ports),
        )


_ASSIGNMENT_KEYS = frozenset(
    {
        "task_id",
        "service_id",
        "service_name",
        "slot",
        "node_id",
        "spec",
        "desired_state",
        "version",
        "cluster_id",
        "ports",
    }
)
_ASSIGNMENT_REQUIRED = frozenset(
    {"task_id", "service_id", "service_name", "slot", "node_id", "spec", "cluster_id"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretBlob:
    """A secret as the managers send it: ``sealed`` opens only with this node's private key,
    in the context :func:`agent.worker.taskfiles.secret_context` names."""

    id: str
    name: str
    sealed: bytes = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "sealed": self.sealed}

    @classmethod
    def from_dict(cls, obj: object, where: str = "secret") -> SecretBlob:
        r = _Reader(obj, AssignmentError, _BLOB_KEYS["sealed"], _BLOB_KEYS["sealed"], where)
        return cls(id=r.id("id"), name=r.text("name"), sealed=r.data_bytes("sealed"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigBlob:
    """A config as the managers send it: in clear, configs are not secret."""

    id: str
    name: str
    data: bytes = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "data": self.data}

    @classmethod
    def from_dict(cls, obj: object, where: str = "config") -> ConfigBlob:
        r = _Reader(obj, AssignmentError, _BLOB_KEYS["data"], _BLOB_KEYS["data"], where)
        return cls(id=r.id("id"), name=r.text("name"), data=r.data_bytes("data"))


_BLOB_KEYS = {key: frozenset({"id", "name", key}) for key in ("sealed", "data")}
_B = TypeVar("_B", SecretBlob, ConfigBlob)


def parse_secrets(obj: object) -> list[SecretBlob]:
    """An assignment set's ``secrets`` list (None or absent: no secrets)."""
    return _parse_blobs(obj, "secrets", SecretBlob.from_dict)


def parse_configs(obj: object) -> list[ConfigBlob]:
    """An assignment set's ``configs`` list (None or absent: no configs)."""
    return _parse_blobs(obj, "configs", ConfigBlob.from_dict)


def _parse_blobs(obj: object, key: str, parse: Callable[[object, str], _B]) -> list[_B]:
    if obj is None:
        return []
    if not isinstance(obj, list | tuple):
        raise AssignmentError(key, f"expected a list, found {type(obj).__name__}")
    out: list[_B] = []
    seen: set[str] = set()
    for i, entry in enumerate(obj):
        blob = parse(entry, f"{key}[{i}]")
        if blob.id in seen:
            raise AssignmentError(f"{key}[{i}].id", f"id {blob.id} appears twice")
        seen.add(blob.id)
        out.append(blob)
    return out


def check_references(
    assignments: Iterable[Assignment],
    secrets: Iterable[SecretBlob],
    configs: Iterable[ConfigBlob],
) -> None:
    """Every running task's secret and config references name an id the set carries."""
    secret_ids = {s.id for s in secrets}
    config_ids = {c.id for c in configs}
    for a in assignments:
        if a.desired_state != "running":
            continue  # managers send files for running tasks only
        c = a.spec.container
        for i, ref in enumerate(c.secrets):
            if ref.secret_id not in secret_ids:
                raise AssignmentError(
                    f"task {a.task_id} spec.container.secrets[{i}].secret_id",
                    f"secret {ref.source} ({ref.secret_id!r}) is not among the set's secrets",
                )
        for i, cref in enumerate(c.configs):
            if cref.config_id not in config_ids:
                raise AssignmentError(
                    f"task {a.task_id} spec.container.configs[{i}].config_id",
                    f"config {cref.source} ({cref.config_id!r}) is not among the set's configs",
                )


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStatus:
    """A task's observed state as this node saw it at ``timestamp`` (seconds since the epoch).

    ``message`` says what happened in words; ``err`` is set only for failures and rejections.
    ``restarts`` counts local restarts of this task by its restart policy.
    """

    task_id: str
    state: TaskState
    message: str = ""
    err: str = ""
    exit_code: int | None = None
    container_id: str = ""
    timestamp: float = 0.0
    health: Health | None = None
    restarts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "state": self.state.value,
            "message": self.message,
            "err": self.err,
            "exit_code": self.exit_code,
            "container_id": self.container_id,
            "timestamp": self.timestamp,
            "health": self.health,
            "restarts": self.restarts,
        }

    @classmethod
    def from_dict(cls, obj: object) -> TaskStatus:
        r = _Reader(obj, StatusError, _STATUS_KEYS, frozenset({"task_id", "state"}))
        state = r.text("state")
        try:
            task_state = TaskState(state)
        except ValueError:
            raise StatusError("state", f"unknown task state {state!r}") from None
        health = r.raw("health", None)
        if health is not None and health not in _HEALTH:
            raise StatusError("health", "expected starting, healthy, unhealthy or null")
        timestamp = r.raw("timestamp", 0.0)
        if (
            not isinstance(timestamp, int | float)
            or isinstance(timestamp, bool)
            or not math.isfinite(timestamp)
        ):
            raise StatusError("timestamp", "expected a finite number")
        return cls(
            task_id=r.id("task_id"),
            state=task_state,
            message=r.text("message", ""),
            err=r.text("err", ""),
            exit_code=r.optional_int("exit_code"),
            container_id=r.text("container_id", ""),
            timestamp=float(timestamp),
            health=cast(Health | None, health),
            restarts=r.integer("restarts", 0, minimum=0),
        )


_STATUS_KEYS = frozenset(
    {
        "task_id",
        "state",
        "message",
        "err",
        "exit_code",
        "container_id",
        "timestamp",
        "health",
        "restarts",
    }
)

_MISSING = object()


@dataclass(slots=True)
class _Reader:
    """Strict field access over an untrusted mapping, raising ``error(field, message)``."""

    obj: object
    error: type[AssignmentError] | type[StatusError]
    keys: frozenset[str]
    required: frozenset[str]
    where: str = ""
    data: Mapping[str, object] = field(init=False)

    def _error(self, key: str, message: str) -> AssignmentError | StatusError:
        return self.error(".".join(p for p in (self.where, key) if p), message)

    def __post_init__(self) -> None:
        if not isinstance(self.obj, Mapping):
            raise self._error("", f"expected a mapping, found {type(self.obj).__name__}")
        for key in self.obj:
            if not isinstance(key, str):
                raise self._error("", f"expected string keys, found {type(key).__name__}")
            if key not in self.keys:
                raise self._error(key, "unknown key")
        for key in sorted(self.required):
            if key not in self.obj:
                raise self._error(key, "required key is missing")
        self.data = self.obj

    def raw(self, key: str, default: object = _MISSING) -> object:
        value = self.data.get(key, default)
        if value is _MISSING:  # pragma: no cover - required keys are checked up front
            raise self._error(key, "required key is missing")
        return value

    def text(self, key: str, default: object = _MISSING) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self._error(key, f"expected a string, found {type(value).__name__}")
        return value

    def data_bytes(self, key: str) -> bytes:
        value = self.raw(key)
        if not isinstance(value, bytes | bytearray):
            raise self._error(key, f"expected bytes, found {type(value).__name__}")
        return bytes(value)

    def id(self, key: str) -> str:
        return self.matching(key, _ID, "an id of 1 to 64 letters, digits, '-' or '_'")

    def matching(self, key: str, pattern: re.Pattern[str], what: str) -> str:
        value = self.text(key)
        if not pattern.fullmatch(value):
            raise self._error(key, f"expected {what}, found {value[:70]!r}")
        return value

    def integer(self, key: str, default: object = _MISSING, *, minimum: int | None = None) -> int:
        value = self.raw(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._error(key, f"expected an integer, found {type(value).__name__}")
        if minimum is not None and value < minimum:
            raise self._error(key, f"expected an integer >= {minimum}, found {value}")
        if not -(2**63) <= value < 2**63:
            raise self._error(key, "integer out of range")
        return value

    def optional_int(self, key: str, *, minimum: int | None = None) -> int | None:
        if self.data.get(key) is None:
            return None
        return self.integer(key, minimum=minimum)
