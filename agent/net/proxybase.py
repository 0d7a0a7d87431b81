"""What the TCP and UDP halves of a `PortProxy` share: its settings, counters and backends.

`ProxyBase` declares the state `agent.net.proxy.PortProxy` sets up, and holds the two things
both halves do the same way: running a task of the proxy's, and marking a backend down when it
fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from agent.net.balancer import Backend, Balancer, Clock

__all__ = ["ProxyBase", "ProxyStats", "Transport"]

log = logging.getLogger("shoal.worker.mesh")

Transport = Literal["tcp", "udp"]


@dataclass(slots=True)
class ProxyStats:
    """Counters of one proxy. ``bytes_in`` flows client to backend, ``bytes_out`` back."""

    active: int = 0  # client connections (UDP: client addresses) being served now
    total: int = 0  # client connections accepted (UDP: client addresses seen)
    failed_connects: int = 0  # backend connects that failed (refused, timed out, unreachable)
    unserved: int = 0  # clients closed (UDP: datagrams dropped) for want of any backend
    bytes_in: int = 0
    bytes_out: int = 0
    read_pauses: int = 0  # times a direction stopped reading because its destination was full
    peak_buffered: int = 0  # most bytes one direction of one connection held, in bytes
    dropped: int = 0  # UDP datagrams dropped for a full buffer or queue


class ProxyBase:
    """The state of one published port's proxy, whatever its protocol (set by `PortProxy`)."""

    host: str | None
    protocol: Transport
    proxy_protocol: bool
    source: str | None  # the address connections to backends leave from (None: any)
    connect_timeout: float
    udp_idle: float
    stats: ProxyStats
    _port: int
    _clock: Clock
    _balancer: Balancer
    _loop: asyncio.AbstractEventLoop
    _tasks: set[asyncio.Task[None]]
    _closed: bool

    @property
    def port(self) -> int:
        return self._port

    @property
    def backends(self) -> tuple[Backend, ...]:
        return self._balancer.backends

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _backend_failed(self, backend: Backend, exc: BaseException) -> None:
        self.stats.failed_connects += 1
        if self._balancer.mark_down(backend):
            log.info(
                "ingress %s/%s: backend %s:%s down for %.1f s: %s",
                self.protocol,
                self._port,
                backend.host,
                backend.port,
                self._balancer.down_for,
                exc or type(exc).__name__,
            )
