"""The routing mesh's userspace proxy: spreading, failover, PROXY header, flow control, tables.

Backends are small asyncio servers on 127.0.0.1 ephemeral ports. Every wait is for a condition
with a timeout; the one fixed interval watches that a stalled transfer stays stalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import struct
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent.net.balancer import Backend, Balancer
from agent.net.errors import MeshError
from agent.net.mesh import Mesh, parse_ingress
from agent.net.proxy import PortProxy
from agent.net.tcp import proxy_header
from tests.worker.helpers import until

LOCAL = "127.0.0.1"
MB = 1024 * 1024

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Server:
    """A backend: what it is called, where it listens, and who came."""

    name: str
    server: asyncio.Server
    connections: int = 0
    first_lines: list[bytes] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def backend(self) -> Backend:
        return Backend(LOCAL, self.port)


class Servers:
    def __init__(self) -> None:
        self.all: list[Server] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(
        self, name: str, handler: Callable[[Server, Any, Any], Awaitable[None]], **kw: Any
    ) -> Server:
        holder: list[Server] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            srv = holder[0]
            srv.connections += 1
            srv.writers.append(writer)
            task = asyncio.current_task()
            assert task is not None
            self.tasks.add(task)
            try:
                await handler(srv, reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()
                self.tasks.discard(task)

        srv = Server(name, await asyncio.start_server(serve, LOCAL, 0, **kw))
        holder.append(srv)
        self.all.append(srv)
        return srv

    async def whoami(self, name: str, *, proxy_protocol: bool = False) -> Server:
        """Says its name on connect, then echoes everything until EOF."""

        async def handler(srv: Server, reader: Any, writer: Any) -> None:
            if proxy_protocol:
                srv.first_lines.append(await reader.readline())
            writer.write(srv.name.encode() + b"\n")
            await echo(reader, writer)

        return await self.start(name, handler)

    async def close(self) -> None:
        for srv in self.all:
            srv.server.close()
            for writer in srv.writers:
                writer.transport.abort()
        if self.tasks:  # handlers end on the aborted sockets; cancel only what still waits
            _, stuck = await asyncio.wait(list(self.tasks), timeout=1.0)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(256 * 1024):
        writer.write(data)
        await writer.drain()
    writer.write_eof()
    await writer.drain()


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    s = Servers()
    yield s
    await s.close()


@pytest.fixture
async def proxies() -> AsyncIterator[Callable[..., Awaitable[PortProxy]]]:
    opened: list[PortProxy] = []

    async def make(*backends: Backend, **kw: Any) -> PortProxy:
        proxy = PortProxy(0, host=LOCAL, backends=backends, **kw)
        await proxy.start()
        opened.append(proxy)
        return proxy

    yield make
    for proxy in opened:
        await proxy.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


def dead_backend() -> Backend:
    """An address where nothing listens (connects are refused)."""
    return Backend(LOCAL, free_port())


async def connect(port: int, **kw: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(5):
        return await asyncio.open_connection(LOCAL, port, **kw)


async def who(port: int) -> str:
    """Which backend serves a new connection."""
    reader, writer = await connect(port)
    try:
        async with asyncio.timeout(5):
            return (await reader.readline()).decode().strip()
    finally:
        writer.close()


async def roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes
) -> bytes:
    writer.write(line)
    async with asyncio.timeout(5):
        return await reader.readline()


async def sees_end(reader: asyncio.StreamReader, timeout: float = 2.0) -> bool:
    """True when the connection ends (EOF or reset) within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except ConnectionError:
        pass
    return True


