"""UDP proxying for a published port: each client address served by a socket to one backend.

UDP is proxied per client address: each client gets a connected socket towards one backend
(the balancer's next pick), forgotten after ``udp_idle`` seconds without traffic. Datagrams
that arrive while that socket opens are queued (a few); beyond a full send buffer, or with no
backend at all, they are dropped and counted.

:class:`UdpProxying` is the UDP half of :class:`agent.net.proxy.PortProxy`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, cast

from agent.net.balancer import Backend
from agent.net.proxybase import ProxyBase

__all__ = ["UdpProxying"]

log = logging.getLogger("shoal.worker.mesh")

_UDP_QUEUE = 64  # datagrams held per client while its backend socket opens
_UDP_BUFFER = 1024 * 1024  # datagrams are dropped, not queued, beyond this much unsent
_UDP_CLIENTS = 4096  # UDP clients served at once (each holds a socket): bounds descriptors


def _unsent(transport: asyncio.DatagramTransport) -> int:
    size = getattr(transport, "get_write_buffer_size", None)  # not in every loop's transports
    return int(size()) if size is not None else 0


class _UdpListener(asyncio.DatagramProtocol):
    def __init__(self, proxy: UdpProxying) -> None:
        self.proxy = proxy

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.proxy._datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("ingress udp/%s: %s", self.proxy.port, exc)


class _UdpSession(asyncio.DatagramProtocol):
    """One UDP client's connected socket towards its backend."""

    def __init__(self, proxy: UdpProxying, client: tuple[Any, ...], backend: Backend) -> None:
        self.proxy = proxy
        self.client = client
        self.backend = backend
        self.transport: asyncio.DatagramTransport | None = None
        self.queue: list[bytes] = []
        self.last_seen = proxy._clock()
        self.closed = False

    def send(self, data: bytes) -> None:
        self.last_seen = self.proxy._clock()
        if self.transport is None:
            if len(self.queue) < _UDP_QUEUE:
                self.queue.append(data)
            else:
                self.proxy.stats.dropped += 1
            return
        if _unsent(self.transport) > _UDP_BUFFER:
            self.proxy.stats.dropped += 1
            return
        self.transport.sendto(data)
        self.proxy.stats.bytes_in += len(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        queue, self.queue = self.queue, []
        for data in queue:
            self.send(data)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.last_seen = self.proxy._clock()
        self.proxy._reply(data, self.client)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable: nothing listens there any more.
        self.proxy._backend_failed(self.backend, exc)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy._forget_session(self)
        if self.transport is not None:
            self.transport.close()


class UdpProxying(ProxyBase):
    """The UDP half of a `PortProxy`: one listening socket, a session per client address."""

    _udp: asyncio.DatagramTransport | None
    _sweeper: asyncio.TimerHandle | None
    _sessions: dict[tuple[Any, ...], _UdpSession]

    async def _start_udp(self) -> socket.socket:
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _UdpListener(self), local_addr=(self.host or "0.0.0.0", self._port)
        )
        self._udp = transport
        sock: socket.socket = transport.get_extra_info("socket")
        self._sweeper = self._loop.call_later(self.udp_idle / 4, self._sweep)
        return sock

    def _datagram(self, data: bytes, client: tuple[Any, ...]) -> None:
        session = self._sessions.get(client)
        if session is None:
            order = self._balancer.order()
            if not order or self._closed:
                self.stats.unserved += 1
                return
            if len(self._sessions) >= _UDP_CLIENTS:
                self.stats.dropped += 1
                return
            session = _UdpSession(self, client, order[0])
            self._sessions[client] = session
            self.stats.total += 1
            self.stats.active += 1
            self._spawn(self._open_session(session))
        session.send(data)

    async def _open_session(self, session: _UdpSession) -> None:
        loop = asyncio.get_running_loop()
        backend = session.backend
        try:
            local = None
            if self.source is not None and (":" in self.source) == (":" in backend.host):
                local = (self.source, 0)
            await loop.create_datagram_endpoint(
                lambda: session, remote_addr=(backend.host, backend.port), local_addr=local
            )
        except OSError as exc:
            self._backend_failed(backend, exc)
            session.close()
            return
        if session.closed and session.transport is not None:
            session.transport.close()

    def _reply(self, data: bytes, client: tuple[Any, ...]) -> None:
        udp = self._udp
        if udp is None or udp.is_closing() or _unsent(udp) > _UDP_BUFFER:
            self.stats.dropped += 1
            return
        udp.sendto(data, client)
        self.stats.bytes_out += len(data)

    def _forget_session(self, session: _UdpSession) -> None:
        if self._sessions.get(session.client) is session:
            del self._sessions[session.client]
            self.stats.active -= 1

    def _sweep(self) -> None:
        self.expire_idle()
        if not self._closed:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self.udp_idle / 4, self._sweep)

    def expire_idle(self) -> int:
        """Forget UDP clients silent for ``udp_idle`` seconds; return how many."""
        deadline = self._clock() - self.udp_idle
        idle = [s for s in self._sessions.values() if s.last_seen <= deadline]
        for session in idle:
            session.close()
        return len(idle)
