"""The routing mesh's userspace data plane: published ports forwarded to healthy tasks.

Where the host has no IPVS, every node runs one :class:`PortProxy` per published ingress port.
A proxy accepts a client, picks a backend (a healthy, running task's address) from a set the
agent replaces whenever the routing table changes, and splices the two connections together.

Selection is smooth weighted round robin (nginx's algorithm): with equal weights it is plain
round robin, with weights it interleaves rather than bursts. A backend whose connect fails is
marked down for ``down_for`` seconds and the next one is tried, so a client is refused only
when no backend at all accepts it. A backend removed from the set gets no new connection from
that moment (a connect already in flight to it is dropped and the next backend tried); its open
connections run to their end unless ``cut=True`` closes them.

Forwarding works on the sockets themselves, driven by the event loop's reader and writer
callbacks: no task, future or stream per connection. A read lands in one buffer shared by
every proxy of the loop and is sent on at once (one copy in, one copy out, none in between);
only what the other side's socket does not take is kept, and the source is not read again
until that is sent. So a direction holds at most one read (256 KiB) in the proxy, and a slow
reader slows its writer through TCP's own window. Half-close is forwarded: an EOF from one
side becomes a ``shutdown(SHUT_WR)`` towards the other while the opposite direction keeps
flowing; both directions ended closes both sockets; a reset from one side is passed on as a
reset. With ``proxy_protocol`` the backend first receives a PROXY protocol v1 line naming the
client's address, which the mesh would otherwise hide. Backends given by name (not an IP) are
resolved on each connect, off the fast path.

UDP is proxied per client address: each client gets a connected socket towards one backend,
forgotten after ``udp_idle`` seconds without traffic.

:class:`Mesh` holds the proxies of one node and reconciles them with the ingress part of a
routing table (:meth:`Mesh.apply`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import os
import socket
import struct
import sys
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from agent.worker.errors import WorkerError

__all__ = [
    "Backend",
    "Balancer",
    "IngressPort",
    "Mesh",
    "MeshError",
    "PortProxy",
    "ProxyStats",
    "parse_ingress",
    "proxy_header",
]

log = logging.getLogger("shoal.worker.mesh")

Transport = Literal["tcp", "udp"]
Clock = Callable[[], float]

_CHUNK = 256 * 1024  # one read; also the most a direction of a connection holds
_BACKLOG = 1024
_READS = 2  # reads per wake-up: the second finds an EOF that came with the data
_ACCEPTS = 64  # connections accepted per wake-up
_NODELAY_INHERITED = sys.platform == "linux"  # accepted sockets keep the listener's TCP_NODELAY
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset
_UDP_QUEUE = 64  # datagrams held per client while its backend socket opens
_UDP_BUFFER = 1024 * 1024  # datagrams are dropped, not queued, beyond this much unsent
_UDP_CLIENTS = 4096  # UDP clients served at once (each holds a socket): bounds descriptors


class MeshError(WorkerError, ValueError):
    """A routing table is malformed (the sender's fault), or a port could not be published."""


@dataclass(frozen=True, slots=True)
class Backend:
    """One address that receives a published port's traffic: a healthy, running task."""

    host: str
    port: int
    weight: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise MeshError(f"backend host must be a non-empty string, got {self.host!r}")
        if not _is_port(self.port):
            raise MeshError(f"backend port must be 1-65535, got {self.port!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) or self.weight < 1:
            raise MeshError(f"backend weight must be a positive integer, got {self.weight!r}")

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


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


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _unsent(transport: asyncio.DatagramTransport) -> int:
    size = getattr(transport, "get_write_buffer_size", None)  # not in every loop's transports
    return int(size()) if size is not None else 0


_buffers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, memoryview] = (
    weakref.WeakKeyDictionary()
)


def _read_buffer(loop: asyncio.AbstractEventLoop) -> memoryview:
    """The buffer every read on ``loop`` lands in; each is sent on before the next read."""
    view = _buffers.get(loop)
    if view is None:
        view = _buffers[loop] = memoryview(bytearray(_CHUNK))
    return view


@functools.lru_cache(maxsize=4096)
def _numeric(host: str, port: int) -> tuple[int, tuple[Any, ...]] | None:
    """(family, socket address) for an IP literal; None for a name that needs resolving."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 4:
        return socket.AF_INET, (host, port)
    return socket.AF_INET6, (host, port, 0, 0)


def proxy_header(client: tuple[Any, ...] | None, local: tuple[Any, ...] | None) -> bytes:
    """The PROXY protocol v1 line for a connection from ``client`` to ``local`` (peer names).

    IPv4-mapped IPv6 addresses (a dual-stack listener) are written as TCP4; anything that is
    not an IP address pair of one family gives ``PROXY UNKNOWN``.
    """
    try:
        assert client is not None and local is not None
        src = ipaddress.ip_address(str(client[0]).split("%", 1)[0])
        dst = ipaddress.ip_address(str(local[0]).split("%", 1)[0])
        sport, dport = int(client[1]), int(local[1])
    except (AssertionError, ValueError, IndexError, TypeError):
        return b"PROXY UNKNOWN\r\n"
    if isinstance(src, ipaddress.IPv6Address) and src.ipv4_mapped is not None:
        src = src.ipv4_mapped
    if isinstance(dst, ipaddress.IPv6Address) and dst.ipv4_mapped is not None:
        dst = dst.ipv4_mapped
    if src.version != dst.version or not (0 <= sport <= 65535 and 0 <= dport <= 65535):
        return b"PROXY UNKNOWN\r\n"
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode("ascii")


class Balancer:
    """Smooth weighted round robin over a replaceable set, trying backends marked down last.

    A pure core: no sockets; time comes from ``clock``.
    """

    def __init__(self, *, down_for: float = 2.0, clock: Clock = time.monotonic) -> None:
        self.down_for = down_for
        self._clock = clock
        self._backends: list[Backend] = []
        self._members: dict[tuple[str, int], Backend] = {}
        self._current: dict[tuple[str, int], int] = {}
        self._down_until: dict[tuple[str, int], float] = {}

    @property
    def backends(self) -> tuple[Backend, ...]:
        return tuple(self._backends)

    def __bool__(self) -> bool:
        return bool(self._backends)

    def __contains__(self, backend: object) -> bool:
        return isinstance(backend, Backend) and backend.address in self._members

    def set(self, backends: Iterable[Backend]) -> set[tuple[str, int]]:
        """Replace the set (a backend listed twice gets both weights); return removed addresses."""
        merged: dict[tuple[str, int], Backend] = {}
        for b in backends:
            seen = merged.get(b.address)
            merged[b.address] = (
                b if seen is None else Backend(b.host, b.port, seen.weight + b.weight)
            )
        removed = set(self._members) - set(merged)
        self._members = merged
        self._backends = list(merged.values())
        self._current = {a: self._current.get(a, 0) for a in merged}
        self._down_until = {a: t for a, t in self._down_until.items() if a in merged}
        return removed

    def is_down(self, backend: Backend) -> bool:
        until = self._down_until.get(backend.address)
        return until is not None and until > self._clock()

    def mark_down(self, backend: Backend) -> bool:
        """Keep ``backend`` out of first choice for ``down_for`` seconds; True if it was up."""
        if backend.address not in self._members:
            return False
        was_up = not self.is_down(backend)
        self._down_until[backend.address] = self._clock() + self.down_for
        return was_up

    def order(self) -> list[Backend]:
        """Backends to try for one new connection, in order: the next pick first."""
        now = self._clock()
        up: list[Backend] = []
        down: list[Backend] = []
        for b in self._backends:
            until = self._down_until.get(b.address)
            (down if until is not None and until > now else up).append(b)
        pool = up or down
        if not pool:
            return []
        best = pool[0]
        best_weight = None
        total = 0
        current = self._current
        for b in pool:
            w = current[b.address] + b.weight
            current[b.address] = w
            total += b.weight
            if best_weight is None or w > best_weight:
                best, best_weight = b, w
        current[best.address] -= total
        i = pool.index(best)
        return pool[i:] + pool[:i] + (down if up else [])


class _Flow:
    """One direction of a proxied connection: what ``src`` reads is sent on ``dst``.

    Reads go into the loop's one shared buffer and are sent at once; only what the
    destination does not take is copied aside (``pending``), and ``src`` is not read again
    until it has gone out. So a direction holds at most one read's worth of bytes.
    """

    __slots__ = (
        "conn",
        "done",
        "dst",
        "dst_fd",
        "eof",
        "inbound",
        "loop",
        "pending",
        "reading",
        "src",
        "src_fd",
        "writing",
    )

    def __init__(self, conn: _Conn, src: socket.socket, dst: socket.socket, inbound: bool) -> None:
        self.conn = conn
        self.loop = conn.proxy._loop
        self.src, self.dst = src, dst
        self.src_fd, self.dst_fd = src.fileno(), dst.fileno()
        self.inbound = inbound  # client to backend
        self.pending: memoryview | None = None
        self.reading = self.writing = False
        self.eof = self.done = False

    def start(self, first: bytes = b"", *, read_now: bool = False) -> None:
        """Send ``first``, then forward; ``read_now`` reads what came in before the start."""
        if first:
            try:
                sent = self.dst.send(first)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self.conn.close(exc)
                return
            if sent < len(first):
                self.pending = memoryview(first)[sent:]
                self.writing = True
                self.loop.add_writer(self.dst_fd, self._writable)
                return
        self.reading = True
        self.loop.add_reader(self.src_fd, self._readable)
        if read_now:
            self._readable()

    def _readable(self) -> None:
        proxy = self.conn.proxy
        view = proxy._view
        stats = proxy.stats
        for _ in range(_READS):
            try:
                n = self.src.recv_into(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.conn.close(exc)
                return
            if not n:
                self.eof = True
                self.reading = False
                self.loop.remove_reader(self.src_fd)
                self._shutdown()
                return
            if self.inbound:
                stats.bytes_in += n
            else:
                stats.bytes_out += n
            try:
                sent = self.dst.send(view[:n])
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self.conn.close(exc)
                return
            if sent < n:
                # The destination is full: keep the rest and stop reading until it is sent.
                self.pending = memoryview(bytes(view[sent:n]))
                stats.read_pauses += 1
                if n - sent > stats.peak_buffered:
                    stats.peak_buffered = n - sent
                self.reading = False
                self.loop.remove_reader(self.src_fd)
                self.writing = True
                self.loop.add_writer(self.dst_fd, self._writable)
                return

    def _writable(self) -> None:
        pending = self.pending
        assert pending is not None
        try:
            sent = self.dst.send(pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.conn.close(exc)
            return
        if sent < len(pending):
            self.pending = pending[sent:]
            return
        self.pending = None
        self.writing = False
        self.loop.remove_writer(self.dst_fd)
        if self.eof:
            self._shutdown()
        else:
            self.reading = True
            self.loop.add_reader(self.src_fd, self._readable)

    def _shutdown(self) -> None:
        # The source ended: once everything read is sent, end this direction on the other side.
        if self.pending is not None:
            return
        conn = self.conn
        sibling = conn.down if self.inbound else conn.up
        if sibling is not None and sibling.done:
            self.done = True
            conn.close()  # the last direction: closing sends the FIN a shutdown would
            return
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError as exc:
            conn.close(exc)
            return
        self.done = True

    def stop(self) -> None:
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.src_fd)
        if self.writing:
            self.writing = False
            self.loop.remove_writer(self.dst_fd)


class _Conn:
    """A client connection, its backend connection once dialled, and the two flows."""

    __slots__ = (
        "backend",
        "client",
        "closed",
        "dialing",
        "down",
        "order",
        "peer",
        "proxy",
        "server",
        "timer",
        "up",
    )

    def __init__(self, proxy: PortProxy, client: socket.socket, peer: Any) -> None:
        self.proxy = proxy
        self.client = client
        self.peer = peer
        self.order: list[Backend] = []
        self.backend: Backend | None = None
        self.server: socket.socket | None = None
        self.dialing = False  # a writer waits on ``server`` for its connect to finish
        self.timer: asyncio.TimerHandle | None = None
        self.up: _Flow | None = None
        self.down: _Flow | None = None
        self.closed = False

    def stop_dialing(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.dialing:
            self.dialing = False
            assert self.server is not None
            self.proxy._loop.remove_writer(self.server.fileno())

    def abandon_dial(self) -> None:
        self.stop_dialing()
        if self.server is not None:
            self.server.close()
            self.server = None

    def close(self, exc: BaseException | None = None) -> None:
        """Close both sockets; a reset from one side is passed on to the other as a reset."""
        if self.closed:
            return
        self.closed = True
        self.proxy._forget(self)
        self.stop_dialing()
        for flow in (self.up, self.down):
            if flow is not None:
                flow.stop()
        for sock in (self.client, self.server):
            if sock is not None:
                if isinstance(exc, ConnectionResetError):
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                sock.close()


class _UdpListener(asyncio.DatagramProtocol):
    def __init__(self, proxy: PortProxy) -> None:
        self.proxy = proxy

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.proxy._datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("ingress udp/%s: %s", self.proxy.port, exc)


class _UdpSession(asyncio.DatagramProtocol):
    """One UDP client's connected socket towards its backend."""

    def __init__(self, proxy: PortProxy, client: tuple[Any, ...], backend: Backend) -> None:
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


class PortProxy:
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
        self.protocol: Transport = protocol
        self.proxy_protocol = proxy_protocol
        self.source = source  # the address connections to backends leave from (None: any)
        self.connect_timeout = connect_timeout
        self.udp_idle = udp_idle
        self.stats = ProxyStats()
        self._port = port
        self._clock = clock
        self._balancer = Balancer(down_for=down_for, clock=clock)
        self._balancer.set(backends)
        self._loop: asyncio.AbstractEventLoop
        self._view = memoryview(b"")  # the loop's read buffer, from start()
        self._listener: socket.socket | None = None
        self._accept_again: asyncio.TimerHandle | None = None
        self._conns: set[_Conn] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._sessions: dict[tuple[Any, ...], _UdpSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"<PortProxy {self.protocol}/{self._port} backends={len(self._balancer.backends)}>"

    @property
    def port(self) -> int:
        return self._port

    @property
    def backends(self) -> tuple[Backend, ...]:
        return self._balancer.backends

    async def start(self) -> None:
        """Listen; raises ``OSError`` when the address cannot be bound."""
        loop = self._loop = asyncio.get_running_loop()
        if self.protocol == "tcp":
            self._view = _read_buffer(loop)
            listener = self._listener = await self._listen()
            loop.add_reader(listener.fileno(), self._accept)
            sock = listener
        else:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpListener(self), local_addr=(self.host or "0.0.0.0", self._port)
            )
            self._udp = transport
            sock = transport.get_extra_info("socket")
            self._sweeper = loop.call_later(self.udp_idle / 4, self._sweep)
        self._port = sock.getsockname()[1]

    async def _listen(self) -> socket.socket:
        if self.host is None:
            if socket.has_dualstack_ipv6():
                sock = socket.create_server(
                    ("", self._port),
                    family=socket.AF_INET6,
                    backlog=_BACKLOG,
                    dualstack_ipv6=True,
                )
            else:
                sock = socket.create_server(("", self._port), backlog=_BACKLOG)
        else:
            address = _numeric(self.host, self._port)
            if address is None:
                infos = await self._loop.getaddrinfo(
                    self.host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
                )
                address = (infos[0][0], infos[0][4])
            sock = socket.create_server(address[1], family=address[0], backlog=_BACKLOG)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return sock

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

    def buffered(self) -> int:
        """Bytes this proxy holds for destinations that have not taken them yet."""
        total = 0
        for conn in self._conns:
            for flow in (conn.up, conn.down):
                if flow is not None and flow.pending is not None:
                    total += len(flow.pending)
        return total

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

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # TCP

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        for _ in range(_ACCEPTS):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("ingress tcp/%s: %s; accepting again in 1 s", self._port, exc)
                    self._loop.remove_reader(listener.fileno())
                    self._accept_again = self._loop.call_later(1.0, self._resume_accepting)
                return  # otherwise the client left before it was accepted
            self._accepted(sock, peer)

    def _resume_accepting(self) -> None:
        self._accept_again = None
        if not self._closed and self._listener is not None:
            self._loop.add_reader(self._listener.fileno(), self._accept)

    def _accepted(self, sock: socket.socket, peer: Any) -> None:
        stats = self.stats
        stats.total += 1
        if not self._balancer:
            stats.unserved += 1
            sock.close()
            return
        sock.setblocking(False)
        if not _NODELAY_INHERITED:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(self, sock, peer)
        self._conns.add(conn)
        stats.active += 1
        conn.order = self._balancer.order()
        self._dial(conn)

    def _dial(self, conn: _Conn) -> None:
        """Connect ``conn`` to the next backend of its order; close it when none is left."""
        while conn.order and not conn.closed:
            backend = conn.order.pop(0)
            if backend not in self._balancer:  # removed since this connection came in
                continue
            address = _numeric(backend.host, backend.port)
            if address is None:
                self._spawn(self._resolve_and_dial(conn, backend))
                return
            if self._connect(conn, backend, *address):
                return
        if not conn.closed:
            self.stats.unserved += 1
            conn.close()

    async def _resolve_and_dial(self, conn: _Conn, backend: Backend) -> None:
        """The slow path for a backend given by name: each of its addresses in turn."""
        loop = self._loop
        failure: BaseException | None = None
        try:
            infos = await loop.getaddrinfo(backend.host, backend.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            infos, failure = [], exc
        for family, _, _, _, address in infos:
            if conn.closed:
                return
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await loop.sock_connect(sock, address)
            except (OSError, TimeoutError) as exc:
                sock.close()
                failure = exc
                continue
            except BaseException:
                sock.close()
                raise
            if conn.closed:
                sock.close()
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connected(conn, backend, sock)
            return
        self._backend_failed(backend, failure or OSError(f"{backend.host}: no address"))
        if not conn.closed:
            self._dial(conn)

    def _connect(self, conn: _Conn, backend: Backend, family: int, address: Any) -> bool:
        """Start connecting to ``backend``; False when that failed at once."""
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:  # out of descriptors: no backend's fault
            log.warning("ingress tcp/%s: cannot open a socket: %s", self._port, exc)
            conn.order.clear()
            return False
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.source is not None and (":" in self.source) == (family == socket.AF_INET6):
            try:
                sock.bind((self.source, 0))
            except OSError as exc:
                sock.close()
                self._backend_failed(backend, exc)
                return False
        err = sock.connect_ex(address)
        if err == errno.EINPROGRESS:
            # A local backend has usually answered by now: ask again rather than wait a turn.
            err = sock.connect_ex(address)
            if err in (errno.EALREADY, errno.EINPROGRESS):
                err = errno.EINPROGRESS
            elif err == errno.EISCONN:
                err = 0
        if err == 0:
            self._connected(conn, backend, sock)
            return True
        if err != errno.EINPROGRESS:
            sock.close()
            self._backend_failed(backend, OSError(err, os.strerror(err)))
            return False
        conn.backend, conn.server, conn.dialing = backend, sock, True
        self._loop.add_writer(sock.fileno(), self._connect_done, conn)
        conn.timer = self._loop.call_later(self.connect_timeout, self._connect_timeout, conn)
        return True

    def _connect_done(self, conn: _Conn) -> None:
        sock, backend = conn.server, conn.backend
        assert sock is not None and backend is not None
        conn.stop_dialing()
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            conn.server = None
            sock.close()
            self._backend_failed(backend, OSError(err, os.strerror(err)))
            self._dial(conn)
        else:
            self._connected(conn, backend, sock)

    def _connect_timeout(self, conn: _Conn) -> None:
        conn.timer = None
        backend = conn.backend
        assert backend is not None
        conn.abandon_dial()
        self._backend_failed(backend, TimeoutError(f"no answer in {self.connect_timeout} s"))
        self._dial(conn)

    def _connected(self, conn: _Conn, backend: Backend, sock: socket.socket) -> None:
        if backend not in self._balancer:  # removed while connecting
            conn.server = None
            sock.close()
            self._dial(conn)
            return
        conn.backend, conn.server = backend, sock
        conn.up = _Flow(conn, conn.client, sock, inbound=True)
        conn.down = _Flow(conn, sock, conn.client, inbound=False)
        header = b""
        if self.proxy_protocol:
            header = proxy_header(conn.peer, conn.client.getsockname())
        conn.down.start()
        conn.up.start(header, read_now=True)  # the client's request often waits already

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

    def _forget(self, conn: _Conn) -> None:
        if conn in self._conns:
            self._conns.discard(conn)
            self.stats.active -= 1

    # UDP

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


@dataclass(frozen=True, slots=True)
class IngressPort:
    """One published port of a routing table's ingress part."""

    protocol: Transport
    published: int
    backends: tuple[Backend, ...] = ()
    proxy_protocol: bool = False
    source: str | None = None


def parse_ingress(table: Mapping[str, Any]) -> dict[tuple[Transport, int], IngressPort]:
    """The ingress ports of ``table`` keyed by (protocol, published); MeshError names the key."""
    if not isinstance(table, Mapping):
        raise MeshError(f"routing table must be a mapping, got {type(table).__name__}")
    entries = table.get("ingress", [])
    if not isinstance(entries, list):
        raise MeshError(f"ingress: expected a list, got {type(entries).__name__}")
    ports: dict[tuple[Transport, int], IngressPort] = {}
    for i, entry in enumerate(entries):
        where = f"ingress[{i}]"
        if not isinstance(entry, Mapping):
            raise MeshError(f"{where}: expected a mapping, got {type(entry).__name__}")
        protocol = entry.get("protocol", "tcp")
        if protocol not in ("tcp", "udp"):
            raise MeshError(f"{where}.protocol: expected tcp or udp, got {protocol!r}")
        published = entry.get("published")
        if not _is_port(published):
            raise MeshError(f"{where}.published: expected a port 1-65535, got {published!r}")
        proxy_protocol = entry.get("proxy_protocol", False)
        if not isinstance(proxy_protocol, bool):
            raise MeshError(f"{where}.proxy_protocol: expected true or false")
        if proxy_protocol and protocol == "udp":
            raise MeshError(f"{where}.proxy_protocol: the PROXY protocol needs tcp")
        source = entry.get("source")
        if source is not None:
            try:
                source = str(ipaddress.ip_address(source))
            except ValueError:
                raise MeshError(f"{where}.source: expected an IP address, got {source!r}") from None
        raw = entry.get("backends", [])
        if not isinstance(raw, list):
            raise MeshError(f"{where}.backends: expected a list, got {type(raw).__name__}")
        backends = []
        for j, b in enumerate(raw):
            if not isinstance(b, Mapping):
                raise MeshError(f"{where}.backends[{j}]: expected a mapping")
            host: Any = b.get("host")
            number: Any = b.get("port")
            try:
                backends.append(Backend(host, number, b.get("weight", 1)))
            except MeshError as exc:
                raise MeshError(f"{where}.backends[{j}]: {exc}") from None
        key = (cast(Transport, protocol), cast(int, published))
        if key in ports:
            raise MeshError(f"{where}: {protocol}/{published} is published twice")
        ports[key] = IngressPort(key[0], key[1], tuple(backends), proxy_protocol, source)
    return ports


class Mesh:
    """This node's published ingress ports, kept in line with the routing table."""

    def __init__(
        self,
        host: str | None = None,
        *,
        connect_timeout: float = 2.5,
        down_for: float = 2.0,
        udp_idle: float = 60.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.host = host
        self._options: dict[str, Any] = dict(
            connect_timeout=connect_timeout, down_for=down_for, udp_idle=udp_idle, clock=clock
        )
        self._proxies: dict[tuple[Transport, int], PortProxy] = {}
        self._lock = asyncio.Lock()

    @property
    def proxies(self) -> dict[tuple[Transport, int], PortProxy]:
        return dict(self._proxies)

    def stats(self) -> dict[tuple[Transport, int], ProxyStats]:
        return {key: proxy.stats for key, proxy in self._proxies.items()}

    async def apply(self, table: Mapping[str, Any], *, cut_removed: bool = False) -> None:
        """Open, update and close proxies to match ``table``; idempotent.

        A malformed table raises :class:`MeshError` before anything changes. Ports whose
        entries are unchanged, and the connections through them, are left alone. Ports that
        cannot be bound are reported together in one MeshError after the rest is applied.
        """
        wanted = parse_ingress(table)
        async with self._lock:
            for key in [k for k in self._proxies if k not in wanted]:
                await self._proxies.pop(key).close()
            failed: list[str] = []
            for key, port in wanted.items():
                proxy = self._proxies.get(key)
                if proxy is None:
                    proxy = PortProxy(
                        port.published,
                        host=self.host,
                        protocol=port.protocol,
                        backends=port.backends,
                        proxy_protocol=port.proxy_protocol,
                        source=port.source,
                        **self._options,
                    )
                    try:
                        await proxy.start()
                    except OSError as exc:
                        failed.append(f"{port.protocol}/{port.published}: {exc.strerror or exc}")
                        continue
                    self._proxies[key] = proxy
                    continue
                proxy.proxy_protocol = port.proxy_protocol
                proxy.source = port.source
                proxy.set_backends(port.backends, cut=cut_removed)
            if failed:
                where = self.host or "every interface"
                raise MeshError(f"cannot publish on {where}: " + "; ".join(failed))

    async def close(self) -> None:
        async with self._lock:
            proxies, self._proxies = list(self._proxies.values()), {}
            for proxy in proxies:
                await proxy.close()

    async def __aenter__(self) -> Mesh:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
