"""The orchestrator's pure core: what ``plan_service`` decides for one service at one moment."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence

from agent.manager.reconcile.orchestrator import Plan, live, observed, plan_service
from agent.manager.store import Node, NodeAvailability, NodeRole, NodeStatus, Service, Task
from agent.model import DesiredState, TaskState
from agent.model.spec import (
    SECOND,
    ContainerSpec,
    Placement,
    RestartPolicy,
    ServiceMode,
    ServiceSpec,
    TaskSpec,
)
from agent.model.stamps import stamp_of
from tests.store.store_values import status

T0 = 1_700_000_000.0
SERVICE_ID = "svc"

_ids = itertools.count(1)


def ms(when: float) -> int:
    return int(when * 1000)


def service(
    replicas: int = 3,
    *,
    mode: str = "replicated",
    restart: RestartPolicy | None = None,
    constraints: tuple[str, ...] = (),
    max_concurrent: int | None = None,
    disconnect_window_s: float = 2,
    image: str = "nginx:1",
    spec_version: int = 1,
) -> Service:
    spec = ServiceSpec(
        name="web",
        task_template=TaskSpec(
            container=ContainerSpec(image=image),
            restart_policy=restart or RestartPolicy(),
            placement=Placement(constraints=constraints),
        ),
        mode=ServiceMode(
            kind=mode,  # type: ignore[arg-type]
            replicas=0 if mode in ("global", "global-job") else replicas,
            max_concurrent=max_concurrent,
        ),
        disconnect_window_ns=int(disconnect_window_s * SECOND),
    )
    return Service(
        id=SERVICE_ID,
        name="web",
        spec=spec,
        spec_version=spec_version,
        created=stamp_of(T0 - 3600),
        updated=stamp_of(T0 - 3600),
    )


def template_of(svc: Service) -> TaskSpec:
    return svc.spec.task_template


def task(
    slot: int,
    node: str = "",
    state: str = "running",
    *,
    desired: str = "running",
    svc: Service | None = None,
    spec_version: int = 1,
    timestamp: float = T0 - 60,
    created: float = T0 - 600,
    restarts: tuple[int, ...] = (),
    exit_code: int | None = None,
    ident: str | None = None,
) -> Task:
    return Task(
        id=ident or f"task{next(_ids):04d}",
        service_id=SERVICE_ID,
        slot=slot,
        node_id=node,
        desired_state=DesiredState(desired),
        spec=template_of(svc or service()),
        spec_version=spec_version,
        status=status(state, state, timestamp=timestamp, exit_code=exit_code),
        restarts=restarts,
        created=stamp_of(created),
        updated=stamp_of(created),
    )


def node(
    node_id: str,
    status: str = "ready",
    availability: str = "active",
    *,
    role: str = "worker",
    updated: float = T0 - 3600,
) -> Node:
    return Node(
        id=node_id,
        role=NodeRole(role),
        hostname=node_id,
        status=NodeStatus(status),
        availability=NodeAvailability(availability),
        description={"hostname": node_id, "platform": {"os": "linux", "arch": "x86_64"}},
        created=stamp_of(T0 - 7200),
        updated=stamp_of(updated),
    )


def nodes(*items: Node) -> dict[str, Node]:
    return {n.id: n for n in items}


NODES = nodes(node("n1"), node("n2"), node("n3"))


def apply(tasks: Iterable[Task], plan: Plan) -> list[Task]:
    """The tasks once ``plan`` is written, as the orchestrator's shell would write it."""
    by_id = {t.id: t for t in tasks}
    for t in plan.put:
        by_id[t.id] = t
    for ident in plan.delete:
        by_id.pop(ident, None)
    return sorted(by_id.values(), key=lambda t: (t.slot, t.created, t.id))


def report(
    tasks: Sequence[Task],
    state: str,
    at: float,
    *,
    which: Iterable[str] | None = None,
    node_id: str = "n1",
    exit_code: int | None = None,
) -> list[Task]:
    """Nodes report ``state`` for the given live tasks (all live tasks when ``which`` is None);
    an unassigned task is placed on ``node_id`` first, as the scheduler would."""
    chosen = set(which) if which is not None else {t.id for t in tasks if live(t)}
    out = []
    for t in tasks:
        if t.id in chosen:
            reported = status(state, state, timestamp=at, exit_code=exit_code)
            t = dataclasses.replace(t, node_id=t.node_id or node_id, status=reported)
        out.append(t)
    return out


