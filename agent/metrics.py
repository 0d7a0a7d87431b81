"""The daemon's Prometheus endpoint (``--metrics-listen HOST:PORT``, off by default): one
registry per daemon (never prometheus_client's global one), served at ``/metrics``.

    process_*                          the daemon's own RSS, CPU seconds, open files, ...
    shoal_mqtt_messages_received_total, shoal_mqtt_bytes_received_total,
    shoal_mqtt_messages_sent_total, shoal_mqtt_bytes_sent_total
    shoal_mqtt_rejected_messages_total{reason}   messages refused, by reason (numbers in a
                                                 reason read N, so sizes make no new series)
    on managers: agent/manager/metrics.py
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.model.errors import ShoalError
from broker.session import Session

__all__ = ["DaemonMetrics", "for_daemon", "reason_label"]

log = logging.getLogger("shoal.metrics")

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
MAX_REASONS = 64  # distinct reasons shown; the rest are counted as "other"


def reason_label(reason: str) -> str:
    """A rejection reason as a label value: its numbers read N, at most 120 characters."""
    return _NUMBER.sub("N", reason)[:120]


class SessionCollector(Collector):
    def __init__(self, session: Callable[[], Session]) -> None:
        self.session = session

    def collect(self) -> Iterator[Metric]:
        s = self.session()
        t = s.traffic
        for name, doc, value in (
            ("shoal_mqtt_messages_received", "MQTT messages received.", t.messages_in),
            ("shoal_mqtt_bytes_received", "Payload bytes of MQTT messages received.", t.bytes_in),
            ("shoal_mqtt_messages_sent", "MQTT messages published.", t.messages_out),
            ("shoal_mqtt_bytes_sent", "Payload bytes of MQTT messages published.", t.bytes_out),
        ):
            c = CounterMetricFamily(name, doc)
            c.add_metric([], value)
            yield c
        rejected = CounterMetricFamily(
            "shoal_mqtt_rejected_messages", "Messages refused, by reason.", labels=["reason"]
        )
        by_reason: dict[str, int] = {}
        for reason, n in s.rejections.counts.most_common():
            label = reason_label(reason)
            if label not in by_reason and len(by_reason) >= MAX_REASONS:
                label = "other"
            by_reason[label] = by_reason.get(label, 0) + n
        for label, n in sorted(by_reason.items()):
            rejected.add_metric([label], n)
        yield rejected


class DaemonMetrics:
    """The registry and, once :meth:`serve` is awaited, the HTTP endpoint of one daemon. The
    endpoint runs on the daemon's event loop, so collectors read the store and the session
    between two of its steps, never while they change."""

    def __init__(self, session: Callable[[], Session]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        self.registry.register(SessionCollector(session))
        self._server: asyncio.Server | None = None
        self.address = ""
        self.latencies: Any = None  # agent.manager.metrics.TaskLatencies, where managers run

    def register(self, collector: Collector) -> None:
        self.registry.register(collector)

    async def serve(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        try:
            self._server = await asyncio.start_server(self._handle, host, int(port))
        except (OSError, ValueError) as exc:
            raise ShoalError(f"--metrics-listen {listen}: cannot listen there: {exc}") from exc
        bound = self._server.sockets[0].getsockname()
        self.address = f"{host}:{bound[1]}"
        log.info("metrics at http://%s/metrics", self.address)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, path, *_ = [*head.split(b"\r\n", 1)[0].decode("latin-1").split(" "), "", ""]
            if method not in ("GET", "HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif path.split("?")[0] not in ("/metrics", "/"):
                status, ctype, body = "404 Not Found", "text/plain", b"see /metrics\n"
            else:
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            )
            if method != "HEAD":
                writer.write(body)
            await asyncio.wait_for(writer.drain(), 10)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)


def for_daemon(daemon: Any) -> DaemonMetrics:
    """The registry of a daemon, with the manager's part: it reads whatever manager role
    runs at scrape time (none on a worker, or while the role is stopped)."""
    from agent.manager.metrics import ManagerCollector, ManagerState, TaskLatencies

    def manager_state() -> ManagerState | None:
        manager, driver = daemon.manager, daemon.driver
        if manager is None or driver is None:
            return None
        return ManagerState(
            view=manager.store.view(),
            raft=manager.leader.raft_state(),
            is_leader=driver.is_leader,
            leader_changes=driver.leader_changes,
        )

    metrics = DaemonMetrics(lambda: daemon.session)
    metrics.register(ManagerCollector(manager_state))
    metrics.latencies = TaskLatencies(metrics.registry)
    return metrics
