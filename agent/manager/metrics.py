"""The manager's Prometheus metrics, read from the store and Raft at scrape time (nothing to
keep in step), and the two latency histograms fed by the store's task events:

    shoal_raft_term, shoal_raft_commit_index, shoal_raft_applied_index, shoal_raft_is_leader,
    shoal_raft_leader_changes_total
    shoal_nodes{status}, shoal_tasks{state}
    shoal_service_replicas_desired{service_id, service}, shoal_service_replicas_running{...}
    shoal_scheduler_latency_seconds   a task created -> assigned to a node
    shoal_dispatcher_latency_seconds  a task assigned -> running on its node
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.manager.cluster_monitor import RaftState
from agent.manager.control.views import service_row
from agent.manager.store import Event, Node, NodeStatus, Service, Store, Task, View
from agent.model import TaskState
from agent.model.stamps import parse_stamp

__all__ = ["LATENCY_BUCKETS", "LatencyTracker", "ManagerCollector", "ManagerState", "TaskLatencies"]

# from a fast local placement to a slow image pull on a small device
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True, slots=True)
class ManagerState:
    view: View
    raft: RaftState
    is_leader: bool
    leader_changes: int


class ManagerCollector(Collector):
    """Raft, nodes, tasks and services as ``state()`` gives them at scrape time (None:
    nothing, as on a worker or a manager that has not started)."""

    def __init__(self, state: Callable[[], ManagerState | None]) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        got = self.state()
        if got is None:
            return
        view, raft = got.view, got.raft
        yield _gauge("shoal_raft_term", "The Raft term this manager is in.", raft.term)
        yield _gauge("shoal_raft_commit_index", "Highest committed index.", raft.commit_index)
        yield _gauge("shoal_raft_applied_index", "Highest applied index.", raft.applied_index)
        is_leader = GaugeMetricFamily("shoal_raft_is_leader", "1 on the leader, 0 elsewhere.")
        is_leader.add_metric([], 1.0 if got.is_leader else 0.0)
        yield is_leader
        leader_changes = CounterMetricFamily(
            "shoal_raft_leader_changes", "Times this manager learnt of a new leader."
        )
        leader_changes.add_metric([], got.leader_changes)
        yield leader_changes
        yield from _store_metrics(view)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], value)
    return g


def _store_metrics(view: View) -> Iterator[Metric]:
    nodes = view.list(Node)
    by_status = Counter(str(n.status) for n in nodes)
    g = GaugeMetricFamily("shoal_nodes", "Nodes of the swarm by status.", labels=["status"])
    for status in NodeStatus:
        g.add_metric([str(status)], by_status.get(str(status), 0))
    yield g
    tasks = view.list(Task)
    by_state = Counter(t.status.state.value if t.status else "new" for t in tasks)
    g = GaugeMetricFamily("shoal_tasks", "Tasks in the store by observed state.", labels=["state"])
    for state in TaskState:
        g.add_metric([state.value], by_state.get(state.value, 0))
    yield g
    node_map = {n.id: n for n in nodes}
    labels = ["service_id", "service"]
    desired = GaugeMetricFamily(
        "shoal_service_replicas_desired", "Tasks a service should run now.", labels=labels
    )
    running = GaugeMetricFamily(
        "shoal_service_replicas_running", "Tasks of a service running now.", labels=labels
    )
    by_service: dict[str, list[Task]] = {}
    for t in tasks:
        by_service.setdefault(t.service_id, []).append(t)
    for s in sorted(view.list(Service), key=lambda s: s.name):
        row = service_row(s, by_service.get(s.id, []), node_map, ())
        desired.add_metric([s.id, s.name], row["desired"])
        running.add_metric([s.id, s.name], row["running"])
    yield desired
    yield running


class LatencyTracker:
    """Turns task events into latencies: ("scheduler", s) when a task is assigned (since it
    was created), ("dispatcher", s) when it first runs (since it was assigned). Between the
    two a task passes through accepted, preparing and starting, so the assignment time is
    kept per task until it runs or ends (at most ``limit`` tasks are kept)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._assigned: dict[str, float] = {}

    def note(self, ev: Event) -> list[tuple[str, float]]:
        old, new = ev.old, ev.new
        if not isinstance(new, Task) or new.status is None:
            if isinstance(old, Task):
                self._assigned.pop(old.id, None)  # removed
            return []
        before = old.status.state if isinstance(old, Task) and old.status else None
        state, at = new.status.state, new.status.timestamp
        if before is state:
            return []
        if state is TaskState.ASSIGNED:
            if len(self._assigned) < self.limit:
                self._assigned[new.id] = at
            created = parse_stamp(new.created)
            return [("scheduler", max(0.0, at - created))] if created > 0 else []
        if state.rank < TaskState.RUNNING.rank:
            return []
        assigned = self._assigned.pop(new.id, None)
        if state is TaskState.RUNNING and assigned is not None:
            return [("dispatcher", max(0.0, at - assigned))]
        return []


class TaskLatencies:
    """The two histograms, in a daemon's registry; fed with the store's task events by
    :meth:`watch` on the leader (every manager sees the same events; one counts them)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.scheduler = Histogram(
            "shoal_scheduler_latency_seconds",
            "Time from a task created to assigned to a node (on the leader).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.tracker = LatencyTracker()
        self.dispatcher = Histogram(
            "shoal_dispatcher_latency_seconds",
            "Time from a task assigned to running on its node (on the leader).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, ev: Event) -> None:
        for which, seconds in self.tracker.note(ev):
            (self.scheduler if which == "scheduler" else self.dispatcher).observe(seconds)

    async def watch(self, store: Store, is_leader: Callable[[], bool]) -> None:
        async with store.watch("task") as q:
            while True:
                ev: Any = await q.get()
                if isinstance(ev, Event) and is_leader():
                    self.observe(ev)
