"""TCP proxying for a published port: each client connection spliced to a backend's.

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

A connect that fails marks its backend down and the next backend of the balancer's order is
tried; a backend removed from the set gets no new connection from that moment (a connect
already in flight to it is dropped and the next backend tried).

:class:`TcpProxying` is the TCP half of :class:`agent.net.proxy.PortProxy`.
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
import weakref
from typing import Any

from agent.net.balancer import Backend
from agent.net.proxybase import ProxyBase

__all__ = ["TcpProxying", "proxy_header"]

log = logging.getLogger("shoal.worker.mesh")

_CHUNK = 256 * 1024  # one read; also the most a direction of a connection holds
_BACKLOG = 1024
_READS = 2  # reads per wake-up: the second finds an EOF that came with the data
_ACCEPTS = 64  # connections accepted per wake-up
_NODELAY_INHERITED = sys.platform == "linux"  # accepted sockets keep the listener's TCP_NODELAY
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


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

    def __init__(self, proxy: TcpProxying, client: socket.socket, peer: Any) -> None:
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


class TcpProxying(ProxyBase):
    """The TCP half of a `PortProxy`: listening, accepting, dialling backends, forwarding."""

    _view: memoryview  # the loop's read buffer, from start()
    _listener: socket.socket | None
    _accept_again: asyncio.TimerHandle | None
    _conns: set[_Conn]

    async def _start_tcp(self) -> socket.socket:
        self._view = _read_buffer(self._loop)
        listener = self._listener = await self._listen()
        self._loop.add_reader(listener.fileno(), self._accept)
        return listener

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

    def buffered(self) -> int:
        """Bytes this proxy holds for destinations that have not taken them yet."""
        total = 0
        for conn in self._conns:
            for flow in (conn.up, conn.down):
                if flow is not None and flow.pending is not None:
                    total += len(flow.pending)
        return total

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

    def _forget(self, conn: _Conn) -> None:
        if conn in self._conns:
            self._conns.discard(conn)
            self.stats.active -= 1