def refused(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.connect((LOCAL, port))
        except ConnectionRefusedError:
            return True
    return False


# --- selection -------------------------------------------------------------------------------


async def test_connections_spread_round_robin_over_backends(servers: Servers, proxies: Any) -> None:
    backends = [await servers.whoami(n) for n in ("a", "b", "c")]
    proxy = await proxies(*(s.backend for s in backends))

    names = [await who(proxy.port) for _ in range(30)]

    assert Counter(names) == {"a": 10, "b": 10, "c": 10}
    assert names[:6] == ["a", "b", "c", "a", "b", "c"]
    assert proxy.stats.total == 30
    await until(lambda: proxy.stats.active == 0, 5, "all connections closed")


async def test_weights_share_connections_in_proportion(servers: Servers, proxies: Any) -> None:
    a, b = await servers.whoami("a"), await servers.whoami("b")
    proxy = await proxies(Backend(LOCAL, a.port, weight=2), Backend(LOCAL, b.port))

    names = [await who(proxy.port) for _ in range(30)]

    assert Counter(names) == {"a": 20, "b": 10}
    assert names[:3] == ["a", "b", "a"]  # interleaved, not bursts


def test_balancer_puts_down_backends_last_until_their_time_is_up() -> None:
    clock = Clock()
    a, b, c = Backend("10.0.0.1", 80), Backend("10.0.0.2", 80), Backend("10.0.0.3", 80)
    balancer = Balancer(down_for=2.0, clock=clock)
    balancer.set([a, b, c])

    assert balancer.mark_down(b) is True
    assert balancer.mark_down(b) is False  # already down
    assert [balancer.order()[0] for _ in range(4)] == [a, c, a, c]
    assert balancer.order()[-1] == b

    clock.now += 2.0
    assert b in [balancer.order()[0] for _ in range(3)]


def test_balancer_with_every_backend_down_still_offers_them_all() -> None:
    clock = Clock()
    a, b = Backend("10.0.0.1", 80), Backend("10.0.0.2", 80)
    balancer = Balancer(clock=clock)
    balancer.set([a, b])
    balancer.mark_down(a)
    balancer.mark_down(b)

    assert sorted(balancer.order(), key=lambda x: x.host) == [a, b]


def test_balancer_set_reports_removed_and_merges_duplicates() -> None:
    a, b = Backend("10.0.0.1", 80), Backend("10.0.0.2", 80)
    balancer = Balancer()
    balancer.set([a, b, a])

    assert balancer.backends == (Backend("10.0.0.1", 80, weight=2), b)
    assert balancer.set([b]) == {("10.0.0.1", 80)}
    assert a not in balancer and b in balancer
    assert balancer.set([]) == {("10.0.0.2", 80)}
    assert balancer.order() == []


@pytest.mark.parametrize(
    ("host", "port", "weight"),
    [("", 80, 1), ("h", 0, 1), ("h", 65536, 1), ("h", True, 1), ("h", 80, 0), ("h", 80, 1.5)],
)
def test_backend_refuses_bad_values(host: str, port: Any, weight: Any) -> None:
    with pytest.raises(MeshError):
        Backend(host, port, weight)


# --- backend set changes and failures ----------------------------------------------------------


async def test_removed_backend_gets_no_new_connections_while_its_open_one_keeps_working(
    servers: Servers, proxies: Any
) -> None:
    a, b = await servers.whoami("a"), await servers.whoami("b")
    proxy = await proxies(a.backend, b.backend)
    reader, writer = await connect(proxy.port)
    assert await reader.readline() == b"a\n"

    proxy.set_backends([b.backend])

    assert [await who(proxy.port) for _ in range(5)] == ["b"] * 5
    assert a.connections == 1
    assert await roundtrip(reader, writer, b"still here\n") == b"still here\n"
    writer.close()


async def test_cut_closes_the_connections_of_removed_backends(
    servers: Servers, proxies: Any
) -> None:
    a, b = await servers.whoami("a"), await servers.whoami("b")
    proxy = await proxies(a.backend, b.backend)
    to_a = await connect(proxy.port)
    to_b = await connect(proxy.port)
    assert await to_a[0].readline() == b"a\n"
    assert await to_b[0].readline() == b"b\n"

    proxy.set_backends([b.backend], cut=True)

    assert await sees_end(to_a[0])
    assert await roundtrip(*to_b, b"kept\n") == b"kept\n"
    to_a[1].close()
    to_b[1].close()


async def test_dead_backend_is_skipped_and_marked_down(servers: Servers, proxies: Any) -> None:
    clock = Clock()
    a = await servers.whoami("a")
    proxy = await proxies(dead_backend(), a.backend, clock=clock, down_for=2.0)

    assert [await who(proxy.port) for _ in range(4)] == ["a"] * 4
    assert proxy.stats.failed_connects == 1  # down: not tried again

    clock.now += 2.0
    assert [await who(proxy.port) for _ in range(2)] == ["a"] * 2
    assert proxy.stats.failed_connects == 2  # retried once its down time was over
    assert proxy.stats.unserved == 0


@contextlib.contextmanager
def silent_backend() -> Iterator[Backend]:
    """An address whose connects are never answered: a listener with its queue full."""
    listener = socket.socket()
    listener.bind((LOCAL, 0))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(listener.getsockname())
            fillers.append(s)
        yield Backend(*listener.getsockname())
    finally:
        for s in fillers:
            s.close()
        listener.close()


async def test_unanswered_connect_times_out_and_next_backend_serves(
    servers: Servers, proxies: Any
) -> None:
    a = await servers.whoami("a")
    with silent_backend() as silent:
        proxy = await proxies(silent, a.backend, connect_timeout=0.2)

        assert await who(proxy.port) == "a"
        assert proxy.stats.failed_connects == 1


async def test_connect_in_flight_to_a_removed_backend_moves_on_at_once(
    servers: Servers, proxies: Any
) -> None:
    a = await servers.whoami("a")
    with silent_backend() as silent:
        proxy = await proxies(silent, a.backend, connect_timeout=60)
        reader, writer = await connect(proxy.port)
        await until(lambda: proxy.stats.total == 1, 5, "the proxy to accept")

        proxy.set_backends([a.backend])

        async with asyncio.timeout(2):  # far less than the connect timeout
            assert await reader.readline() == b"a\n"
        assert proxy.stats.failed_connects == 0
        writer.close()


async def test_client_is_closed_when_every_backend_is_dead(proxies: Any) -> None:
    proxy = await proxies(dead_backend(), dead_backend())
    reader, writer = await connect(proxy.port)

    assert await reader.read(10) == b""
    assert proxy.stats.failed_connects == 2
    assert proxy.stats.unserved == 1
    writer.close()


async def test_without_backends_the_client_sees_eof_at_once(proxies: Any) -> None:
    proxy = await proxies()
    reader, writer = await connect(proxy.port)

    async with asyncio.timeout(0.5):
        assert await reader.read(10) == b""
    assert proxy.stats.unserved == 1
    assert proxy.stats.active == 0
    writer.close()


# --- PROXY protocol --------------------------------------------------------------------------


async def test_proxy_protocol_header_names_the_client(servers: Servers, proxies: Any) -> None:
    a = await servers.whoami("a", proxy_protocol=True)
    proxy = await proxies(a.backend, proxy_protocol=True)

    reader, writer = await connect(proxy.port, local_addr=("127.0.0.2", 0))
    client_port = writer.get_extra_info("sockname")[1]
    assert await reader.readline() == b"a\n"
    assert await roundtrip(reader, writer, b"payload\n") == b"payload\n"

    expected = f"PROXY TCP4 127.0.0.2 127.0.0.1 {client_port} {proxy.port}\r\n".encode()
    assert a.first_lines == [expected]
    writer.close()


async def test_connections_to_backends_leave_from_the_source_address() -> None:
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def note_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.put_nowait(writer.get_extra_info("peername")[0])
        writer.close()

    server = await asyncio.start_server(note_peer, LOCAL, 0)
    backend = Backend(LOCAL, server.sockets[0].getsockname()[1])
    proxy = PortProxy(0, host=LOCAL, backends=[backend], source="127.0.0.7")
    await proxy.start()
    try:
        _, writer = await connect(proxy.port)
        assert await asyncio.wait_for(seen.get(), 5) == "127.0.0.7"
        writer.close()
    finally:
        await proxy.close()
        server.close()


def test_a_table_entry_with_a_bad_source_address_is_refused() -> None:
    entry = {"protocol": "tcp", "published": 80, "source": "not-an-address"}
    with pytest.raises(MeshError, match=r"ingress\[0\]\.source"):
        parse_ingress({"ingress": [entry]})


@pytest.mark.parametrize(
    ("client", "local", "header"),
    [
        (("10.1.2.3", 5000), ("10.9.9.9", 80), b"PROXY TCP4 10.1.2.3 10.9.9.9 5000 80\r\n"),
        (
            ("2001:db8::1", 5000, 0, 0),
            ("2001:db8::2", 443, 0, 0),
            b"PROXY TCP6 2001:db8::1 2001:db8::2 5000 443\r\n",
        ),
        (
            ("::ffff:192.0.2.7", 5000, 0, 0),
            ("::ffff:192.0.2.1", 80, 0, 0),
            b"PROXY TCP4 192.0.2.7 192.0.2.1 5000 80\r\n",
        ),
        (
            ("fe80::1%eth0", 5000, 0, 2),
            ("fe80::2%eth0", 80, 0, 2),
            b"PROXY TCP6 fe80::1 fe80::2 5000 80\r\n",
        ),
        (("10.1.2.3", 5000), ("2001:db8::2", 80, 0, 0), b"PROXY UNKNOWN\r\n"),
        (None, ("10.9.9.9", 80), b"PROXY UNKNOWN\r\n"),
        (("/run/sock",), ("10.9.9.9", 80), b"PROXY UNKNOWN\r\n"),
    ],
)
def test_proxy_header(client: Any, local: Any, header: bytes) -> None:
    assert proxy_header(client, local) == header


# --- forwarding --------------------------------------------------------------------------------


def pattern(size: int, seed: int) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 4096  # 128 KiB
    return (block * (size // len(block) + 1))[:size]


async def test_large_transfer_both_ways_arrives_intact_with_bounded_buffers(
    servers: Servers, proxies: Any
) -> None:
    async def sink_and_source(srv: Server, reader: Any, writer: Any) -> None:
        async def pull() -> str:
            digest, n = hashlib.sha256(), 0
            while data := await reader.read(256 * 1024):
                digest.update(data)
                n += len(data)
            return f"{n}:{digest.hexdigest()}"

        puller = asyncio.create_task(pull())
        writer.write(pattern(20 * MB, 2))
        writer.write_eof()
        await writer.drain()
        srv.first_lines.append((await puller).encode())

    up, down = pattern(20 * MB, 1), pattern(20 * MB, 2)
    srv = await servers.start("bulk", sink_and_source)
    proxy = await proxies(srv.backend)
    reader, writer = await connect(proxy.port)

    async def push() -> None:
        writer.write(up)
        await writer.drain()
        writer.write_eof()

    async with asyncio.timeout(60):
        pushing = asyncio.create_task(push())
        received = hashlib.sha256()
        n = 0
        while data := await reader.read(256 * 1024):
            received.update(data)
            n += len(data)
        await pushing
        await until(lambda: srv.first_lines, 10, "the backend to read to EOF")

    assert (n, received.hexdigest()) == (len(down), hashlib.sha256(down).hexdigest())
    assert srv.first_lines == [f"{len(up)}:{hashlib.sha256(up).hexdigest()}".encode()]
    assert proxy.stats.bytes_in == proxy.stats.bytes_out == 20 * MB
    assert proxy.stats.peak_buffered < 1 * MB
    writer.close()
    await until(lambda: proxy.stats.active == 0, 5, "the connection closed")


async def test_slow_backend_stops_the_proxy_reading_from_the_client(
    servers: Servers, proxies: Any
) -> None:
    release = asyncio.Event()

    async def stalled(srv: Server, reader: Any, writer: Any) -> None:
        await release.wait()
        digest, n = hashlib.sha256(), 0
        while data := await reader.read(256 * 1024):
            digest.update(data)
            n += len(data)
        srv.first_lines.append(f"{n}:{digest.hexdigest()}".encode())

    payload = pattern(64 * MB, 3)
    srv = await servers.start("slow", stalled)
    proxy = await proxies(srv.backend)
    _, writer = await connect(proxy.port)
    writer.transport.set_write_buffer_limits(high=64 * MB)  # hold it all, unless sent
    writer.write(payload)
    writer.write_eof()

    await until(lambda: proxy.stats.read_pauses >= 1, 10, "the proxy to pause")
    # Watch the stalled steady state: a proxy that kept reading would take in the whole
    # payload within milliseconds on loopback.
    read, held = [], []
    for _ in range(50):
        read.append(proxy.stats.bytes_in)
        held.append(proxy.buffered())
        await asyncio.sleep(0.01)
    assert max(read) < 16 * MB
    assert max(held) < 1 * MB
    assert writer.transport.get_write_buffer_size() > 32 * MB

    release.set()
    await until(lambda: srv.first_lines, 30, "the backend to read everything")
    assert srv.first_lines == [f"{len(payload)}:{hashlib.sha256(payload).hexdigest()}".encode()]
    assert proxy.stats.peak_buffered < 1 * MB
    writer.close()


async def test_client_half_close_keeps_the_reply_direction_open(
    servers: Servers, proxies: Any
) -> None:
    async def count(srv: Server, reader: Any, writer: Any) -> None:
        data = await reader.read()  # to EOF
        writer.write(f"got {len(data)} bytes\n".encode())
        await writer.drain()

    srv = await servers.start("count", count)
    proxy = await proxies(srv.backend)
    reader, writer = await connect(proxy.port)

    writer.write(b"hello")
    writer.write_eof()

    async with asyncio.timeout(5):
        assert await reader.read() == b"got 5 bytes\n"
    await until(lambda: proxy.stats.active == 0, 5, "the connection closed")
    writer.close()


async def test_backend_half_close_keeps_the_request_direction_open(
    servers: Servers, proxies: Any
) -> None:
    async def early_eof(srv: Server, reader: Any, writer: Any) -> None:
        writer.write(b"bye\n")
        writer.write_eof()
        srv.first_lines.append(await reader.read())

    srv = await servers.start("early", early_eof)
    proxy = await proxies(srv.backend)
    reader, writer = await connect(proxy.port)

    async with asyncio.timeout(5):
        assert await reader.read() == b"bye\n"  # ends with EOF: the backend's half-close
    writer.write(b"more after your EOF")
    writer.write_eof()

    await until(lambda: srv.first_lines, 5, "the backend to read to EOF")
    assert srv.first_lines == [b"more after your EOF"]
    await until(lambda: proxy.stats.active == 0, 5, "the connection closed")
    writer.close()


async def test_backend_reset_closes_the_client(servers: Servers, proxies: Any) -> None:
    async def reset(srv: Server, reader: Any, writer: Any) -> None:
        await reader.readline()
        linger = struct.pack("ii", 1, 0)  # close with a RST, not a FIN
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        writer.transport.abort()

    srv = await servers.start("reset", reset)
    proxy = await proxies(srv.backend)
    reader, writer = await connect(proxy.port)
    writer.write(b"go\n")

    assert await sees_end(reader)
    await until(lambda: proxy.stats.active == 0, 5, "the connection closed")
    writer.close()


async def test_client_reset_reaches_the_backend_as_a_reset(servers: Servers, proxies: Any) -> None:
    seen: list[str] = []

    async def watch(srv: Server, reader: Any, writer: Any) -> None:
        writer.write(b"ready\n")
        try:
            data = await reader.read()
            seen.append(f"eof after {len(data)} bytes")
        except ConnectionResetError:
            seen.append("reset")

    srv = await servers.start("watch", watch)
    proxy = await proxies(srv.backend)
    reader, writer = await connect(proxy.port)
    assert await reader.readline() == b"ready\n"

    linger = struct.pack("ii", 1, 0)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    writer.transport.abort()

    await until(lambda: seen, 5, "the backend to notice")
    assert seen == ["reset"]
    await until(lambda: proxy.stats.active == 0, 5, "the connection closed")


async def test_many_concurrent_clients_each_get_their_own_bytes_back(
    servers: Servers, proxies: Any
) -> None:
    backends = [await servers.whoami(n) for n in ("a", "b", "c")]
    proxy = await proxies(*(s.backend for s in backends))

    async def client(i: int) -> bool:
        reader, writer = await connect(proxy.port)
        try:
            await reader.readline()
            payload = pattern(100_000 + i, i)
            writer.write(payload)
            writer.write_eof()
            async with asyncio.timeout(20):
                return await reader.read() == payload
        finally:
            writer.close()

    results = await asyncio.gather(*(client(i) for i in range(150)))

    assert all(results)
    assert sum(s.connections for s in backends) == 150
    await until(lambda: proxy.stats.active == 0, 5, "every connection closed")


async def test_backend_given_by_name_is_resolved(servers: Servers, proxies: Any) -> None:
    a = await servers.whoami("a")
    proxy = await proxies(Backend("localhost", a.port))

    assert [await who(proxy.port) for _ in range(2)] == ["a", "a"]


async def test_counters_follow_a_connection(servers: Servers, proxies: Any) -> None:
    a = await servers.whoami("a")
    proxy = await proxies(a.backend)
    reader, writer = await connect(proxy.port)
    await reader.readline()

    assert await roundtrip(reader, writer, b"12345\n") == b"12345\n"
    assert proxy.stats.active == 1
    assert proxy.stats.bytes_in == 6
    assert proxy.stats.bytes_out == 2 + 6

    writer.close()
    await until(lambda: proxy.stats.active == 0, 5, "the connection closed")
    assert proxy.stats.total == 1


async def test_close_leaves_no_listening_socket_and_ends_connections(
    servers: Servers, proxies: Any
) -> None:
    a = await servers.whoami("a")
    proxy = await proxies(a.backend)
    reader, writer = await connect(proxy.port)
    assert await reader.readline() == b"a\n"

    await proxy.close()

    assert refused(proxy.port)
    assert await sees_end(reader)
    assert proxy.stats.active == 0
    writer.close()


# --- Mesh.apply --------------------------------------------------------------------------------


def table(port: int, *backends: Server, **extra: Any) -> dict[str, Any]:
    entry = {"protocol": "tcp", "published": port, **extra}
    entry["backends"] = [{"host": LOCAL, "port": s.port} for s in backends]
    return {"ingress": [entry]}


async def test_apply_opens_updates_and_closes_ports(servers: Servers) -> None:
    a, b = await servers.whoami("a"), await servers.whoami("b")
    port = free_port()
    async with Mesh(LOCAL) as mesh:
        await mesh.apply(table(port, a))
        proxy = mesh.proxies[("tcp", port)]
        reader, writer = await connect(port)
        assert await reader.readline() == b"a\n"

        await mesh.apply(table(port, a))  # unchanged: untouched
        assert mesh.proxies[("tcp", port)] is proxy
        assert await roundtrip(reader, writer, b"one\n") == b"one\n"

        await mesh.apply(table(port, b))  # new backends: same listener
        assert mesh.proxies[("tcp", port)] is proxy
        assert await who(port) == "b"
        assert await roundtrip(reader, writer, b"two\n") == b"two\n"

        await mesh.apply({"ingress": []})
        assert mesh.proxies == {}
        assert refused(port)
        assert await sees_end(reader)
        writer.close()


async def test_apply_switches_the_proxy_protocol_for_new_connections(servers: Servers) -> None:
    a = await servers.whoami("a", proxy_protocol=True)
    port = free_port()
    async with Mesh(LOCAL) as mesh:
        await mesh.apply(table(port, a, proxy_protocol=False))
        reader, writer = await connect(port)
        assert await roundtrip(reader, writer, b"no header\n") == b"a\n"
        assert a.first_lines == [b"no header\n"]
        writer.close()

        await mesh.apply(table(port, a, proxy_protocol=True))
        assert await who(port) == "a"
        assert a.first_lines[-1].startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 ")


async def test_apply_with_cut_closes_connections_to_removed_backends(servers: Servers) -> None:
    a, b = await servers.whoami("a"), await servers.whoami("b")
    port = free_port()
    async with Mesh(LOCAL) as mesh:
        await mesh.apply(table(port, a))
        reader, writer = await connect(port)
        assert await reader.readline() == b"a\n"

        await mesh.apply(table(port, b), cut_removed=True)

        assert await sees_end(reader)
        writer.close()


async def test_apply_reports_a_busy_port_and_applies_the_rest(servers: Servers) -> None:
    a = await servers.whoami("a")
    busy = socket.socket()
    busy.bind((LOCAL, 0))
    busy.listen()
    busy_port, port = busy.getsockname()[1], free_port()
    try:
        async with Mesh(LOCAL) as mesh:
            both = {"ingress": table(busy_port, a)["ingress"] + table(port, a)["ingress"]}
            with pytest.raises(MeshError, match=f"tcp/{busy_port}"):
                await mesh.apply(both)
            assert list(mesh.proxies) == [("tcp", port)]
            assert await who(port) == "a"
    finally:
        busy.close()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"ingress": {}}, "ingress: expected a list"),
        ({"ingress": [{"published": "80"}]}, r"ingress\[0\].published"),
        ({"ingress": [{"published": 80, "protocol": "sctp"}]}, r"ingress\[0\].protocol"),
        (
            {"ingress": [{"published": 80, "backends": [{"host": "h"}]}]},
            r"backends\[0\]: backend port",
        ),
        ({"ingress": [{"published": 80, "proxy_protocol": "yes"}]}, "proxy_protocol"),
        (
            {"ingress": [{"published": 80, "protocol": "udp", "proxy_protocol": True}]},
            "needs tcp",
        ),
        ({"ingress": [{"published": 80}, {"published": 80}]}, "published twice"),
    ],
)
async def test_apply_refuses_a_malformed_table_and_changes_nothing(
    servers: Servers, bad: dict[str, Any], message: str
) -> None:
    a = await servers.whoami("a")
    port = free_port()
    async with Mesh(LOCAL) as mesh:
        await mesh.apply(table(port, a))

        with pytest.raises(MeshError, match=message):
            await mesh.apply(bad)

        assert list(mesh.proxies) == [("tcp", port)]
        assert await who(port) == "a"


