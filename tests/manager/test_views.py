"""The rows managers show for `service ps`, `service ls` and `stack services`."""

from __future__ import annotations

from agent.cli.services import task_rows
from agent.manager.control.views import ps_order, service_row, task_row
from agent.manager.store import Node, NodeStatus, Service, Task
from agent.model import DesiredState
from agent.model.spec import (
    ContainerSpec,
    EndpointSpec,
    PortConfig,
    ServiceMode,
    ServiceSpec,
    TaskSpec,
)
from tests.store.store_values import status

NOW = 1_700_000_000.0
SPEC = TaskSpec(container=ContainerSpec(image="redis:7"))
NODES = {
    "n1": Node(id="n1", hostname="one", status=NodeStatus.READY),
    "n2": Node(id="n2", hostname="two", status=NodeStatus.READY),
}


def _service(ports: tuple[PortConfig, ...] = ()) -> Service:
    spec = ServiceSpec(name="cache", task_template=SPEC, endpoint_spec=EndpointSpec(ports=ports))
    return Service(id="svc", name="cache", spec=spec, spec_version=1)


def _task(
    ident: str,
    created: str,
    *,
    slot: int = 1,
    node: str = "n1",
    desired: DesiredState = DesiredState.SHUTDOWN,
    state: str = "shutdown",
    message: str = "",
) -> Task:
    return Task(
        id=ident,
        service_id="svc",
        slot=slot,
        node_id=node,
        desired_state=desired,
        spec=SPEC,
        status=status(state, message),
        created=created,
    )


def _stamp(minute: int) -> str:
    return f"2023-11-14T22:{minute:02d}:00.000000Z"


def test_a_drained_slot_lists_its_running_successor_first_then_its_history_newest_first() -> None:
    tasks = [
        _task("old-a", _stamp(1), state="failed"),
        _task(
            "pending-2", _stamp(9), slot=2, node="", desired=DesiredState.RUNNING, state="pending"
        ),
        _task("drained", _stamp(5), node="n1", state="shutdown"),
        _task("old-c", _stamp(3), node="n2", state="shutdown"),
        _task("running", _stamp(6), node="n2", desired=DesiredState.RUNNING, state="running"),
        _task("old-b", _stamp(2), node="n1", state="failed"),
        _task("never-placed", _stamp(4), node="", state="pending"),
    ]
    ordered = [t.id for t in ps_order(tasks)]
    assert ordered == [
        "running",
        "drained",
        "never-placed",
        "old-c",
        "old-b",
        "old-a",
        "pending-2",
    ]
    rows = task_rows([task_row(t, _service(), NODES, NOW) for t in ps_order(tasks)], no_trunc=True)
    assert [r["name"] for r in rows] == [
        "cache.1",
        " \\_ cache.1",
        " \\_ cache.1",
        " \\_ cache.1",
        " \\_ cache.1",
        " \\_ cache.1",
        "cache.2",
    ]


def test_a_slot_with_no_task_to_run_shows_its_newest_first() -> None:
    tasks = [_task("older", _stamp(1)), _task("newer", _stamp(2), state="complete")]
    assert [t.id for t in ps_order(tasks)] == ["newer", "older"]


def test_a_global_service_groups_its_tasks_node_by_node() -> None:
    tasks = [
        _task("n2-old", _stamp(1), slot=0, node="n2"),
        _task("n1-now", _stamp(2), slot=0, node="n1", desired=DesiredState.RUNNING),
        _task("n2-now", _stamp(3), slot=0, node="n2", desired=DesiredState.RUNNING),
        _task("n1-old", _stamp(4), slot=0, node="n1"),
    ]
    assert [t.id for t in ps_order(tasks)] == ["n1-now", "n1-old", "n2-now", "n2-old"]


