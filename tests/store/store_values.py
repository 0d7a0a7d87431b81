"""Typed values for building store objects in tests: task statuses, endpoints and the smallest
specs a service or task can have."""

from __future__ import annotations

from collections.abc import Iterable

from agent.manager.store import TaskEndpoint
from agent.model import TaskState, TaskStatus
from agent.model.spec import ContainerSpec, PortConfig, ServiceSpec, TaskSpec

__all__ = ["endpoint", "service_spec", "status", "task_spec"]


def status(
    state: str = "running",
    message: str = "",
    *,
    timestamp: float = 0.0,
    health: str | None = None,
    exit_code: int | None = None,
    task_id: str = "",
) -> TaskStatus:
    """A task status; without ``task_id``, one as a manager sets it."""
    return TaskStatus(
        task_id=task_id,
        state=TaskState(state),
        message=message,
        timestamp=timestamp,
        health=health,  # type: ignore[arg-type]
        exit_code=exit_code,
    )


def endpoint(ports: Iterable[PortConfig] = ()) -> TaskEndpoint:
    return TaskEndpoint(tuple(ports))


def task_spec(image: str = "nginx") -> TaskSpec:
    return TaskSpec(container=ContainerSpec(image=image))


def service_spec(name: str = "web", image: str = "nginx") -> ServiceSpec:
    return ServiceSpec(name=name, task_template=task_spec(image))