def live_slots(tasks: Iterable[Task]) -> list[int]:
    return sorted(t.slot for t in tasks if live(t))


def created(plan: Plan, known: Iterable[Task]) -> list[Task]:
    ids = {t.id for t in known}
    return [t for t in plan.put if t.id not in ids]


def changed(plan: Plan, known: Iterable[Task]) -> dict[str, str]:
    """Task id -> new desired state, for the known tasks the plan changes."""
    ids = {t.id for t in known}
    return {t.id: t.desired_state for t in plan.put if t.id in ids}


def empty(plan: Plan) -> bool:
    return not plan.put and not plan.delete


# --- replicated services ------------------------------------------------------------------


def test_creates_replicas_pending_tasks_in_slots_1_to_n() -> None:
    svc = service(3, spec_version=4)
    plan = plan_service(svc, [], NODES, T0)
    assert sorted(t.slot for t in plan.put) == [1, 2, 3]
    assert plan.delete == []
    assert plan.wake_at is None
    for t in plan.put:
        assert t.service_id == SERVICE_ID
        assert t.desired_state == "running"
        assert t.node_id == ""
        assert observed(t) is TaskState.PENDING
        assert t.spec == template_of(svc)
        assert t.spec_version == 4
        assert t.restarts == ()
    assert len({t.id for t in plan.put}) == 3


def test_idempotent_when_every_slot_has_a_live_task() -> None:
    tasks = [task(1, "n1"), task(2, "n2"), task(3, "", "pending")]
    plan = plan_service(service(3), tasks, NODES, T0)
    assert plan == Plan()


def test_scale_up_fills_the_missing_slots() -> None:
    tasks = [task(1, "n1"), task(3, "n2")]
    plan = plan_service(service(5), tasks, NODES, T0)
    assert changed(plan, tasks) == {}
    assert sorted(t.slot for t in created(plan, tasks)) == [2, 4, 5]


def test_scale_down_shuts_down_the_highest_slots() -> None:
    tasks = [task(s, "n1") for s in range(1, 6)]
    plan = plan_service(service(2), tasks, NODES, T0)
    assert created(plan, tasks) == []
    assert changed(plan, tasks) == {t.id: "shutdown" for t in tasks if t.slot > 2}


def test_scaling_3_to_5_to_2_converges_to_slots_1_to_n() -> None:
    tasks: list[Task] = []
    for replicas, now in ((3, T0), (5, T0 + 10), (2, T0 + 20)):
        svc = service(replicas)
        tasks = apply(tasks, plan_service(svc, tasks, NODES, now))
        tasks = report(
            tasks,
            "running",
            now,
            which=[t.id for t in tasks if t.status and t.status.state is TaskState.PENDING],
        )
        assert live_slots(tasks) == list(range(1, replicas + 1))
        assert empty(plan_service(svc, tasks, NODES, now + 1))
    # the slots scaled away were stopped, not deleted while their node may still run them
    assert sorted(t.slot for t in tasks if not live(t)) == [3, 4, 5]


def test_a_replacement_gets_the_current_spec() -> None:
    old = service(1, image="nginx:1", spec_version=1)
    new = service(1, image="nginx:2", spec_version=2)
    failed = task(1, "n1", "failed", svc=old, timestamp=T0 - 60)
    plan = plan_service(new, [failed], NODES, T0)
    (replacement,) = created(plan, [failed])
    assert replacement.spec == template_of(new)
    assert replacement.spec_version == 2


# --- restarts -----------------------------------------------------------------------------


def test_a_failed_task_is_replaced_only_after_the_restart_delay() -> None:
    svc = service(1, restart=RestartPolicy(condition="any", delay_ns=10 * SECOND, max_attempts=5))
    failed = task(1, "n1", "failed", timestamp=T0, restarts=(ms(T0 - 500),))

    early = plan_service(svc, [failed], NODES, T0 + 3)
    assert empty(early)
    assert early.wake_at == T0 + 10

    plan = plan_service(svc, [failed], NODES, T0 + 10)
    assert changed(plan, [failed]) == {failed.id: "shutdown"}
    (replacement,) = created(plan, [failed])
    assert replacement.slot == 1
    assert replacement.node_id == ""  # a replicated task may move to another node
    assert observed(replacement) is TaskState.PENDING
    assert replacement.restarts == (ms(T0 - 500), ms(T0 + 10))


