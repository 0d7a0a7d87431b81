"""What a node reports about a task (:class:`TaskStatus`) and the states a task moves through.

A status crosses the network, so ``from_dict`` trusts nothing: any malformed input raises
:class:`~agent.model.errors.StatusError` naming the first bad field, never anything else.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Literal, cast

from agent.model.errors import StatusError
from agent.model.fields import FieldReader

__all__ = ["DESIRED_STATES", "DesiredState", "Health", "TaskState", "TaskStatus"]


class DesiredState(enum.StrEnum):
    """What managers want of a task; on the wire, its plain string value."""

    RUNNING = "running"
    SHUTDOWN = "shutdown"
    REMOVE = "remove"


DESIRED_STATES: tuple[DesiredState, ...] = tuple(DesiredState)
Health = Literal["starting", "healthy", "unhealthy"]
_HEALTH: tuple[Health, ...] = ("starting", "healthy", "unhealthy")


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
        r = FieldReader(obj, StatusError, _STATUS_KEYS, frozenset({"task_id", "state"}))
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
