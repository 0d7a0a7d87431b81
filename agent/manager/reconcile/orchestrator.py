"""The orchestrator: services in the store become tasks in the store.

:func:`plan_service` is pure: from one service (None once it is removed), its tasks, the nodes
and the time, it returns the tasks to create or change and those to delete, plus when to look
again (a restart delay or a node's disconnect window running out). It decides:

- replicated services: one live task per slot 1..replicas; extra slots are shut down (scale
  down), missing ones created (scale up);
- global services: one live task per node that the placement allows, none elsewhere;
- jobs: tasks run to completion, ``replicas`` completions at most ``max_concurrent`` at a time
  (replicated jobs), once per node (global jobs); a completed task is never run again;
- restarts by the restart policy (condition, delay, max attempts, window): a failed task's slot
  gets a new task once the delay has passed; a task on a drained or removed node, or on a node
  down for longer than the service's disconnect window, is replaced at once, except while a
  broker outage holds the nodes where they are (:mod:`agent.manager.reconcile.outage`);
- task history: stopped tasks are kept, ``history`` per slot, older ones deleted;
- work per pass is bounded: a scale-up creates at most ``batch`` new tasks (``BATCH``) per plan
  and the plan says ``more``; its loop plans the service again on its next pass, so a large
  scale converges in batches, one transaction each, and other services get their turn between.

A task is *live* while its desired state is "running". Only new tasks and desired states are
written here: observed state belongs to the nodes. Tasks whose spec is older than the service's
are left to the updater, except that a replacement always gets the current spec.

:class:`~agent.manager.reconcile.orchestrator_loop.OrchestratorLoop` runs it on the leader.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.manager.reconcile.outage import Hold, replace_after
from agent.manager.reconcile.scheduler import node_matches
from agent.manager.store import (
    Node,
    NodeAvailability,
    NodeStatus,
    Service,
    Task,
    TaskEndpoint,
    set_by_manager,
)
from agent.model import DesiredState, TaskState, should_restart
from agent.model.spec import SECOND, ServiceSpec, TaskSpec
from agent.model.stamps import stamp_of
from certs.identity import new_node_id

__all__ = ["BATCH", "Plan", "live", "new_task", "observed", "plan_service", "runs_global_task"]

log = logging.getLogger("shoal.orchestrator")

BATCH = 500  # new tasks of one service per pass (one transaction)


@dataclass(slots=True)
class Plan:
    put: list[Task] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    wake_at: float | None = None
    more: bool = False  # the batch was full: plan the service again once this is applied

    def wake(self, when: float) -> None:
        self.wake_at = when if self.wake_at is None else min(self.wake_at, when)


def observed(task: Task) -> TaskState:
    return TaskState.NEW if task.status is None else task.status.state


def live(task: Task) -> bool:
    return task.desired_state == DesiredState.RUNNING


def new_task(
    service: Service,
    spec: ServiceSpec,
    now: float,
    *,
    slot: int = 0,
    node_id: str = "",
    restarts: tuple[int, ...] = (),
    ident: str | None = None,
) -> Task:
    stamp = stamp_of(now)
    if node_id:
        status = set_by_manager(TaskState.ASSIGNED, "assigned", now)
    else:
        status = set_by_manager(TaskState.PENDING, "pending task scheduling", now)
    return Task(
        id=ident or new_node_id(),
        service_id=service.id,
        slot=slot,
        node_id=node_id,
        desired_state=DesiredState.RUNNING,
        spec=spec.task_template,
        spec_version=service.spec_version,
        status=status,
        endpoint=TaskEndpoint(spec.endpoint_spec.ports),
        created=stamp,
        updated=stamp,
        restarts=restarts,
    )


def _set_desired(task: Task, desired: DesiredState, now: float) -> Task:
    return dataclasses.replace(task, desired_state=desired, updated=stamp_of(now))


@dataclass(slots=True)
class _Context:
    service: Service
    spec: ServiceSpec
    nodes: Mapping[str, Node]
    now: float
    history: int
    hold: Hold = field(default_factory=Hold)
    batch: int = BATCH
    plan: Plan = field(default_factory=Plan)

    def room(self) -> bool:
        """Whether one more new task fits in this pass's batch (else the plan asks for more)."""
        if self.batch > 0:
            self.batch -= 1
            return True
        self.plan.more = True
        return False

    @property
    def policy_spec(self) -> TaskSpec:
        return self.spec.task_template

    def node_trouble(self, task: Task) -> str | None:
        """Why a live task must move off its node now ("" = wait; None = no trouble)."""
        if not task.node_id:
            return None
        node = self.nodes.get(task.node_id)
        if node is None:
            return "its node left the swarm"
        if node.availability == NodeAvailability.DRAIN:
            return "its node is drained"
        if node.status == NodeStatus.DOWN:
            window = self.spec.disconnect_window_ns / SECOND
            due = replace_after(node, self.nodes, window=window, now=self.now, hold=self.hold)
            if self.now >= due:
                return "its node is down"
            if due != math.inf:  # else the watch wakes the orchestrator when the hold changes
                self.plan.wake(due)
            return ""
        return None

    def restart_due(self, task: Task) -> bool | None:
        """For a live task that ended: True to replace now, None to keep it as it is (the
        policy says no more), False to wait (the plan wakes when the delay is over)."""
        state = observed(task)
        if state is TaskState.COMPLETE and self.spec.mode.kind in ("replicated-job", "global-job"):
            return None
        policy = self.policy_spec.restart_policy
        ended = TaskState.COMPLETE if state is TaskState.COMPLETE else TaskState.FAILED
        history = [ms / 1000 for ms in task.restarts]
        if not should_restart(policy, ended, history, self.now):
            return None
        stamp = 0.0 if task.status is None else task.status.timestamp
        ended_at = min(stamp, self.now) or self.now
        due = ended_at + policy.delay_ns / SECOND
        if self.now >= due:
            return True
        self.plan.wake(due)
        return False

    def replace(self, task: Task, *, counted: bool, node_id: str = "") -> None:
        restarts = task.restarts
        if counted:
            keep = max(self.policy_spec.restart_policy.max_attempts, 1)
            restarts = (*restarts, int(self.now * 1000))[-keep:]
        self.plan.put.append(_set_desired(task, DesiredState.SHUTDOWN, self.now))
        self.plan.put.append(
            new_task(
                self.service,
                self.spec,
                self.now,
                slot=task.slot,
                node_id=node_id,
                restarts=restarts,
            )
        )

    def tend(self, task: Task, *, node_bound: bool = False) -> bool:
        """Look after one live task; True when it stays the live task of its slot."""
        trouble = self.node_trouble(task)
        if trouble:
            if node_bound:  # a global task cannot move: it just stops
                self.plan.put.append(_set_desired(task, DesiredState.SHUTDOWN, self.now))
                return False
            self.replace(task, counted=False)
            return False
        if observed(task).is_terminal:
            due = self.restart_due(task)
            if due:
                self.replace(task, counted=True, node_id=task.node_id if node_bound else "")
                return False
        return True