def test_restart_condition_none_never_replaces() -> None:
    svc = service(2, restart=RestartPolicy(condition="none", delay_ns=0))
    tasks = [
        task(1, "n1", "failed", timestamp=T0 - 3600, exit_code=1),
        task(2, "n2", "complete", timestamp=T0 - 3600, exit_code=0),
    ]
    for now in (T0, T0 + 86400):
        plan = plan_service(svc, tasks, NODES, now)
        assert empty(plan)
        assert plan.wake_at is None


def test_on_failure_does_not_replace_a_task_that_completed_with_exit_0() -> None:
    svc = service(1, restart=RestartPolicy(condition="on-failure", delay_ns=0))
    done = task(1, "n1", "complete", exit_code=0)
    plan = plan_service(svc, [done], NODES, T0)
    assert empty(plan)
    assert plan.wake_at is None


def test_on_failure_replaces_a_failed_task() -> None:
    svc = service(1, restart=RestartPolicy(condition="on-failure", delay_ns=0))
    failed = task(1, "n1", "failed", exit_code=3)
    plan = plan_service(svc, [failed], NODES, T0)
    assert changed(plan, [failed]) == {failed.id: "shutdown"}
    assert [t.slot for t in created(plan, [failed])] == [1]


def test_max_attempts_without_window_stops_after_that_many_restarts() -> None:
    svc = service(1, restart=RestartPolicy(delay_ns=0, max_attempts=2))
    tasks = apply([], plan_service(svc, [], NODES, T0))
    restarts = 0
    for i in range(1, 6):
        now = T0 + 100 * i
        tasks = report(tasks, "failed", now, exit_code=1)
        plan = plan_service(svc, tasks, NODES, now)
        if empty(plan):
            break
        restarts += 1
        tasks = apply(tasks, plan)
    assert restarts == 2
    assert len(tasks) == 3
    assert plan.wake_at is None
    # ... and it stays given up on
    assert empty(plan_service(svc, tasks, NODES, T0 + 86400))


def test_max_attempts_with_window_counts_only_restarts_inside_the_window() -> None:
    svc = service(1, restart=RestartPolicy(delay_ns=0, max_attempts=1, window_ns=60 * SECOND))
    recent = task(1, "n1", "failed", timestamp=T0, restarts=(ms(T0 - 30),))
    assert empty(plan_service(svc, [recent], NODES, T0))

    outside = task(1, "n1", "failed", timestamp=T0, restarts=(ms(T0 - 120),))
    plan = plan_service(svc, [outside], NODES, T0)
    assert changed(plan, [outside]) == {outside.id: "shutdown"}
    (replacement,) = created(plan, [outside])
    assert replacement.restarts[-1] == ms(T0)


# --- nodes --------------------------------------------------------------------------------


def test_a_task_on_a_drained_node_is_replaced_at_once_without_counting_a_restart() -> None:
    # no restart attempt left: moving off a drained node is not a restart
    svc = service(1, restart=RestartPolicy(delay_ns=60 * SECOND, max_attempts=1))
    ns = nodes(node("n1", availability="drain"), node("n2"))
    running = task(1, "n1", restarts=(ms(T0 - 10),))
    plan = plan_service(svc, [running], ns, T0)
    assert changed(plan, [running]) == {running.id: "shutdown"}
    (replacement,) = created(plan, [running])
    assert replacement.slot == 1
    assert replacement.node_id == ""
    assert replacement.restarts == (ms(T0 - 10),)
    assert plan.wake_at is None


def test_a_task_on_a_down_node_is_replaced_only_after_the_disconnect_window() -> None:
    svc = service(1, disconnect_window_s=30)
    ns = nodes(node("n1", status="down", updated=T0), node("n2"))
    running = task(1, "n1")

    early = plan_service(svc, [running], ns, T0 + 10)
    assert empty(early)
    assert early.wake_at == T0 + 30

    plan = plan_service(svc, [running], ns, T0 + 30)
    assert changed(plan, [running]) == {running.id: "shutdown"}
    (replacement,) = created(plan, [running])
    assert replacement.slot == 1
    assert replacement.node_id == ""
    assert replacement.restarts == ()


