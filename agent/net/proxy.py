"""One published port on this node: `PortProxy`, forwarding TCP or UDP to a set of backends.

Where the host has no IPVS, every node runs one :class:`PortProxy` per published ingress port.
A proxy accepts a client, picks a backend (a healthy, running task's address) from a set the
agent replaces whenever the routing table changes, and forwards the client's traffic to it:
TCP in :mod:`agent.net.tcp`, UDP in :mod:`agent.net.udp`, backend choice in
:mod:`agent.net.balancer`. A backend removed from the set gets no new connection from that
moment; its open connections run to their end unless ``cut=True`` closes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from agent.net.balancer import Backend, Balancer, Clock
from agent.net.errors import MeshError
from agent.net.proxybase import ProxyStats, Transport
from agent.net.tcp import TcpProxying
from agent.net.udp import UdpProxying

__all__ = ["PortProxy"]


class PortProxy(TcpProxying, UdpProxying):
    """One published port on this node, forwarded to a replaceable set of backends.

    ``host`` is the bind address (None: every interface; for UDP every IPv4 interface);
    ``port`` 0 picks a free port, read back from :attr:`port` after :meth:`start`. TCP needs
    an event loop with ``add_reader``/``add_writer`` (asyncio's default on Linux, uvloop).
    """

    def __init__(
        self,
        port: int,
        *,
        host: str | None = None,
        protocol: Transport = "tcp",
        backends: Iterable[Backend] = (),
        proxy_protocol: bool = False,
        source: str | None = None,
        connect_timeout: float = 1.0,
        down_for: float = 2.0,
        udp_idle: float = 60.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if protocol not in ("tcp", "udp"):
            raise MeshError(f"protocol must be tcp or udp, got {protocol!r}")
        if protocol == "udp" and proxy_protocol:
            raise MeshError("the PROXY protocol header needs tcp; udp cannot carry it")
        self.host = host
        self.protocol = protocol
        self.proxy_protocol = proxy_protocol
        self.source = source
        self.connect_timeout = connect_timeout
        self.udp_idle = udp_idle
        self.stats = ProxyStats()
        self._port = port
        self._clock = clock
        self._balancer = Balancer(down_for=down_for, clock=clock)
        self._balancer.set(backends)
        self._view = memoryview(b"")
        self._listener = None
        self._accept_again = None
        self._conns = set()
        self._udp = None
        self._sweeper = None
        self._sessions = {}
        self._tasks = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"<PortProxy {self.protocol}/{self._port} backends={len(self._balancer.backends)}>"

    async def start(self) -> None:
        """Listen; raises ``OSError`` when the address cannot be bound."""
        self._loop = asyncio.get_running_loop()
        if self.protocol == "tcp":
            sock = await self._start_tcp()
        else:
            sock = await self._start_udp()
        self._port = sock.getsockname()[1]

    async def __aenter__(self) -> PortProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def set_backends(self, backends: Iterable[Backend], *, cut: bool = False) -> None:
        """Replace the backend set: removed backends get no new connection from now on.

        Their open connections finish on their own, or are closed at once with ``cut``.
        """
        removed = self._balancer.set(backends)
        if not removed:
            return
        for conn in list(self._conns):
            if conn.backend is None or conn.backend.address not in removed:
                continue
            if conn.dialing:  # do not wait for a connect to a backend that left
                conn.abandon_dial()
                self._dial(conn)
            elif cut and conn.up is not None:
                conn.close(ConnectionAbortedError("backend removed"))
        if cut:
            for s in [s for s in self._sessions.values() if s.backend.address in removed]:
                s.close()

    async def close(self) -> None:
        """Stop listening and close every connection; no socket of this proxy is left open."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
        if self._accept_again is not None:
            self._accept_again.cancel()
        if self._udp is not None:
            self._udp.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self._conns):
            conn.close(ConnectionAbortedError("proxy closed"))
        for session in list(self._sessions.values()):
            session.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
