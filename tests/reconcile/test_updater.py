"""Rolling updates: what ``plan_update`` decides for one service at one moment."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from agent.manager.reconcile.orchestrator import live, observed
from agent.manager.reconcile.updater import UpdatePlan, dirty, plan_update, start_update
from agent.manager.store import Node, NodeAvailability, NodeStatus, Service, Task
from agent.model import DesiredState, TaskState
from agent.model.spec import (
    SECOND,
    ContainerSpec,
    EndpointSpec,
    Healthcheck,
    PortConfig,
    ServiceMode,
    ServiceSpec,
    TaskSpec,
    UpdateConfig,
)
from agent.model.stamps import stamp_of
from tests.store.store_values import endpoint, status

T0 = 1_700_000_000.0
SERVICE_ID = "svc"

_ids = itertools.count(1)


def spec(
    replicas: int = 5,
    *,
    mode: str = "replicated",
    image: str = "nginx:1",
    update: UpdateConfig | None = None,
    rollback: UpdateConfig | None = None,
    ports: tuple[PortConfig, ...] = (),
    healthcheck: Healthcheck | None = None,
) -> ServiceSpec:
    return ServiceSpec(
        name="web",
        task_template=TaskSpec(container=ContainerSpec(image=image, healthcheck=healthcheck)),
        mode=ServiceMode(
            kind=mode,  # type: ignore[arg-type]
            replicas=0 if mode in ("global", "global-job") else replicas,
        ),
        update_config=update,
        rollback_config=rollback,
        endpoint_spec=EndpointSpec(ports=ports),
    )


def service(s: ServiceSpec, *, spec_version: int = 1) -> Service:
    return Service(
        id=SERVICE_ID,
        name=s.name,
        spec=s,
        spec_version=spec_version,
        created=stamp_of(T0 - 3600),
        updated=stamp_of(T0 - 3600),
    )


def task(
    slot: int,
    node: str = "n1",
    state: str = "running",
    *,
    of: ServiceSpec,
    desired: str = "running",
    spec_version: int = 1,
    timestamp: float = T0 - 600,
    health: str | None = None,
) -> Task:
    return Task(
        id=f"old{next(_ids):04d}",
        service_id=SERVICE_ID,
        slot=slot,
        node_id=node,
        desired_state=DesiredState(desired),
        spec=of.task_template,
        spec_version=spec_version,
        status=status(state, state, timestamp=timestamp, health=health),
        endpoint=endpoint(of.endpoint_spec.ports),
        created=stamp_of(T0 - 3600),
        updated=stamp_of(T0 - 3600),
    )


def node(node_id: str) -> Node:
    return Node(
        id=node_id,
        hostname=node_id,
        status=NodeStatus.READY,
        availability=NodeAvailability.ACTIVE,
    )


NODES = {n: node(n) for n in ("n1", "n2", "n3")}


def updating(
    old: ServiceSpec,
    new: ServiceSpec,
    *,
    replicas: int | None = None,
    global_on: Sequence[str] = (),
) -> tuple[Service, list[Task]]:
    """The service once ``new`` replaced ``old`` (spec version 1 -> 2), and its old tasks."""
    before = service(old, spec_version=1)
    if global_on:
        tasks = [task(0, n, of=old) for n in global_on]
    else:
        count = old.mode.replicas if replicas is None else replicas
        tasks = [task(s, f"n{(s - 1) % 3 + 1}", of=old) for s in range(1, count + 1)]
    return start_update(before, new, T0 - 1, rollback=False), tasks


def apply(tasks: Iterable[Task], plan: UpdatePlan) -> list[Task]:
    by_id = {t.id: t for t in tasks}
    for t in plan.put:
        by_id[t.id] = t
    return sorted(by_id.values(), key=lambda t: (t.slot, t.node_id, t.created, t.id))


def report(
    tasks: Sequence[Task],
    state: str,
    at: float,
    which: Iterable[str],
    *,
    health: str | None = None,
) -> list[Task]:
    """Nodes report ``state`` for the given tasks (placed on n1 if still unassigned)."""
    chosen = set(which)
    out = []
    for t in tasks:
        if t.id in chosen:
            reported = status(state, state, timestamp=at, health=health)
            t = dataclasses.replace(t, node_id=t.node_id or "n1", status=reported)
        out.append(t)
    return out


def new_ones(plan: UpdatePlan, known: Iterable[Task]) -> list[Task]:
    ids = {t.id for t in known}
    return [t for t in plan.put if t.id not in ids]


def started(plan: UpdatePlan) -> list[Task]:
    """The new tasks of a plan (old ones only ever get desired state shutdown)."""
    return [t for t in plan.put if live(t)]


def changed(plan: UpdatePlan, known: Iterable[Task]) -> dict[str, str]:
    ids = {t.id for t in known}
    return {t.id: t.desired_state for t in plan.put if t.id in ids}


def step(
    svc: Service,
    tasks: Sequence[Task],
    now: float,
    *,
    last_batch_at: float = 0.0,
    failures: set[str] | None = None,
    passed: set[str] | None = None,
    nodes: dict[str, Node] | None = None,
) -> UpdatePlan:
    return plan_update(
        svc,
        tasks,
        NODES if nodes is None else nodes,
        now,
        last_batch_at=last_batch_at,
        failures=set() if failures is None else failures,
        passed=passed,
    )


OLD = spec(image="nginx:1")


# --- dirty ---------------------------------------------------------------------------------


def test_dirty_detects_a_spec_change() -> None:
    t = task(1, of=OLD)
    assert not dirty(t, OLD)
    assert dirty(t, spec(image="nginx:2"))


def test_dirty_detects_a_port_change() -> None:
    with_port = spec(ports=(PortConfig(target=80, published=8080),))
    other_port = spec(ports=(PortConfig(target=80, published=8081),))
    t = task(1, of=OLD)
    assert dirty(t, with_port)
    assert not dirty(task(1, of=with_port), with_port)
    assert dirty(task(1, of=with_port), other_port)
    assert dirty(task(1, of=with_port), OLD)


# --- batches -------------------------------------------------------------------------------


def test_parallelism_2_replaces_two_tasks_per_batch_stop_first() -> None:
    new = spec(image="nginx:2", update=UpdateConfig(parallelism=2, monitor_ns=5 * SECOND))
    svc, tasks = updating(OLD, new)
    plan = step(svc, tasks, T0)
    assert plan.batch_started
    assert plan.status is None
    assert not plan.rollback
    assert changed(plan, tasks) == {tasks[0].id: "shutdown", tasks[1].id: "shutdown"}
    fresh = new_ones(plan, tasks)
    assert sorted(t.slot for t in fresh) == [1, 2]
    for t in fresh:
        assert t.desired_state == "running"
        assert t.spec_version == 2
        assert t.spec == new.task_template
        assert t.node_id == ""
        assert observed(t) is TaskState.PENDING


def test_the_next_batch_starts_once_the_new_tasks_run() -> None:
    new = spec(image="nginx:2", update=UpdateConfig(parallelism=2, monitor_ns=5 * SECOND))
    svc, tasks = updating(OLD, new)
    first = step(svc, tasks, T0)
    tasks = apply(tasks, first)
    batch = [t.id for t in started(first)]

    # not yet running: in flight, nothing to wake for (a task report will come)
    plan = step(svc, tasks, T0 + 1, last_batch_at=T0)
    assert plan.put == [] and plan.status is None and plan.wake_at is None

    # running: the next batch goes at once, as in Swarm; the monitor period runs meanwhile
    tasks = report(tasks, "running", T0 + 2, batch)
    plan = step(svc, tasks, T0 + 3, last_batch_at=T0)
    assert plan.batch_started and plan.status is None
    assert sorted(t.slot for t in plan.put if t.desired_state == "running") == [3, 4]
    assert plan.wake_at == T0 + 7


def test_the_update_completes_only_after_the_last_monitor_period() -> None:
    new = spec(2, image="nginx:2", update=UpdateConfig(parallelism=0, monitor_ns=5 * SECOND))
    svc, tasks = updating(OLD, new, replicas=2)
    first = step(svc, tasks, T0)
    tasks = apply(tasks, first)
    tasks = report(tasks, "running", T0 + 1, [t.id for t in started(first)])
    plan = step(svc, tasks, T0 + 3, last_batch_at=T0)
    assert plan.status is None and plan.wake_at == T0 + 6
    plan = step(svc, tasks, T0 + 6, last_batch_at=T0)
    assert plan.status is not None and plan.status.state == "completed"


def test_the_delay_holds_the_next_batch_back() -> None:
    cfg = UpdateConfig(parallelism=2, monitor_ns=5 * SECOND, delay_ns=10 * SECOND)
    svc, tasks = updating(OLD, spec(image="nginx:2", update=cfg))
    first = step(svc, tasks, T0)
    tasks = apply(tasks, first)
    tasks = report(tasks, "running", T0 + 1, [t.id for t in started(first)])
    plan = step(svc, tasks, T0 + 6, last_batch_at=T0)
    assert plan.put == [] and plan.status is None
    assert plan.wake_at is not None and plan.wake_at > T0 + 6

    plan = step(svc, tasks, T0 + 16, last_batch_at=T0)
    assert sorted(t.slot for t in plan.put if t.desired_state == "running") == [3, 4]


def test_the_delay_is_counted_from_when_the_previous_batch_came_up() -> None:
    cfg = UpdateConfig(parallelism=2, monitor_ns=5 * SECOND, delay_ns=10 * SECOND)
    svc, tasks = updating(OLD, spec(image="nginx:2", update=cfg))
    first = step(svc, tasks, T0)
    tasks = apply(tasks, first)
    tasks = report(tasks, "running", T0 + 3, [t.id for t in started(first)])
    # the batch came up at T0 + 3: the next one goes at T0 + 13
    plan = step(svc, tasks, T0 + 6, last_batch_at=T0)
    assert plan.put == [] and plan.wake_at == T0 + 8  # the end of the monitor period first
    plan = step(svc, tasks, T0 + 12.5, last_batch_at=T0)
    assert plan.put == []
    plan = step(svc, tasks, T0 + 13, last_batch_at=T0)
    assert plan.batch_started


def test_the_delay_applies_while_another_task_of_the_batch_is_still_in_flight() -> None:
    cfg = UpdateConfig(parallelism=2, monitor_ns=5 * SECOND, delay_ns=10 * SECOND)
    svc, tasks = updating(OLD, spec(image="nginx:2", update=cfg))
    first = step(svc, tasks, T0)
    tasks = apply(tasks, first)
    a, b = (t.id for t in started(first))
    tasks = report(tasks, "running", T0 + 1, [a])  # up at T0 + 1
    tasks = report(tasks, "running", T0 + 3, [b])  # up at T0 + 3: the next one at T0 + 13
    plan = step(svc, tasks, T0 + 12, last_batch_at=T0)
    assert plan.put == []


def test_parallelism_0_replaces_all_tasks_at_once() -> None:
    svc, tasks = updating(OLD, spec(image="nginx:2", update=UpdateConfig(parallelism=0)))
    plan = step(svc, tasks, T0)
    assert changed(plan, tasks) == {t.id: "shutdown" for t in tasks}
    assert sorted(t.slot for t in new_ones(plan, tasks)) == [1, 2, 3, 4, 5]


def test_start_first_does_not_shut_the_old_task_down() -> None:
    cfg = UpdateConfig(parallelism=2, order="start-first")
    svc, tasks = updating(OLD, spec(image="nginx:2", update=cfg))
    plan = step(svc, tasks, T0)
    assert changed(plan, tasks) == {}
    assert sorted(t.slot for t in new_ones(plan, tasks)) == [1, 2]


def test_a_rolling_update_progresses_batch_by_batch_to_completion() -> None:
    new = spec(image="nginx:2", update=UpdateConfig(parallelism=2, monitor_ns=5 * SECOND))
    svc, tasks = updating(OLD, new)
    failures: set[str] = set()
    batches: list[list[int]] = []
    now, last_batch = T0, 0.0
    for _ in range(20):
        plan = step(svc, tasks, now, last_batch_at=last_batch, failures=failures)
        if plan.status is not None:
            break
        if plan.batch_started:
            last_batch = now
            batches.append(sorted(t.slot for t in new_ones(plan, tasks)))
            tasks = apply(tasks, plan)
            tasks = report(tasks, "running", now + 1, [t.id for t in started(plan)])
        now = plan.wake_at if plan.wake_at is not None else now + 1
    assert batches == [[1, 2], [3, 4], [5]]
    assert plan.status is not None and plan.status.state == "completed"
    assert failures == set()
    assert sorted(t.slot for t in tasks if live(t)) == [1, 2, 3, 4, 5]
    assert all(t.spec_version == 2 for t in tasks if live(t))


# --- failures ------------------------------------------------------------------------------


def failing_update(action: str, **cfg: Any) -> tuple[Service, list[Task], Task]:
    """An update whose first new task (slot 1) failed; parallelism 1."""
    config = UpdateConfig(parallelism=1, failure_action=action, **cfg)  # type: ignore[arg-type]
    svc, tasks = updating(OLD, spec(image="nginx:2", update=config))
    first = step(svc, tasks, T0)
    tasks = apply(tasks, first)
    (fresh,) = started(first)
    tasks = report(tasks, "failed", T0 + 2, [fresh.id])
    return svc, tasks, fresh


def test_a_failed_new_task_with_failure_action_pause_pauses_the_update() -> None:
    svc, tasks, fresh = failing_update("pause")
    failures: set[str] = set()
    plan = step(svc, tasks, T0 + 3, last_batch_at=T0, failures=failures)
    assert plan.put == []
    assert not plan.rollback
    assert plan.status is not None
    assert plan.status.state == "paused"
    assert fresh.id in plan.status.message
    assert failures == {fresh.id}


def test_a_failed_new_task_with_failure_action_rollback_asks_for_a_rollback() -> None:
    svc, tasks, fresh = failing_update("rollback")
    assert svc.previous_spec
    plan = step(svc, tasks, T0 + 3, last_batch_at=T0)
    assert plan.rollback
    assert fresh.id in plan.reason
    assert plan.put == []


def test_a_failed_task_during_a_rollback_pauses_the_rollback() -> None:
    cfg = UpdateConfig(parallelism=1, failure_action="rollback")
    bad = spec(image="nginx:2", update=cfg, rollback=cfg)
    good = spec(image="nginx:1", update=cfg, rollback=cfg)
    before = service(bad, spec_version=2)
    svc = start_update(before, good, T0 - 1, rollback=True)
    tasks = [task(s, of=bad, spec_version=2) for s in (1, 2)]
    first = step(svc, tasks, T0)
    tasks = apply(tasks, first)
    tasks = report(tasks, "failed", T0 + 2, [t.id for t in started(first)])
    plan = step(svc, tasks, T0 + 3, last_batch_at=T0)
    assert not plan.rollback
    assert plan.status is not None and plan.status.state == "rollback_paused"


def test_a_failed_new_task_with_failure_action_continue_lets_the_update_go_on() -> None:
    svc, tasks, _ = failing_update("continue")
    plan = step(svc, tasks, T0 + 3, last_batch_at=T0)
    assert plan.status is None
    assert not plan.rollback
    assert plan.batch_started
    assert [t.slot for t in plan.put if live(t)] == [2]


def test_max_failure_ratio_tolerates_failures_up_to_the_ratio() -> None:
    cfg = UpdateConfig(parallelism=0, max_failure_ratio=0.25, monitor_ns=30 * SECOND)
    svc, tasks = updating(OLD, spec(4, image="nginx:2", update=cfg))
    first = step(svc, tasks, T0)
    tasks = apply(tasks, first)
    fresh = [t.id for t in started(first)]
    tasks = report(tasks, "running", T0 + 1, fresh)

    tasks = report(tasks, "failed", T0 + 2, fresh[:1])
    plan = step(svc, tasks, T0 + 3, last_batch_at=T0)
    assert plan.status is None and not plan.rollback  # 1 of 4: within 0.25

    tasks = report(tasks, "failed", T0 + 4, fresh[1:2])
    plan = step(svc, tasks, T0 + 5, last_batch_at=T0)
    assert plan.status is not None and plan.status.state == "paused"  # 2 of 4


def test_a_task_failing_after_its_monitor_period_is_not_an_update_failure() -> None:
    cfg = UpdateConfig(parallelism=1, monitor_ns=5 * SECOND, failure_action="pause")
    svc, tasks = updating(OLD, spec(2, image="nginx:2", update=cfg))
    failures: set[str] = set()
    passed: set[str] = set()
    first = step(svc, tasks, T0, failures=failures, passed=passed)
    tasks = apply(tasks, first)
    (a,) = started(first)
    tasks = report(tasks, "running", T0 + 1, [a.id])
    second = step(svc, tasks, T0 + 6, last_batch_at=T0, failures=failures, passed=passed)
    assert second.batch_started  # slot 1 is done: slot 2 goes next
    tasks = apply(tasks, second)
    (b,) = started(second)
    tasks = report(tasks, "running", T0 + 7, [b.id])

    tasks = report(tasks, "failed", T0 + 100, [a.id])  # long after its monitor period
    plan = step(svc, tasks, T0 + 100, last_batch_at=T0 + 6, failures=failures, passed=passed)
    assert plan.status is None or plan.status.state != "paused"


# --- health --------------------------------------------------------------------------------


def health_update() -> tuple[Service, list[Task], Task]:
    check = Healthcheck(test=("CMD", "true"), interval_ns=SECOND)
    cfg = UpdateConfig(parallelism=1, monitor_ns=5 * SECOND)
    svc, tasks = updating(OLD, spec(2, image="nginx:2", update=cfg, healthcheck=check))
    first = step(svc, tasks, T0)
    (fresh,) = started(first)
    return svc, apply(tasks, first), fresh


def test_a_new_task_whose_health_is_starting_is_still_in_flight() -> None:
    svc, tasks, fresh = health_update()
    tasks = report(tasks, "running", T0 + 1, [fresh.id], health="starting")
    plan = step(svc, tasks, T0 + 600, last_batch_at=T0)
    assert plan.put == []
    assert plan.status is None

    tasks = report(tasks, "running", T0 + 601, [fresh.id], health="healthy")
    plan = step(svc, tasks, T0 + 602, last_batch_at=T0)  # healthy: the next slot goes
    assert [t.slot for t in plan.put if live(t)] == [2]


def test_a_new_task_that_turns_unhealthy_counts_as_a_failure() -> None:
    svc, tasks, fresh = health_update()
    tasks = report(tasks, "running", T0 + 1, [fresh.id], health="unhealthy")
    failures: set[str] = set()
    plan = step(svc, tasks, T0 + 2, last_batch_at=T0, failures=failures)
    assert failures == {fresh.id}
    assert plan.status is not None and plan.status.state == "paused"
    assert plan.put == []


# --- completion ----------------------------------------------------------------------------


def test_the_update_completes_when_nothing_is_dirty_and_nothing_in_flight() -> None:
    new = spec(2, image="nginx:2", update=UpdateConfig(monitor_ns=5 * SECOND))
    svc, _ = updating(OLD, new)
    tasks = [task(s, of=new, spec_version=2, timestamp=T0 - 1) for s in (1, 2)]
    plan = step(svc, tasks, T0 + 1)
    assert plan.status is None  # still within the monitor period
    assert plan.wake_at == T0 + 4

    plan = step(svc, tasks, T0 + 4)
    assert plan.put == []
    assert plan.status is not None
    assert plan.status.state == "completed"
    assert plan.status.message == "update completed"
    assert plan.status.completed_at == stamp_of(T0 + 4)
    assert svc.update_status is not None
    assert plan.status.started_at == svc.update_status.started_at


def test_a_rollback_completes_as_rollback_completed() -> None:
    bad = spec(2, image="nginx:2")
    good = spec(2, image="nginx:1")
    svc = start_update(service(bad, spec_version=2), good, T0 - 100, rollback=True)
    tasks = [task(s, of=good, spec_version=3, timestamp=T0 - 60) for s in (1, 2)]
    plan = step(svc, tasks, T0)
    assert plan.status is not None
    assert plan.status.state == "rollback_completed"
    assert plan.status.message == "rollback completed"


# --- global services -----------------------------------------------------------------------


def test_a_global_service_is_updated_on_the_same_nodes() -> None:
    old = spec(mode="global")
    new = spec(mode="global", image="nginx:2", update=UpdateConfig(parallelism=0))
    svc, tasks = updating(old, new, global_on=("n1", "n2", "n3"))
    plan = step(svc, tasks, T0)
    assert changed(plan, tasks) == {t.id: "shutdown" for t in tasks}
    fresh = new_ones(plan, tasks)
    assert sorted(t.node_id for t in fresh) == ["n1", "n2", "n3"]
    assert all(observed(t) is TaskState.ASSIGNED and t.slot == 0 for t in fresh)


# --- start_update --------------------------------------------------------------------------


def test_start_update_bumps_the_version_keeps_the_previous_spec_and_sets_the_status() -> None:
    before = service(OLD, spec_version=7)
    new = spec(image="nginx:2")
    after = start_update(before, new, T0, rollback=False)
    assert after.spec == new
    assert after.spec_version == 8
    assert after.previous_spec == before.spec
    assert after.update_status is not None
    assert after.update_status.to_dict() == {
        "state": "updating",
        "started_at": stamp_of(T0),
        "message": "update in progress",
    }
    assert after.updated == stamp_of(T0)

    assert after.previous_spec is not None
    back = start_update(after, after.previous_spec, T0 + 5, rollback=True)
    assert back.spec == before.spec
    assert back.spec_version == 9
    assert back.previous_spec == new
    assert back.update_status is not None
    assert back.update_status.state == "rollback_started"