def test_a_task_on_a_node_removed_from_the_swarm_is_replaced_at_once() -> None:
    running = task(1, "gone")
    plan = plan_service(service(1), [running], NODES, T0)
    assert changed(plan, [running]) == {running.id: "shutdown"}
    (replacement,) = created(plan, [running])
    assert replacement.slot == 1
    assert replacement.restarts == ()
    assert plan.wake_at is None


# --- global services ----------------------------------------------------------------------


def test_global_service_runs_one_task_per_ready_active_node() -> None:
    ns = nodes(
        node("a"),
        node("b", role="manager"),
        node("down", status="down"),
        node("unknown", status="unknown"),
        node("drained", availability="drain"),
        node("paused", availability="pause"),
    )
    plan = plan_service(service(mode="global"), [], ns, T0)
    assert sorted(t.node_id for t in plan.put) == ["a", "b"]
    for t in plan.put:
        assert t.slot == 0
        assert observed(t) is TaskState.ASSIGNED
    tasks = apply([], plan)
    assert empty(plan_service(service(mode="global"), tasks, ns, T0 + 1))


def test_global_service_shuts_down_tasks_on_drained_nodes() -> None:
    ns = nodes(node("a"), node("drained", availability="drain"))
    tasks = [task(0, "a"), task(0, "drained")]
    plan = plan_service(service(mode="global"), tasks, ns, T0)
    assert changed(plan, tasks) == {tasks[1].id: "shutdown"}
    assert created(plan, tasks) == []


def test_global_service_keeps_tasks_on_paused_nodes_but_starts_none_there() -> None:
    ns = nodes(node("a"), node("p1", availability="pause"), node("p2", availability="pause"))
    tasks = [task(0, "p1")]
    plan = plan_service(service(mode="global"), tasks, ns, T0)
    assert changed(plan, tasks) == {}
    assert [t.node_id for t in created(plan, tasks)] == ["a"]


def test_global_service_honours_a_node_role_manager_constraint() -> None:
    svc = service(mode="global", constraints=("node.role==manager",))
    ns = nodes(node("m1", role="manager"), node("m2", role="manager"), node("w1"))
    plan = plan_service(svc, [], ns, T0)
    assert sorted(t.node_id for t in plan.put) == ["m1", "m2"]

    # a node that stops matching loses its task
    tasks = [task(0, "m1"), task(0, "w1")]
    plan = plan_service(svc, tasks, ns, T0)
    assert changed(plan, tasks) == {tasks[1].id: "shutdown"}
    assert [t.node_id for t in created(plan, tasks)] == ["m2"]


def test_global_service_restarts_a_failed_task_on_the_same_node() -> None:
    svc = service(mode="global", restart=RestartPolicy(delay_ns=0))
    ns = nodes(node("a"))
    failed = task(0, "a", "failed", exit_code=1)
    plan = plan_service(svc, [failed], ns, T0)
    assert changed(plan, [failed]) == {failed.id: "shutdown"}
    (replacement,) = created(plan, [failed])
    assert replacement.node_id == "a"
    assert replacement.restarts == (ms(T0),)


# --- jobs ---------------------------------------------------------------------------------


def test_replicated_job_runs_replicas_completions_at_most_max_concurrent_at_a_time() -> None:
    svc = service(5, mode="replicated-job", max_concurrent=2)
    tasks: list[Task] = []
    for i in range(10):
        now = T0 + 10 * i
        plan = plan_service(svc, tasks, NODES, now)
        if empty(plan):
            break
        assert changed(plan, tasks) == {}
        tasks = apply(tasks, plan)
        unfinished = [t for t in tasks if not observed(t).is_terminal]
        assert 1 <= len(unfinished) <= 2
        tasks = report(tasks, "running", now + 1, which=[t.id for t in unfinished])
        tasks = report(tasks, "complete", now + 5, which=[t.id for t in unfinished], exit_code=0)
    assert sorted(t.slot for t in tasks) == [1, 2, 3, 4, 5]
    assert all(observed(t) is TaskState.COMPLETE for t in tasks)
    assert i == 3  # 2 + 2 + 1, then nothing


def test_replicated_job_never_reruns_a_completed_task() -> None:
    svc = service(3, mode="replicated-job", restart=RestartPolicy(condition="any", delay_ns=0))
    tasks = [task(s, "n1", "complete", exit_code=0) for s in (1, 2, 3)]
    for now in (T0, T0 + 86400):
        plan = plan_service(svc, tasks, NODES, now)
        assert empty(plan)
        assert plan.wake_at is None


