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

:func:`plan_update` is pure; :class:`Updater` is the shell on the leader.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.manager.orchestrator import live, new_task, observed
from agent.manager.raft import RaftError
from agent.manager.store import Commit, Event, Node, Service, Store, StoreError, Task, Tx
from agent.model import TaskState
from agent.spec import SECOND, ServiceSpec, SpecError, UpdateConfig
from agent.stamps import stamp_of

__all__ = ["UPDATING", "UpdatePlan", "Updater", "dirty", "plan_update", "start_update"]

log = logging.getLogger("shoal.updater")

UPDATING = ("updating", "rollback_started")


@dataclass(slots=True)
class UpdatePlan:
    put: list[Task] = field(default_factory=list)
    status: dict[str, Any] | None = None  # the service's new update status, if it changes
    rollback: bool = False  # roll back now (failure_action rollback)
    reason: str = ""
    batch_started: bool = False
    wake_at: float | None = None

    def wake(self, when: float) -> None:
        self.wake_at = when if self.wake_at is None else min(self.wake_at, when)


def dirty(task: Task, spec: ServiceSpec) -> bool:
    ports = [p.to_dict() for p in spec.endpoint_spec.ports]
    return (
        task.spec != spec.task_template.to_dict() or list(task.endpoint.get("ports", [])) != ports
    )


def start_update(
    service: Service, new_spec: dict[str, Any], now: float, *, rollback: bool
) -> Service:
    """The service with ``new_spec`` in force and its update under way."""
    state = "rollback_started" if rollback else "updating"
    message = "manually requested rollback" if rollback else "update in progress"
    return dataclasses.replace(
        service,
        spec=new_spec,
        previous_spec=dict(service.spec),
        spec_version=service.spec_version + 1,
        update_status={"state": state, "started_at": stamp_of(now), "message": message},
        updated=stamp_of(now),
    )


def _config(spec: ServiceSpec, previous: Mapping[str, Any], rollback: bool) -> UpdateConfig:
    if rollback:
        # a rollback is rolled out by the rollback config of the spec being left
        try:
            left = ServiceSpec.from_dict(previous) if previous else spec
        except SpecError:
            left = spec
        return left.rollback_config or spec.rollback_config or UpdateConfig()
    return spec.update_config or UpdateConfig()


def _healthy_since(task: Task) -> float | None:
    """When the task started counting as up (running, and healthy if it has a healthcheck)."""
    if observed(task) is not TaskState.RUNNING:
        return None
    if task.status.get("health") in ("starting", "unhealthy"):
        return None
    return float(task.status.get("timestamp") or 0.0)


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
    status = service.update_status
    rollback = status.get("state") == "rollback_started"
    try:
        spec = ServiceSpec.from_dict(service.spec)
    except SpecError as exc:
        log.error("service %s has a malformed spec: %s", service.id, exc)
        return plan
    cfg = _config(spec, service.previous_spec, rollback)
    mine = [t for t in tasks if t.service_id == service.id]
    old = [t for t in mine if live(t) and dirty(t, spec)]
    fresh = [t for t in mine if t.spec_version == service.spec_version and not dirty(t, spec)]
    monitor = cfg.monitor_ns / SECOND
    in_flight = 0  # new tasks not up yet: they hold their place in the batch
    watched = 0  # new tasks up, still within their monitor period
    last_up = 0.0  # when a new task last came up
    for t in fresh:
        state = observed(t)
        failed = state.is_terminal and state is not TaskState.COMPLETE
        if failed or t.status.get("health") == "unhealthy":
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
    total = max(len(old) + len([t for t in fresh if live(t)]), 1)
    if failures and len(failures) / total > cfg.max_failure_ratio:
        action = cfg.failure_action
        if action == "rollback" and not rollback and service.previous_spec:
            plan.rollback = True
            plan.reason = (
                "update rolled back due to failure or early termination of task"
                f" {sorted(failures)[0]}"
            )
            return plan
        if action in ("pause", "rollback"):  # a rollback that fails, or nothing to go back to
            what = "rollback" if rollback else "update"
            plan.status = {
                **status,
                "state": "rollback_paused" if rollback else "paused",
                "message": f"{what} paused due to failure or early termination of task"
                f" {sorted(failures)[0]}",
            }
            return plan
    if not old and in_flight == 0 and watched == 0:
        plan.status = {
            **status,
            "state": "rollback_completed" if rollback else "completed",
            "completed_at": stamp_of(now),
            "message": "rollback completed" if rollback else "update completed",
        }
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
            plan.put.append(dataclasses.replace(t, desired_state="shutdown", updated=stamp_of(now)))
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