def test_a_dynamic_port_shows_as_the_port_the_allocator_gave_out() -> None:
    service = _service((PortConfig(target=6379),))
    assert service_row(service, (), NODES)["ports"] == "*:0->6379/tcp"  # not allocated yet
    given = (PortConfig(target=6379, published=30000),)
    assert service_row(service, (), NODES, given)["ports"] == "*:30000->6379/tcp"


def test_a_task_that_fits_nowhere_shows_why_in_the_error_column() -> None:
    why = "no suitable node (scheduling constraints not satisfied on 1 node)"
    task = _task(
        "t", _stamp(1), node="", desired=DesiredState.RUNNING, state="pending", message=why
    )
    row = task_row(task, _service(), NODES, NOW)
    assert row["error"] == why and row["message"] == why
    (shown,) = task_rows([row], no_trunc=True)
    assert shown["error_text"] == f'"{why}"'


def test_a_task_waiting_to_be_scheduled_shows_no_error() -> None:
    task = _task(
        "t",
        _stamp(1),
        node="",
        desired=DesiredState.RUNNING,
        state="pending",
        message="pending task scheduling",
    )
    assert task_row(task, _service(), NODES, NOW)["error"] == ""


def _job(kind: str, replicas: int, max_concurrent: int | None = None) -> Service:
    mode = ServiceMode(kind=kind, replicas=replicas, max_concurrent=max_concurrent)  # type: ignore[arg-type]
    spec = ServiceSpec(name="job", task_template=SPEC, mode=mode)
    return Service(id="svc", name="job", spec=spec, spec_version=1)


def _job_task(ident: str, state: str, *, slot: int = 1, node: str = "n1") -> Task:
    return Task(
        id=ident,
        service_id="svc",
        slot=slot,
        node_id=node,
        desired_state=DesiredState.RUNNING,
        spec=SPEC,
        spec_version=1,
        status=status(state),
        created=_stamp(1),
    )


def test_a_replicated_job_shows_running_of_those_that_may_run_and_its_completions() -> None:
    job = _job("replicated-job", 5, max_concurrent=2)
    tasks = [
        _job_task("a", "complete", slot=1),
        _job_task("b", "complete", slot=2),
        _job_task("c", "running", slot=3),
        _job_task("d", "running", slot=4),
    ]
    row = service_row(job, tasks, NODES)
    assert row["mode"] == "replicated-job"
    assert row["replicas"] == "2/2 (2/5 completed)"
    tasks = [_job_task(str(i), "complete", slot=i) for i in range(1, 6)]
    assert service_row(job, tasks, NODES)["replicas"] == "0/0 (5/5 completed)"


def test_a_global_job_counts_the_nodes_still_to_complete() -> None:
    job = _job("global-job", 0)
    tasks = [
        _job_task("a", "complete", slot=0, node="n1"),
        _job_task("b", "running", slot=0, node="n2"),
    ]
    assert service_row(job, tasks, NODES)["replicas"] == "1/1 (1/2 completed)"


def test_a_jobs_completed_task_shows_desired_state_complete_and_a_running_one_running() -> None:
    job = _job("replicated-job", 2)
    done, running = _job_task("a", "complete"), _job_task("b", "running", slot=2)
    rows = task_rows([task_row(t, job, NODES, NOW) for t in (done, running)], no_trunc=True)
    assert [r["desired"] for r in rows] == ["Complete", "Running"]
    assert [r["desired_state"] for r in rows] == ["running", "running"]  # what scripts read


def test_a_replicated_services_completed_task_keeps_its_desired_state() -> None:
    task = _task("t", _stamp(1), desired=DesiredState.RUNNING, state="complete")
    assert task_row(task, _service(), NODES, NOW)["desired"] == "running"


def test_service_rows_carry_the_services_labels() -> None:
    spec = ServiceSpec(name="cache", task_template=SPEC, labels={"tier": "db"})
    row = service_row(Service(id="svc", name="cache", spec=spec, spec_version=1), (), NODES)
    assert row["labels"] == {"tier": "db"}
