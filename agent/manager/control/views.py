"""What managers show of services, tasks and nodes: plain dicts for the CLI (`--format json`)
and for the retained JSON monitoring topics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agent.manager.reconcile.orchestrator import live, observed
from agent.manager.reconcile.scheduler import UNPLACED
from agent.manager.store import Node, NodeStatus, Service, Task
from agent.model import DesiredState, TaskState, TaskStatus
from agent.model.spec import PortConfig
from agent.model.stamps import parse_stamp

__all__ = ["ps_order", "service_row", "task_row"]


def _ports(ports: Iterable[PortConfig]) -> str:
    return ", ".join(f"*:{p.published}->{p.target}/{p.protocol}" for p in ports)


def service_row(
    service: Service,
    tasks: Iterable[Task],
    nodes: Mapping[str, Node],
    published: Sequence[PortConfig] = (),
) -> dict[str, Any]:
    """``published``: the ports as the allocator gave them out (a dynamic port resolved);
    until it has, the spec's."""
    mode = service.spec.mode
    mine = [t for t in tasks if t.service_id == service.id]
    running = sum(1 for t in mine if live(t) and observed(t) is TaskState.RUNNING)
    done = sum(
        1
        for t in mine
        if observed(t) is TaskState.COMPLETE and t.spec_version == service.spec_version
    )
    if mode.kind == "global":
        desired = sum(
            1
            for t in mine
            if live(t) and (n := nodes.get(t.node_id)) and n.status == NodeStatus.READY
        )
    elif mode.kind == "global-job":  # the nodes still to complete
        desired = sum(1 for t in mine if live(t) and observed(t) is not TaskState.COMPLETE)
    elif mode.kind == "replicated-job":  # as many as may run at once, of those still to run
        desired = max(0, min(mode.max_concurrent or mode.replicas, mode.replicas - done))
    else:
        desired = mode.replicas
    text = f"{running}/{desired}"
    if mode.kind == "replicated-job":
        text += f" ({done}/{mode.replicas} completed)"
    elif mode.kind == "global-job":
        text += f" ({done}/{desired + done} completed)"
    return {
        "id": service.id,
        "name": service.name,
        "mode": mode.kind,
        "replicas": text,
        "running": running,
        "desired": desired,
        "completed": done,
        "image": service.spec.task_template.container.image,
        "labels": dict(service.spec.labels),
        "ports": _ports(published or service.spec.endpoint_spec.ports),
        "spec_version": service.spec_version,
        "update_status": {} if service.update_status is None else service.update_status.to_dict(),
        "created": service.created,
        "updated": service.updated,
    }


def task_row(
    task: Task, service: Service | None, nodes: Mapping[str, Node], now: float
) -> dict[str, Any]:
    name = service.name if service is not None else task.service_id
    node = nodes.get(task.node_id)
    state = observed(task)
    status = task.status
    since = (status.timestamp if status else 0.0) or parse_stamp(task.updated, now)
    slot = str(task.slot) if task.slot else task.node_id
    return {
        "id": task.id,
        "name": f"{name}.{slot}",
        "service_id": task.service_id,
        "service": name,
        "slot": task.slot,
        "image": task.spec.container.image,
        "node_id": task.node_id,
        "node": node.hostname if node is not None else task.node_id,
        "desired_state": str(task.desired_state),
        "desired": _desired(task, service, state),
        "state": state.value,
        "current_state": f"{state.value.capitalize()} {_ago(now - since)}",
        "message": status.message if status else "",
        "error": _error(state, status),
        "exit_code": status.exit_code if status else None,
        "container_id": status.container_id if status else "",
        "health": status.health if status else None,
        "spec_version": task.spec_version,
        "ports": _ports(p for p in task.endpoint.ports if p.publish_mode == "host"),
        "created": task.created,
        "updated": task.updated,
    }


def _desired(task: Task, service: Service | None, state: TaskState) -> str:
    """The desired state as Docker shows it: a job's task that completed is ``complete``."""
    job = service is not None and service.spec.mode.kind.endswith("job")
    if job and state is TaskState.COMPLETE and task.desired_state == DesiredState.RUNNING:
        return "complete"
    return str(task.desired_state)


def _error(state: TaskState, status: TaskStatus | None) -> str:
    """What went wrong, as Docker's ERROR column shows it: the task's error, or for a pending
    task the scheduler's reason why it fits on no node."""
    if status is None:
        return ""
    if not status.err and state is TaskState.PENDING and status.message.startswith(UNPLACED):
        return status.message
    return status.err


def ps_order(tasks: Iterable[Task]) -> list[Task]:
    """Docker's `service ps` order: slot by slot (node by node for a global service), the
    slot's current task first (the newest that should run, else the newest), then its
    history, newest first."""
    slots: dict[tuple[str, int, str], list[Task]] = {}
    for t in tasks:
        slots.setdefault((t.service_id, t.slot, "" if t.slot else t.node_id), []).append(t)
    out: list[Task] = []
    for key in sorted(slots):
        mine = sorted(slots[key], key=lambda t: (t.created, t.id), reverse=True)
        current = next((t for t in mine if live(t)), mine[0])
        out += [current, *(t for t in mine if t is not current)]
    return out


def _ago(seconds: float) -> str:
    s = max(int(seconds), 0)
    if s < 1:
        return "less than a second ago"
    if s < 60:
        return f"{s} second{'s' if s != 1 else ''} ago"
    m = s // 60
    if m < 60:
        return f"{m} minute{'s' if m != 1 else ''} ago"
    h = m // 60
    if h < 48:
        return f"{h} hour{'s' if h != 1 else ''} ago"
    return f"{h // 24} days ago"