def test_parse_ingress_defaults() -> None:
    ports = parse_ingress({"ingress": [{"published": 80, "backends": [{"host": "h", "port": 8}]}]})

    port = ports[("tcp", 80)]
    assert port.backends == (Backend("h", 8),)
    assert port.proxy_protocol is False
    assert parse_ingress({}) == {}


async def test_mesh_close_leaves_no_listening_socket(servers: Servers) -> None:
    a = await servers.whoami("a")
    ports = [free_port(), free_port()]
    mesh = Mesh(LOCAL)
    await mesh.apply({"ingress": [table(p, a)["ingress"][0] for p in ports]})
    assert [await who(p) for p in ports] == ["a", "a"]

    await mesh.close()

    assert all(refused(p) for p in ports)


# --- UDP ---------------------------------------------------------------------------------------


class UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, name: str) -> None:
        self.name = name.encode()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.name + b":" + data, addr)


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.replies.put_nowait(data)


@pytest.fixture
async def udp() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    transports: list[asyncio.BaseTransport] = []
    loop = asyncio.get_running_loop()

    async def backend(name: str) -> Backend:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: UdpEcho(name), local_addr=(LOCAL, 0)
        )
        transports.append(transport)
        return Backend(LOCAL, transport.get_extra_info("sockname")[1])

    async def client(port: int) -> tuple[asyncio.DatagramTransport, UdpClient]:
        transport, protocol = await loop.create_datagram_endpoint(
            UdpClient, remote_addr=(LOCAL, port)
        )
        transports.append(transport)
        return transport, protocol

    backend.client = client  # type: ignore[attr-defined]
    yield backend
    for t in transports:
        t.close()


