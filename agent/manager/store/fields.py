"""The typed values store objects hold besides specs and task statuses: states as enums, a
service's update status and a task's resolved endpoint.

Every enum is a ``StrEnum`` whose value is the plain string kept in Raft entries and
snapshots; ``to_dict`` of the dataclasses gives exactly the maps the store has always kept.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.model.spec import PortConfig, SpecError
from agent.model.tasks import TaskState, TaskStatus

__all__ = [
    "ClientRole",
    "NodeAvailability",
    "NodeRole",
    "NodeStatus",
    "TaskEndpoint",
    "UpdateState",
    "UpdateStatus",
    "set_by_manager",
]


class NodeStatus(enum.StrEnum):
    READY = "ready"
    DOWN = "down"
    UNKNOWN = "unknown"


class NodeAvailability(enum.StrEnum):
    ACTIVE = "active"
    PAUSE = "pause"
    DRAIN = "drain"


class NodeRole(enum.StrEnum):
    MANAGER = "manager"
    WORKER = "worker"


class ClientRole(enum.StrEnum):
    ADMIN = "admin"
    MONITOR = "monitor"


class UpdateState(enum.StrEnum):
    """How a service's last update (or rollback) stands, Swarm's names."""

    UPDATING = "updating"
    PAUSED = "paused"
    COMPLETED = "completed"
    ROLLBACK_STARTED = "rollback_started"
    ROLLBACK_PAUSED = "rollback_paused"
    ROLLBACK_COMPLETED = "rollback_completed"


_UPDATE_KEYS = ("state", "started_at", "message", "reason", "completed_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateStatus:
    """A service's last update: ``reason`` is set when a failed update rolled itself back,
    ``completed_at`` once it is over. Its map keeps ``state``, ``started_at`` and ``message``
    always and the other two only when set, in that order."""

    state: UpdateState
    started_at: str = ""
    message: str = ""
    reason: str = ""
    completed_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": str(self.state),
            "started_at": self.started_at,
            "message": self.message,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.completed_at:
            out["completed_at"] = self.completed_at
        return out

    @classmethod
    def from_dict(cls, obj: object) -> UpdateStatus:
        if not isinstance(obj, Mapping):
            raise SpecError("", "expected a mapping")
        for key in obj:
            if key not in _UPDATE_KEYS:
                raise SpecError(str(key), "unknown key")
        values: dict[str, str] = {}
        for key in _UPDATE_KEYS:
            value = obj.get(key, "")
            if not isinstance(value, str):
                raise SpecError(key, f"expected a string, found {type(value).__name__}")
            values[key] = value
        try:
            state = UpdateState(values.pop("state"))
        except ValueError:
            raise SpecError("state", f"unknown update state {obj.get('state')!r}") from None
        return cls(state=state, **values)


@dataclass(frozen=True, slots=True)
class TaskEndpoint:
    """A task's published ports as the orchestrator resolved them; ``{}`` when it has none."""

    ports: tuple[PortConfig, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"ports": [p.to_dict() for p in self.ports]} if self.ports else {}

    @classmethod
    def from_dict(cls, obj: object) -> TaskEndpoint:
        if not isinstance(obj, Mapping):
            raise SpecError("", "expected a mapping")
        for key in obj:
            if key != "ports":
                raise SpecError(str(key), "unknown key")
        raw = obj.get("ports", [])
        if not isinstance(raw, list | tuple):
            raise SpecError("ports", "expected a list")
        return cls(tuple(PortConfig.from_dict(p, f"ports[{i}]") for i, p in enumerate(raw)))


def set_by_manager(state: TaskState, message: str, now: float) -> TaskStatus:
    """A status a manager sets (pending, assigned): it carries no task id, and the store keeps
    its short form (state, message, timestamp)."""
    return TaskStatus(task_id="", state=state, message=message, timestamp=now)