def test_replicated_job_task_waiting_for_its_restart_still_counts_against_max_concurrent() -> None:
    svc = service(
        3, mode="replicated-job", max_concurrent=1, restart=RestartPolicy(delay_ns=10 * SECOND)
    )
    tasks = apply([], plan_service(svc, [], NODES, T0))
    assert [t.slot for t in tasks] == [1]
    tasks = report(tasks, "failed", T0 + 1, exit_code=1)
    for now in (T0 + 2, T0 + 11, T0 + 12):
        tasks = apply(tasks, plan_service(svc, tasks, NODES, now))
        tasks = report(
            tasks,
            "running",
            now,
            which=[t.id for t in tasks if t.status and t.status.state is TaskState.PENDING],
        )
        unfinished = [t for t in tasks if live(t) and not observed(t).is_terminal]
        assert len(unfinished) <= 1, [t.slot for t in unfinished]


def test_global_job_runs_once_per_node() -> None:
    svc = service(mode="global-job")
    ns = nodes(node("a"), node("b"))
    tasks = apply([], plan_service(svc, [], ns, T0))
    assert sorted(t.node_id for t in tasks) == ["a", "b"]
    tasks = report(tasks, "complete", T0 + 5, exit_code=0)
    assert empty(plan_service(svc, tasks, ns, T0 + 10))

    # a node joining later runs it once too
    ns = nodes(node("a"), node("b"), node("c"))
    plan = plan_service(svc, tasks, ns, T0 + 20)
    assert changed(plan, tasks) == {}
    assert [t.node_id for t in created(plan, tasks)] == ["c"]


# --- task history -------------------------------------------------------------------------


def test_history_deletes_the_oldest_stopped_tasks_of_a_slot_once_finished() -> None:
    oldest = task(1, "n1", "shutdown", desired="shutdown", created=T0 - 500)
    still_running = task(1, "n1", "running", desired="shutdown", created=T0 - 400)
    newest_stopped = task(1, "n1", "failed", desired="shutdown", created=T0 - 300)
    current = task(1, "n1", "running", created=T0 - 200)
    tasks = [oldest, still_running, newest_stopped, current]
    plan = plan_service(service(1), tasks, NODES, T0, history=2)
    assert plan.put == []
    # history 2 = the live task and the newest stopped one; of the older two, only the one its
    # node has stopped can go: the other is deleted once the node reports it stopped
    assert plan.delete == [oldest.id]

    tasks = report(tasks, "shutdown", T0 + 1, which=[still_running.id])
    plan = plan_service(service(1), tasks, NODES, T0 + 1, history=2)
    assert sorted(plan.delete) == sorted([oldest.id, still_running.id])


def test_history_deletes_stopped_tasks_never_accepted_or_whose_node_is_gone() -> None:
    never_placed = task(1, "", "pending", desired="shutdown", created=T0 - 500)
    never_accepted = task(1, "n1", "assigned", desired="shutdown", created=T0 - 450)
    node_gone = task(1, "gone", "running", desired="shutdown", created=T0 - 400)
    accepted = task(1, "n1", "accepted", desired="shutdown", created=T0 - 350)
    kept = task(1, "n1", "shutdown", desired="shutdown", created=T0 - 300)
    current = task(1, "n1", "running", created=T0 - 200)
    tasks = [never_placed, never_accepted, node_gone, accepted, kept, current]
    plan = plan_service(service(1), tasks, NODES, T0, history=2)
    assert sorted(plan.delete) == sorted([never_placed.id, never_accepted.id, node_gone.id])


def test_history_deletes_stopped_tasks_of_slots_above_the_replica_count() -> None:
    tasks = [
        task(1, "n1"),
        task(2, "n1"),
        task(3, "n1", "shutdown", desired="shutdown", created=T0 - 500),
        task(3, "n2", "failed", desired="shutdown", created=T0 - 400),
        task(4, "n1", "complete", desired="shutdown", created=T0 - 300),
        task(4, "n2", "running", desired="shutdown", created=T0 - 200),  # still stopping
    ]
    plan = plan_service(service(2), tasks, NODES, T0, history=5)
    assert plan.put == []
    assert sorted(plan.delete) == sorted(t.id for t in tasks[2:5])


# --- removed services ---------------------------------------------------------------------