class Updater:
    """Runs on the leader: drives every service whose update is under way."""

    def __init__(self, store: Store, *, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self._last_batch: dict[str, float] = {}
        self._failures: dict[tuple[str, int], set[str]] = {}
        self._passed: dict[tuple[str, int], set[str]] = {}
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        async with self.store.watch("service", "task") as q:
            self._wake.set()
            waiter = asyncio.ensure_future(self._events(q))
            try:
                while True:
                    await self._wake.wait()
                    self._wake.clear()
                    await self._step()
            finally:
                waiter.cancel()
                if self._timer is not None:
                    self._timer.cancel()

    async def _events(self, q: asyncio.Queue[Event | Commit]) -> None:
        while True:
            if isinstance(await q.get(), Commit):
                self._wake.set()

    def _wake_at(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay = max(when - self.clock(), 0.0) + 0.01
        self._timer = asyncio.get_running_loop().call_later(delay, self._wake.set)

    async def _step(self) -> None:
        view = self.store.view()
        services = [s for s in view.list(Service) if s.update_status.get("state") in UPDATING]
        if not services:
            return
        ids = {s.id for s in services}
        tasks = [t for t in view.list(Task) if t.service_id in ids]
        nodes = {n.id: n for n in view.list(Node)}
        now = self.clock()
        wake: float | None = None
        for service in services:
            key = (service.id, service.spec_version)
            failures = self._failures.setdefault(key, set())
            plan = plan_update(
                service,
                tasks,
                nodes,
                now,
                last_batch_at=self._last_batch.get(service.id, 0.0),
                failures=failures,
                passed=self._passed.setdefault(key, set()),
            )
            if plan.wake_at is not None:
                wake = plan.wake_at if wake is None else min(wake, plan.wake_at)
            if not (plan.put or plan.status or plan.rollback):
                continue
            if await self._apply(service, plan, now) and plan.batch_started:
                self._last_batch[service.id] = now
        if wake is not None:
            self._wake_at(wake)

    async def _apply(self, service: Service, plan: UpdatePlan, now: float) -> bool:
        def write(tx: Tx) -> None:
            current = tx.get(Service, service.id)
            if current is None or current.spec_version != service.spec_version:
                return  # changed meanwhile: the next step sees the new state
            if plan.rollback:
                back = start_update(current, dict(current.previous_spec), now, rollback=True)
                back = dataclasses.replace(
                    back,
                    update_status={
                        **back.update_status,
                        "message": plan.reason,
                        "reason": plan.reason,
                    },
                )
                tx.put(back)
                log.info("service %s: update failed, rolling back", current.name)
                return
            if plan.status is not None:
                tx.put(dataclasses.replace(current, update_status=plan.status))
                log.info("service %s: %s", current.name, plan.status.get("message"))
            for t in plan.put:
                existing = tx.get(Task, t.id)
                if existing is None:
                    tx.put(t)
                elif existing.desired_state == "running":
                    tx.put(
                        dataclasses.replace(
                            existing, desired_state=t.desired_state, updated=t.updated
                        )
                    )

        try:
            await self.store.update(write)
        except (StoreError, RaftError, TimeoutError) as exc:
            log.warning("could not write the update of service %s: %s", service.name, exc)
            self._wake_at(self.clock() + 0.5)
            return False
        return True
