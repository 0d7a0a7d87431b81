"""Rolling updates and rollbacks.

A service update (or rollback) sets the service's update status to "updating" (or
"rollback_started"). From then on, :func:`plan_update` replaces the service's *dirty* tasks —
live tasks whose spec or ports differ from the service's — ``parallelism`` at a time (0: all at
once), as Swarm does: the next task is replaced as soon as a new one runs (and, with a
healthcheck, is healthy) and ``delay`` has passed since. Each new task is watched for the
``monitor`` period after it came up; one that fails within it counts as a failure, and the
update completes once the last one is through its period. When the failures exceed
``max_failure_ratio`` of the tasks to update, the ``failure_action`` applies: pause (the update
stops where it is), continue, or rollback (the previous spec comes back, rolled out by the
rollback config). Order stop-first stops the old
task as its successor is created; start-first lets the old one run until the new one runs (the
orchestrator stops it then).

:func:`plan_update` is pure; :class:`~agent.manager.reconcile.updater_loop.UpdaterLoop` runs it on
the leader.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agent.manager.reconcile.orchestrator import live, new_task, observed
from agent.manager.store import Node, Service, Task, UpdateState, UpdateStatus
from agent.model import DesiredState, TaskState
from agent.model.spec import SECOND, ServiceSpec, UpdateConfig
from agent.model.stamps import stamp_of

__all__ = ["UPDATING", "UpdatePlan", "dirty", "plan_update", "start_update"]

log = logging.getLogger("shoal.updater")

UPDATING = (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED)


@dataclass(slots=True)
class UpdatePlan:
    put: list[Task] = field(default_factory=list)
    status: UpdateStatus | None = None  # the service's new update status, if it changes
    rollback: bool = False  # roll back now (failure_action rollback)
    reason: str = ""
    batch_started: bool = False
    wake_at: float | None = None

    def wake(self, when: float) -> None:
        self.wake_at = when if self.wake_at is None else min(self.wake_at, when)


def dirty(task: Task, spec: ServiceSpec) -> bool:
    return task.spec != spec.task_template or task.endpoint.ports != spec.endpoint_spec.ports


def start_update(service: Service, new_spec: ServiceSpec, now: float, *, rollback: bool) -> Service:
    """The service with ``new_spec`` in force and its update under way."""
    state = UpdateState.ROLLBACK_STARTED if rollback else UpdateState.UPDATING
    message = "manually requested rollback" if rollback else "update in progress"
    return dataclasses.replace(
        service,
        spec=new_spec,
        previous_spec=service.spec,
        spec_version=service.spec_version + 1,
        update_status=UpdateStatus(state=state, started_at=stamp_of(now), message=message),
        updated=stamp_of(now),
    )


def _config(spec: ServiceSpec, previous: ServiceSpec | None, rollback: bool) -> UpdateConfig:
    if rollback:
        # a rollback is rolled out by the rollback config of the spec being left
        left = previous or spec
        return left.rollback_config or spec.rollback_config or UpdateConfig()
    return spec.update_config or UpdateConfig()


def _healthy_since(task: Task) -> float | None:
    """When the task started counting as up (running, and healthy if it has a healthcheck)."""
    status = task.status
    if status is None or status.state is not TaskState.RUNNING:
        return None
    if status.health in ("starting", "unhealthy"):
        return None
    return status.timestamp


def _watch(
    fresh: Sequence[Task],
    cfg: UpdateConfig,
    now: float,
    failures: set[str],
    passed: set[str],
    plan: UpdatePlan,
) -> tuple[int, int, float]:
    """Go through the new tasks: record failures and those through their monitor period, and
    return how many are not up yet (they hold their place in the batch), how many are up and
    still within their monitor period, and when a new task last came up."""
    monitor = cfg.monitor_ns / SECOND
    in_flight = 0
    watched = 0
    last_up = 0.0
    for t in fresh:
        state = observed(t)
        failed = state.is_terminal and state is not TaskState.COMPLETE
        if failed or (t.status is not None and t.status.health == "unhealthy"):
            if t.id not in passed:
                failures.add(t.id)
            continue
        if not live(t):
            continue
        since = _healthy_since(t)
        if since is None:
            in_flight += 1
            continue
        last_up = max(last_up, since)
        if now < since + monitor:
            watched += 1
            plan.wake(since + monitor)
        else:
            passed.add(t.id)
    return in_flight, watched, last_up


def _fail(
    service: Service,
    status: UpdateStatus,
    cfg: UpdateConfig,
    failures: set[str],
    *,
    rollback: bool,
    plan: UpdatePlan,
) -> bool:
    """Apply the failure action to ``plan``; True when the step ends there."""
    action = cfg.failure_action
    if action == "rollback" and not rollback and service.previous_spec:
        plan.rollback = True
        plan.reason = (
            f"update rolled back due to failure or early termination of task {sorted(failures)[0]}"
        )
        return True
    if action in ("pause", "rollback"):  # a rollback that fails, or nothing to go back to
        what = "rollback" if rollback else "update"
        plan.status = dataclasses.replace(
            status,
            state=UpdateState.ROLLBACK_PAUSED if rollback else UpdateState.PAUSED,
            message=f"{what} paused due to failure or early termination of task"
            f" {sorted(failures)[0]}",
        )
        return True
    return False


def plan_update(
    service: Service,
    tasks: Sequence[Task],
    nodes: Mapping[str, Node],
    now: float,
    *,
    last_batch_at: float,
    failures: set[str],
    passed: set[str] | None = None,
) -> UpdatePlan:
    """One step of the update of ``service``. ``failures`` (new tasks that failed within their
    monitor period) and ``passed`` (new tasks seen through it) are kept by the caller from step
    to step and updated in place: a task that fails after it passed is not an update failure."""
    passed = set() if passed is None else passed
    plan = UpdatePlan()
    status = service.update_status or UpdateStatus(state=UpdateState.UPDATING)
    rollback = status.state is UpdateState.ROLLBACK_STARTED
    spec = service.spec
    cfg = _config(spec, service.previous_spec, rollback)
    mine = [t for t in tasks if t.service_id == service.id]
    old = [t for t in mine if live(t) and dirty(t, spec)]
    fresh = [t for t in mine if t.spec_version == service.spec_version and not dirty(t, spec)]
    in_flight, watched, last_up = _watch(fresh, cfg, now, failures, passed, plan)
    total = max(len(old) + len([t for t in fresh if live(t)]), 1)
    if failures and len(failures) / total > cfg.max_failure_ratio:
        if _fail(service, status, cfg, failures, rollback=rollback, plan=plan):
            return plan
    if not old and in_flight == 0 and watched == 0:
        plan.status = dataclasses.replace(
            status,
            state=UpdateState.ROLLBACK_COMPLETED if rollback else UpdateState.COMPLETED,
            completed_at=stamp_of(now),
            message="rollback completed" if rollback else "update completed",
        )
        return plan
    parallelism = cfg.parallelism or len(old)
    room = parallelism - in_flight
    if room <= 0 or not old:
        return plan
    delay = cfg.delay_ns / SECOND
    # the delay runs after each replaced task came up (and after the last batch started)
    ready_at = max(last_batch_at, last_up) + delay if delay else 0.0
    if ready_at and now < ready_at:
        plan.wake(ready_at)
        return plan
    global_mode = spec.mode.kind in ("global", "global-job")
    for t in sorted(old, key=lambda t: (t.slot, t.node_id, t.created))[:room]:
        if cfg.order == "stop-first":
            plan.put.append(
                dataclasses.replace(t, desired_state=DesiredState.SHUTDOWN, updated=stamp_of(now))
            )
        plan.put.append(
            new_task(
                service,
                spec,
                now,
                slot=t.slot,
                node_id=t.node_id if global_mode else "",
                restarts=t.restarts,
            )
        )
    plan.batch_started = True
    return plan