def test_a_removed_service_deletes_or_removes_its_tasks() -> None:
    pending = task(1, "", "pending")
    running = task(2, "n1", "running")
    stopping = task(3, "n2", "running", desired="remove")
    failed = task(4, "n1", "failed", desired="shutdown")
    orphan = task(5, "gone", "running")
    tasks = [pending, running, stopping, failed, orphan]
    plan = plan_service(None, tasks, NODES, T0)
    assert sorted(plan.delete) == sorted([pending.id, failed.id, orphan.id])
    assert changed(plan, tasks) == {running.id: "remove"}
    assert created(plan, tasks) == []

    # once the node reports the task gone, it is deleted
    tasks = apply(tasks, plan)
    tasks = report(tasks, "shutdown", T0 + 5, which=[running.id, stopping.id])
    plan = plan_service(None, tasks, NODES, T0 + 5)
    assert sorted(plan.delete) == sorted([running.id, stopping.id])
    assert plan.put == []


# --- start-first updates ------------------------------------------------------------------


def test_start_first_keeps_the_old_task_until_its_successor_runs() -> None:
    svc = service(1, image="nginx:2", spec_version=2)
    old = task(1, "n1", "running", svc=service(1, image="nginx:1"), created=T0 - 600)
    new = task(1, "", "pending", svc=svc, spec_version=2, created=T0 - 10)
    plan = plan_service(svc, [old, new], NODES, T0)
    assert empty(plan)

    tasks = report([old, new], "starting", T0 + 1, which=[new.id], node_id="n2")
    assert empty(plan_service(svc, tasks, NODES, T0 + 1))

    tasks = report(tasks, "running", T0 + 2, which=[new.id])
    plan = plan_service(svc, tasks, NODES, T0 + 2)
    assert changed(plan, tasks) == {old.id: "shutdown"}
    assert created(plan, tasks) == []


def test_start_first_keeps_the_old_task_when_its_successor_fails() -> None:
    svc = service(1, image="nginx:2", spec_version=2, restart=RestartPolicy(delay_ns=10 * SECOND))
    old = task(1, "n1", "running", svc=service(1, image="nginx:1"), created=T0 - 600)
    new = task(1, "n2", "failed", svc=svc, spec_version=2, created=T0 - 10, timestamp=T0 - 1)
    plan = plan_service(svc, [old, new], NODES, T0)
    assert old.id not in changed(plan, [old, new])
    assert plan.wake_at == T0 + 9  # the successor's restart is still due


# --- rebalancing ------------------------------------------------------------------------------


def rebalancing(replicas: int = 4) -> Service:
    svc = service(replicas)
    spec = dataclasses.replace(svc.spec, rebalance=True)
    return dataclasses.replace(svc, spec=spec)


def test_rebalance_moves_one_task_to_a_node_that_returned() -> None:
    svc = rebalancing(4)
    tasks = [task(s, "n1" if s <= 3 else "n2", svc=svc) for s in range(1, 5)]
    plan = plan_service(svc, tasks, NODES, T0)
    moved = created(plan, tasks)
    assert len(moved) == 1 and moved[0].slot == 3 and moved[0].node_id == ""
    assert changed(plan, tasks) == {}  # the old task runs until its successor does

    # the successor runs on n3: the old one is stopped then, and nothing else moves
    tasks = apply(tasks, plan)
    tasks = report(tasks, "running", T0 + 1, which=[moved[0].id], node_id="n3")
    plan = plan_service(svc, tasks, NODES, T0 + 2)
    old = next(t for t in tasks if t.slot == 3 and t.node_id == "n1")
    assert changed(plan, tasks) == {old.id: "shutdown"}
    assert created(plan, tasks) == []


def test_rebalance_is_off_by_default_and_waits_for_every_task_to_run() -> None:
    tasks = [task(s, "n1") for s in range(1, 5)]
    assert plan_service(service(4), tasks, NODES, T0).put == []
    svc = rebalancing(4)
    tasks = [task(s, "n1", svc=svc) for s in range(1, 4)] + [task(4, "n1", "starting", svc=svc)]
    assert plan_service(svc, tasks, NODES, T0).put == []


def test_rebalance_leaves_an_even_spread_alone() -> None:
    svc = rebalancing(4)
    tasks = [task(s, f"n{1 + (s - 1) % 3}", svc=svc) for s in range(1, 5)]  # 2, 1, 1
    assert plan_service(svc, tasks, NODES, T0).put == []
