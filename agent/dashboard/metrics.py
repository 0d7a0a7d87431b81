"""/metrics: the dashboard's state in Prometheus' text format, computed at each scrape."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.dashboard.state import ClusterState

__all__ = ["CONTENT_TYPE", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_USAGE = (  # (metric, help, usage key)
    ("shoal_node_cpu_ratio", "CPU in use, as a fraction of the whole node", "cpu"),
    ("shoal_node_load1", "load average over one minute", "load1"),
    ("shoal_node_memory_used_bytes", "memory in use", "memory_used"),
    ("shoal_node_memory_total_bytes", "memory of the node", "memory_total"),
    ("shoal_node_disk_used_bytes", "disk in use", "disk_used"),
    ("shoal_node_disk_total_bytes", "disk of the node", "disk_total"),
)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class _StateCollector(Collector):
    def __init__(self, state: ClusterState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        yield from self._nodes()
        yield from self._services()
        yield from self._usage()
        s = self.state
        yield GaugeMetricFamily(
            "shoal_dashboard_connected", "1 while connected to the broker", int(s.connected)
        )
        yield CounterMetricFamily(
            "shoal_dashboard_messages", "monitoring messages received", s.messages
        )
        yield CounterMetricFamily(
            "shoal_dashboard_bad_messages", "monitoring messages ignored as bad", s.bad_messages
        )

    def _nodes(self) -> Iterator[Metric]:
        counts = Counter(
            (
                str(n.get("status", "unknown")),
                str(n.get("role", "")),
                str(n.get("availability", "")),
            )
            for n in self.state.nodes.values()
        )
        g = GaugeMetricFamily(
            "shoal_nodes", "nodes by status", labels=["status", "role", "availability"]
        )
        for labels, count in sorted(counts.items()):
            g.add_metric(list(labels), count)
        yield g

    def _services(self) -> Iterator[Metric]:
        states: Counter[str] = Counter()
        desired = GaugeMetricFamily(
            "shoal_service_replicas_desired", "tasks the service wants", labels=["service"]
        )
        running = GaugeMetricFamily(
            "shoal_service_replicas_running", "tasks of the service running", labels=["service"]
        )
        for svc in sorted(self.state.services.values(), key=lambda s: str(s.get("name", ""))):
            name = str(svc.get("name", svc["id"]))
            for value, family in ((svc.get("desired"), desired), (svc.get("running"), running)):
                number = _number(value)
                if number is not None:
                    family.add_metric([name], number)
            for task in svc.get("tasks") or []:
                if isinstance(task, dict):
                    states[str(task.get("state", "unknown"))] += 1
        tasks = GaugeMetricFamily("shoal_tasks", "tasks by observed state", labels=["state"])
        for state, count in sorted(states.items()):
            tasks.add_metric([state], count)
        yield tasks
        yield desired
        yield running

    def _usage(self) -> Iterator[Metric]:
        families = {
            key: GaugeMetricFamily(name, text, labels=["node", "hostname"])
            for name, text, key in _USAGE
        }
        for node_id, node in sorted(self.state.nodes.items()):
            usage = node.get("usage")
            if not isinstance(usage, dict):
                continue
            for key, family in families.items():
                number = _number(usage.get(key))
                if number is not None:
                    family.add_metric([node_id, str(node.get("hostname", ""))], number)
        yield from families.values()


def render(state: ClusterState) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StateCollector(state))
    return generate_latest(registry)