def plan_service(
    service: Service | None,
    tasks: Sequence[Task],
    nodes: Mapping[str, Node],
    now: float,
    *,
    history: int = 5,
    hold: Hold | None = None,
    batch: int = BATCH,
) -> Plan:
    if service is None:
        return _plan_removed(tasks, nodes, now)
    spec = service.spec
    ctx = _Context(service, spec, nodes, now, history, hold or Hold(), batch)
    kind = spec.mode.kind
    if kind == "replicated":
        _plan_replicated(ctx, tasks)
    elif kind == "global":
        _plan_global(ctx, tasks, job=False)
    elif kind == "replicated-job":
        _plan_replicated_job(ctx, tasks)
    else:
        _plan_global(ctx, tasks, job=True)
    _prune(ctx, tasks)
    return ctx.plan


def _by(tasks: Iterable[Task], key: Callable[[Task], Any]) -> dict[Any, list[Task]]:
    out: dict[Any, list[Task]] = defaultdict(list)
    for t in tasks:
        out[key(t)].append(t)
    for group in out.values():
        group.sort(key=lambda t: (t.created, t.id))
    return out


def _plan_replicated(ctx: _Context, tasks: Sequence[Task]) -> None:
    wanted = ctx.spec.mode.replicas
    slots = _by((t for t in tasks if live(t)), lambda t: t.slot)
    occupied: set[int] = set()
    for slot, group in sorted(slots.items()):
        *extra, current = group
        starting = observed(current) is not TaskState.RUNNING
        for t in extra:
            # an update with order start-first: the old task runs until its successor does
            if starting and observed(t) is TaskState.RUNNING and t is extra[-1]:
                continue
            ctx.plan.put.append(_set_desired(t, DesiredState.SHUTDOWN, ctx.now))
        if slot > wanted or slot < 1:
            ctx.plan.put.append(_set_desired(current, DesiredState.SHUTDOWN, ctx.now))
            continue
        ctx.tend(current)
        occupied.add(slot)
    for slot in range(1, wanted + 1):
        if slot not in occupied:
            if not ctx.room():
                break
            ctx.plan.put.append(new_task(ctx.service, ctx.spec, ctx.now, slot=slot))
    if ctx.spec.rebalance and not ctx.plan.put:
        _rebalance(ctx, [group[-1] for slot, group in slots.items() if 1 <= slot <= wanted])