async def ask_udp(transport: asyncio.DatagramTransport, client: UdpClient, data: bytes) -> bytes:
    """Send until a reply comes (datagrams may be lost while a backend is found dead)."""
    async with asyncio.timeout(5):
        while True:
            transport.sendto(data)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    return await client.replies.get()


async def test_udp_clients_spread_over_backends_and_get_replies(udp: Any, proxies: Any) -> None:
    a, b = await udp("a"), await udp("b")
    proxy = await proxies(a, b, protocol="udp")

    replies = []
    for i in range(4):
        transport, client = await udp.client(proxy.port)
        replies.append(await ask_udp(transport, client, b"%d" % i))
        assert await ask_udp(transport, client, b"again") == replies[-1][:2] + b"again"

    assert replies == [b"a:0", b"b:1", b"a:2", b"b:3"]
    assert proxy.stats.active == 4


async def test_udp_dead_backend_is_marked_down_and_the_client_moves_on(
    udp: Any, proxies: Any
) -> None:
    a = await udp("a")
    proxy = await proxies(dead_backend(), a, protocol="udp")
    transport, client = await udp.client(proxy.port)

    assert await ask_udp(transport, client, b"x") == b"a:x"
    assert proxy.stats.failed_connects == 1


async def test_udp_without_backends_drops_and_idle_clients_are_forgotten(
    udp: Any, proxies: Any
) -> None:
    clock = Clock()
    a = await udp("a")
    proxy = await proxies(protocol="udp", clock=clock, udp_idle=30.0)
    transport, client = await udp.client(proxy.port)
    transport.sendto(b"lost")
    await until(lambda: proxy.stats.unserved == 1, 5, "the datagram dropped")

    proxy.set_backends([a])
    assert await ask_udp(transport, client, b"x") == b"a:x"
    assert proxy.expire_idle() == 0
    clock.now += 30.0
    assert proxy.expire_idle() == 1
    assert proxy.stats.active == 0


async def test_udp_cut_forgets_clients_of_removed_backends(udp: Any, proxies: Any) -> None:
    a, b = await udp("a"), await udp("b")
    proxy = await proxies(a, protocol="udp")
    transport, client = await udp.client(proxy.port)
    assert await ask_udp(transport, client, b"x") == b"a:x"

    proxy.set_backends([b])
    assert await ask_udp(transport, client, b"y") == b"a:y"  # its session lives on
    proxy.set_backends([b], cut=False)
    proxy.set_backends([a, b])
    proxy.set_backends([b], cut=True)
    assert await ask_udp(transport, client, b"z") == b"b:z"
