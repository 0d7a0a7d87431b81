"""The Prometheus metrics a manager serves, read from an in-memory store at scrape time, and
the scheduler and dispatcher latencies taken from task events."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.manager.cluster_monitor import RaftState
from agent.manager.metrics import LatencyTracker, ManagerCollector, ManagerState, TaskLatencies
from agent.manager.store import Event, Node, NodeStatus, Service, Store, Task
from agent.manager.store.store import Tx
from agent.metrics import DaemonMetrics, reason_label
from agent.model import TaskState, TaskStatus
from agent.model.spec import ContainerSpec, ServiceMode, ServiceSpec, TaskSpec

TEMPLATE = TaskSpec(container=ContainerSpec(image="busybox"))


def _store(*objects: object) -> Store:
    s = Store()
    index = 1

    async def commit(data: bytes) -> int:
        nonlocal index
        index += 1
        s.apply(index, data)
        return index

    s.proposer = commit

    def put(tx: Tx) -> None:
        for obj in objects:
            tx.put(obj)  # type: ignore[arg-type]

    asyncio.run(s.update(put))
    return s


def _task(tid: str, sid: str, state: TaskState, slot: int) -> Task:
    return Task(
        id=tid,
        service_id=sid,
        slot=slot,
        node_id="n1",
        spec=TEMPLATE,
        status=TaskStatus(task_id=tid, state=state, timestamp=1.0),
    )


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_a_manager_reports_raft_nodes_tasks_and_replicas_from_its_store() -> None:
    spec = ServiceSpec(name="web", task_template=TEMPLATE, mode=ServiceMode(replicas=3))
    store = _store(
        Node(id="n1", hostname="a", status=NodeStatus.READY),
        Node(id="n2", hostname="b", status=NodeStatus.DOWN),
        Service(id="s1", name="web", spec=spec),
        _task("t1", "s1", TaskState.RUNNING, 1),
        _task("t2", "s1", TaskState.RUNNING, 2),
        _task("t3", "s1", TaskState.PREPARING, 3),
    )
    raft = RaftState(leader="m1", term=7, commit_index=40, applied_index=39, voters=("m1",))
    registry = CollectorRegistry()
    registry.register(ManagerCollector(lambda: ManagerState(store.view(), raft, True, 3)))
    got = _samples(registry)
    assert got[("shoal_raft_term", ())] == 7
    assert got[("shoal_raft_commit_index", ())] == 40
    assert got[("shoal_raft_applied_index", ())] == 39
    assert got[("shoal_raft_is_leader", ())] == 1
    assert got[("shoal_raft_leader_changes_total", ())] == 3
    assert got[("shoal_nodes", (("status", "ready"),))] == 1
    assert got[("shoal_nodes", (("status", "down"),))] == 1
    assert got[("shoal_tasks", (("state", "running"),))] == 2
    assert got[("shoal_tasks", (("state", "preparing"),))] == 1
    assert got[("shoal_tasks", (("state", "failed"),))] == 0
    web = (("service", "web"), ("service_id", "s1"))
    assert got[("shoal_service_replicas_desired", web)] == 3
    assert got[("shoal_service_replicas_running", web)] == 2


def test_a_worker_has_no_manager_metrics() -> None:
    registry = CollectorRegistry()
    registry.register(ManagerCollector(lambda: None))
    assert not any(name.startswith("shoal_raft") for name, _ in _samples(registry))


def _ev(old: Task | None, new: Task | None) -> Event:
    return Event("task", "update", (new or old).id, old, new)  # type: ignore[union-attr]


def _at(state: TaskState, at: float, created: str = "2026-01-01T00:00:00.000+00:00") -> Task:
    return Task(
        id="t1",
        spec=TEMPLATE,
        created=created,
        status=TaskStatus(task_id="t1", state=state, timestamp=at),
    )


def test_latencies_run_from_created_to_assigned_and_from_assigned_to_running() -> None:
    created = 1767225600.0  # 2026-01-01T00:00:00Z
    tracker = LatencyTracker()
    new, assigned = _at(TaskState.PENDING, created), _at(TaskState.ASSIGNED, created + 0.5)
    starting, running = _at(TaskState.STARTING, created + 2), _at(TaskState.RUNNING, created + 3)
    assert tracker.note(_ev(None, new)) == []
    assert tracker.note(_ev(new, assigned)) == [("scheduler", 0.5)]
    assert tracker.note(_ev(assigned, starting)) == []
    assert tracker.note(_ev(starting, running)) == [("dispatcher", 2.5)]
    assert tracker.note(_ev(running, running)) == []  # a repeat is not a second start


def test_a_task_that_fails_before_running_leaves_no_dispatcher_latency() -> None:
    tracker = LatencyTracker()
    assigned, failed = _at(TaskState.ASSIGNED, 10.0), _at(TaskState.FAILED, 11.0)
    tracker.note(_ev(None, assigned))
    assert tracker.note(_ev(assigned, failed)) == []
    assert tracker.note(_ev(failed, _at(TaskState.RUNNING, 12.0))) == []


def test_latency_histograms_live_in_the_daemons_own_registry() -> None:
    registry = CollectorRegistry()
    latencies = TaskLatencies(registry)
    latencies.observe(_ev(None, _at(TaskState.ASSIGNED, 1767225600.25)))
    got = _samples(registry)
    assert got[("shoal_scheduler_latency_seconds_count", ())] == 1
    assert got[("shoal_scheduler_latency_seconds_bucket", (("le", "0.5"),))] == 1
    assert got[("shoal_scheduler_latency_seconds_bucket", (("le", "0.1"),))] == 0
    assert got[("shoal_dispatcher_latency_seconds_count", ())] == 0
    TaskLatencies(CollectorRegistry())  # a second daemon in one process: no clash


class _Session:
    def __init__(self) -> None:
        from broker.envelope import Rejections
        from broker.session import Traffic

        self.traffic = Traffic(messages_in=5, bytes_in=500, messages_out=2, bytes_out=80)
        self.rejections = Rejections()


def test_mqtt_traffic_and_rejections_by_reason_with_numbers_folded() -> None:
    session = _Session()
    session.rejections.reject("t", "message of 5000000 bytes exceeds the 4194304-byte limit")
    session.rejections.reject("t", "message of 6000000 bytes exceeds the 4194304-byte limit")
    session.rejections.reject("t", "empty message")
    metrics = DaemonMetrics(lambda: session)  # type: ignore[arg-type,return-value]
    got = _samples(metrics.registry)
    assert got[("shoal_mqtt_messages_received_total", ())] == 5
    assert got[("shoal_mqtt_bytes_received_total", ())] == 500
    assert got[("shoal_mqtt_messages_sent_total", ())] == 2
    assert got[("shoal_mqtt_bytes_sent_total", ())] == 80
    too_big = reason_label("message of 1 bytes exceeds the 2-byte limit")
    assert too_big == "message of N bytes exceeds the N-byte limit"
    assert got[("shoal_mqtt_rejected_messages_total", (("reason", too_big),))] == 2
    assert got[("shoal_mqtt_rejected_messages_total", (("reason", "empty message"),))] == 1
    assert got[("process_resident_memory_bytes", ())] > 0


def test_the_endpoint_serves_metrics_on_the_event_loop_and_nothing_else() -> None:
    session = _Session()

    async def go() -> tuple[bytes, bytes]:
        metrics = DaemonMetrics(lambda: session)  # type: ignore[arg-type,return-value]
        await metrics.serve("127.0.0.1:0")
        host, port = metrics.address.rsplit(":", 1)

        async def get(path: str) -> bytes:
            r, w = await asyncio.open_connection(host, int(port))
            w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = await asyncio.wait_for(r.read(), 5)
            w.close()
            return data

        try:
            return await get("/metrics"), await get("/secret")
        finally:
            await metrics.close()

    ok, missing = asyncio.run(go())
    assert ok.startswith(b"HTTP/1.1 200 OK") and b"shoal_mqtt_messages_received_total 5.0" in ok
    assert missing.startswith(b"HTTP/1.1 404")