def _rebalance(ctx: _Context, current: list[Task]) -> None:
    """Move one task from the busiest node to the idlest when they differ by more than one.

    Only when every task runs (one move at a time). The successor starts first; the
    orchestrator stops the old task once the successor runs (as for a start-first update).
    """
    if not current or any(observed(t) is not TaskState.RUNNING for t in current):
        return
    spec = ctx.spec.task_template
    per_node = spec.placement.max_replicas_per_node or 0
    eligible = [
        n
        for n in ctx.nodes.values()
        if n.status == NodeStatus.READY
        and n.availability == NodeAvailability.ACTIVE
        and node_matches(spec, n) is None
    ]
    if len(eligible) < 2:
        return
    load = {n.id: 0 for n in eligible}
    for t in current:
        if t.node_id in load:
            load[t.node_id] += 1
    busiest = max(sorted(load), key=lambda k: load[k])
    idlest = min(sorted(load), key=lambda k: load[k])
    if load[busiest] - load[idlest] <= 1 or (per_node and load[idlest] >= per_node):
        return
    mover = max((t for t in current if t.node_id == busiest), key=lambda t: t.slot)
    ctx.plan.put.append(
        new_task(ctx.service, ctx.spec, ctx.now, slot=mover.slot, restarts=mover.restarts)
    )


def _eligible(ctx: _Context, node: Node) -> bool:
    return (
        node.availability != NodeAvailability.DRAIN
        and node_matches(ctx.spec.task_template, node) is None
    )


def runs_global_task(spec: ServiceSpec, node: Node) -> bool:
    """Whether a global service gets a task on ``node`` now: ready, active, and allowed by
    its placement (a node that stops being so keeps a running task only if not drained)."""
    return (
        node.status == NodeStatus.READY
        and node.availability == NodeAvailability.ACTIVE
        and node_matches(spec.task_template, node) is None
    )


def _plan_global(ctx: _Context, tasks: Sequence[Task], *, job: bool) -> None:
    per_node = _by(tasks, lambda t: t.node_id)
    for node_id, group in sorted(per_node.items()):
        node = ctx.nodes.get(node_id)
        alive = [t for t in group if live(t)]
        if node is None or not _eligible(ctx, node):
            for t in alive:
                ctx.plan.put.append(_set_desired(t, DesiredState.SHUTDOWN, ctx.now))
            continue
        if alive:
            *extra, current = alive
            for t in extra:
                ctx.plan.put.append(_set_desired(t, DesiredState.SHUTDOWN, ctx.now))
            ctx.tend(current, node_bound=True)
    for node_id, node in sorted(ctx.nodes.items()):
        if not runs_global_task(ctx.spec, node):
            continue
        group = per_node.get(node_id, [])
        if any(live(t) for t in group):
            continue
        if job and any(t.spec_version == ctx.service.spec_version for t in group):
            continue  # a global job runs once per node
        if not ctx.room():
            break
        ctx.plan.put.append(new_task(ctx.service, ctx.spec, ctx.now, node_id=node_id))


def _plan_replicated_job(ctx: _Context, tasks: Sequence[Task]) -> None:
    mode = ctx.spec.mode
    total = mode.replicas
    concurrent = mode.max_concurrent or total
    current = [t for t in tasks if t.spec_version == ctx.service.spec_version]
    slots = _by((t for t in current if live(t)), lambda t: t.slot)
    done: set[int] = set()
    running: set[int] = set()
    stuck: set[int] = set()
    for slot, group in slots.items():
        t = group[-1]
        if observed(t) is TaskState.COMPLETE:
            done.add(slot)
        elif observed(t).is_terminal and ctx.node_trouble(t) is None:
            # failed: waiting out its restart delay still takes a place among max_concurrent
            if ctx.restart_due(t) is None:
                stuck.add(slot)
            else:
                running.add(slot)
                ctx.tend(t)
        else:
            ctx.tend(t)
            running.add(slot)  # it runs, or its replacement does in the same slot
    free = concurrent - len(running)
    for slot in range(1, total + 1):
        if free <= 0:
            break
        if slot in done or slot in running or slot in stuck:
            continue
        if not ctx.room():
            break
        ctx.plan.put.append(new_task(ctx.service, ctx.spec, ctx.now, slot=slot))
        free -= 1


def _prune(ctx: _Context, tasks: Sequence[Task]) -> None:
    """Keep ``history`` tasks per slot (per node for global services): live ones first."""
    changed = {t.id for t in ctx.plan.put}
    kind = ctx.spec.mode.kind
    group_key: Callable[[Task], Any] = (
        (lambda t: t.node_id) if kind in ("global", "global-job") else (lambda t: t.slot)
    )
    scaled_down = ctx.spec.mode.replicas if kind in ("replicated", "replicated-job") else None
    for key, group in _by(tasks, group_key).items():
        stopped = [t for t in group if not live(t) and t.id not in changed]
        if scaled_down is not None and isinstance(key, int) and key > scaled_down:
            # a slot scaled away keeps no history, as in Swarm
            ctx.plan.delete.extend(t.id for t in stopped if _finished(t, ctx.nodes))
            continue
        keep = max(ctx.history - (len(group) - len(stopped)), 0)
        old = stopped[: max(len(stopped) - keep, 0)]
        for t in old:
            if _finished(t, ctx.nodes):
                ctx.plan.delete.append(t.id)


def _finished(task: Task, nodes: Mapping[str, Node]) -> bool:
    """True once nothing of the task can still run: its node stopped it, never got it, or
    left the swarm."""
    state = observed(task)
    return (
        state.is_terminal
        or not task.node_id
        or task.node_id not in nodes
        or state < TaskState.ACCEPTED
    )


def _plan_removed(tasks: Sequence[Task], nodes: Mapping[str, Node], now: float) -> Plan:
    plan = Plan()
    for t in tasks:
        node = nodes.get(t.node_id)
        if not t.node_id or node is None or observed(t).is_terminal:
            plan.delete.append(t.id)
        elif t.desired_state != DesiredState.REMOVE:
            plan.put.append(_set_desired(t, DesiredState.REMOVE, now))
    return plan
