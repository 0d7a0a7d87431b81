"""The embedded DNS server: the codec on hand-built messages, the server on loopback sockets.

Queries are built and replies decoded by the small codec below, written apart from the
module's own. Servers listen on a free port of 127.0.0.1 (and 127.0.0.2); fake upstreams on
other free ports answer with canned replies, or stay silent. Every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.net.dns import (
    CLASS_IN,
    FORMERR,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    SERVFAIL,
    TYPE_A,
    TYPE_AAAA,
    DnsError,
    DnsServer,
    Query,
    error,
    parse_query,
    read_resolv_conf,
    reject,
    response,
)

LOCAL = "127.0.0.1"
OTHER = "127.0.0.2"  # all of 127.0.0.0/8 is loopback on Linux
UNBINDABLE = "203.0.113.7"  # TEST-NET-3: on no interface of this machine
TYPE_MX = 15
TYPE_TXT = 16
TYPE_OPT = 41
RD = 0x0100
WAIT = 2.0

# --- a codec of the test's own --------------------------------------------------------------


def encode_name(name: str) -> bytes:
    labels = [label.encode() for label in name.strip(".").split(".") if label]
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def build_query(
    name: str = "web",
    qtype: int = TYPE_A,
    *,
    qid: int = 0x1234,
    flags: int = RD,
    qdcount: int = 1,
    qclass: int = CLASS_IN,
    additional: Sequence[bytes] = (),
    raw_name: bytes | None = None,
) -> bytes:
    header = struct.pack("!HHHHHH", qid, flags, qdcount, 0, 0, len(additional))
    wire = encode_name(name) if raw_name is None else raw_name
    return header + wire + struct.pack("!HH", qtype, qclass) + b"".join(additional)


def opt_record(payload: int = 4096) -> bytes:
    """An EDNS OPT pseudo-record: root name, type 41, class = UDP payload size."""
    return b"\0" + struct.pack("!HHIH", TYPE_OPT, payload, 0, 0)


def read_name(data: bytes, pos: int) -> tuple[str, int]:
    """A name at ``pos`` (following compression pointers) and the offset just past it."""
    labels: list[str] = []
    end = None
    for _ in range(128):
        length = data[pos]
        if length & 0xC0 == 0xC0:
            end = pos + 2 if end is None else end
            pos = int.from_bytes(data[pos : pos + 2], "big") & 0x3FFF
            continue
        if length == 0:
            return ".".join(labels), (pos + 1 if end is None else end)
        labels.append(data[pos + 1 : pos + 1 + length].decode())
        pos += 1 + length
    raise AssertionError("pointer loop")


@dataclass
class Record:
    name: str
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes
    raw_owner: bytes  # the owner name as it is on the wire


@dataclass
class Reply:
    id: int
    flags: int
    rcode: int
    qdcount: int
    question: tuple[str, int, int] | None
    question_bytes: bytes
    answers: list[Record] = field(default_factory=list)

    @property
    def addresses(self) -> list[str]:
        family = {4: socket.AF_INET, 16: socket.AF_INET6}
        return [socket.inet_ntop(family[len(r.rdata)], r.rdata) for r in self.answers]

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)


QR, RA, TC = 0x8000, 0x0080, 0x0200


def decode(data: bytes) -> Reply:
    qid, flags, qd, an, _, _ = struct.unpack_from("!HHHHHH", data)
    pos = 12
    question = None
    if qd:
        qname, pos = read_name(data, 12)
        qtype, qclass = struct.unpack_from("!HH", data, pos)
        pos += 4
        question = (qname, qtype, qclass)
    reply = Reply(qid, flags, flags & 0xF, qd, question, data[12:pos])
    for _ in range(an):
        owner_start = pos
        name, pos = read_name(data, pos)
        rtype, rclass, ttl, size = struct.unpack_from("!HHIH", data, pos)
        pos += 10
        raw_owner = data[owner_start : owner_start + (pos - 10 - owner_start)]
        reply.answers.append(Record(name, rtype, rclass, ttl, data[pos : pos + size], raw_owner))
        pos += size
    assert pos == len(data), "trailing bytes after the answers"
    return reply


# --- parse_query ------------------------------------------------------------------------------


def test_parse_query_reads_the_question() -> None:
    data = build_query("Web.Example.COM.", TYPE_AAAA, qid=0xBEEF)
    query = parse_query(data)
    assert query == Query(
        id=0xBEEF,
        name="web.example.com",
        qtype=TYPE_AAAA,
        qclass=CLASS_IN,
        recursion_desired=True,
        question=data[12:],
    )
    assert query.question.startswith(b"\x03Web\x07Example")  # echoed as sent, case kept


def test_parse_query_without_recursion_desired() -> None:
    assert parse_query(build_query(flags=0)).recursion_desired is False


def test_parse_query_ignores_an_edns_opt_record() -> None:
    data = build_query("web", additional=[opt_record()])
    query = parse_query(data)
    assert query.name == "web"
    assert query.question == encode_name("web") + struct.pack("!HH", TYPE_A, CLASS_IN)


def test_parse_query_of_the_root_name() -> None:
    assert parse_query(build_query(".", raw_name=b"\0")).name == ""


def test_parse_query_escapes_bytes_that_are_not_plain_text() -> None:
    raw = b"\x03a.b\x03\xc3\xa9Z\0"
    assert parse_query(build_query(raw_name=raw)).name == "a\\046b.\\195\\169z"


def _labels(*sizes: int) -> bytes:
    return b"".join(bytes([n]) + b"x" * n for n in sizes) + b"\0"


MALFORMED = {
    "empty": (b"", "too short", FORMERR),
    "short header": (build_query()[:11], "too short", FORMERR),
    "response": (build_query(flags=QR | RD), "a response", FORMERR),
    "opcode": (build_query(flags=2 << 11), "opcode 2", NOTIMP),
    "no question": (build_query(qdcount=0), "0 questions", FORMERR),
    "two questions": (build_query(qdcount=2), "2 questions", FORMERR),
    "label too long": (build_query(raw_name=b"\x40" + b"x" * 64 + b"\0"), "label too long", 1),
    "name too long": (build_query(raw_name=_labels(63, 63, 63, 62)), "name too long", FORMERR),
    "pointer": (build_query(raw_name=b"\x03web\xc0\x0c"), "compression pointer", FORMERR),
    "no name end": (build_query()[:16], "truncated question", FORMERR),
    "cut label": (build_query("example")[:15], "truncated question", FORMERR),
    "no type": (build_query()[:-3], "truncated question", FORMERR),
    "header only": (build_query()[:12], "truncated question", FORMERR),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_parse_query_refuses_malformed_messages(case: str) -> None:
    data, reason, rcode = MALFORMED[case]
    with pytest.raises(DnsError, match=reason) as caught:
        parse_query(data)
    assert caught.value.rcode == rcode
    assert isinstance(caught.value, ValueError)


def test_a_name_of_255_octets_is_the_longest() -> None:
    name = parse_query(build_query(raw_name=_labels(63, 63, 63, 61))).name
    assert len(name) == 253  # 255 on the wire


@given(st.binary(max_size=300))
def test_parse_query_fails_only_with_dns_error(data: bytes) -> None:
    with contextlib.suppress(DnsError):
        parse_query(data)


@given(
    st.lists(st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True), min_size=1, max_size=5),
    st.integers(0, 0xFFFF),
    st.sampled_from([TYPE_A, TYPE_AAAA]),
)
def test_parse_query_round_trips_names(labels: list[str], qid: int, qtype: int) -> None:
    query = parse_query(build_query(".".join(labels).upper(), qtype, qid=qid))
    assert (query.name, query.id, query.qtype) == (".".join(labels), qid, qtype)


# --- response, error, reject -------------------------------------------------------------------


def test_response_answers_a_records_pointing_at_the_question() -> None:
    query = parse_query(build_query("Web.Svc", qid=7))
    reply = decode(response(query, ["10.0.1.5", "10.0.1.6"], ttl=30))
    assert (reply.id, reply.rcode, reply.qdcount) == (7, NOERROR, 1)
    assert reply.has(QR) and reply.has(RA) and reply.has(RD) and not reply.has(TC)
    assert reply.question == ("Web.Svc", TYPE_A, CLASS_IN)
    assert reply.question_bytes == query.question
    assert reply.addresses == ["10.0.1.5", "10.0.1.6"]
    for record in reply.answers:
        assert record.raw_owner == b"\xc0\x0c"
        assert record.name == "Web.Svc"  # the pointer lands on the question's name
        assert (record.rtype, record.rclass, record.ttl) == (TYPE_A, CLASS_IN, 30)


def test_response_echoes_recursion_desired() -> None:
    reply = decode(response(parse_query(build_query(flags=0)), ["10.0.0.1"]))
    assert not reply.has(RD) and reply.has(RA)
    assert reply.answers[0].ttl == 600


def test_response_answers_aaaa_with_ipv6_addresses_only() -> None:
    query = parse_query(build_query("web", TYPE_AAAA))
    reply = decode(response(query, ["10.0.1.5", "fd00::5", "FD00:0::6"]))
    assert reply.addresses == ["fd00::5", "fd00::6"]
    assert all(r.rtype == TYPE_AAAA and len(r.rdata) == 16 for r in reply.answers)


def test_response_a_leaves_out_ipv6() -> None:
    reply = decode(response(parse_query(build_query("web")), ["fd00::5", "10.0.1.5"]))
    assert reply.addresses == ["10.0.1.5"]


def test_response_without_addresses_of_the_family_is_no_data() -> None:
    reply = decode(response(parse_query(build_query("web", TYPE_AAAA)), ["10.0.1.5"]))
    assert (reply.rcode, reply.answers, reply.qdcount) == (NOERROR, [], 1)


def test_response_to_other_types_is_empty() -> None:
    reply = decode(response(parse_query(build_query("web", TYPE_MX)), ["10.0.1.5"]))
    assert (reply.rcode, reply.answers) == (NOERROR, [])


def test_response_answers_duplicates_once() -> None:
    reply = decode(response(parse_query(build_query()), ["10.0.0.1", "10.0.0.1", "10.0.0.2"]))
    assert reply.addresses == ["10.0.0.1", "10.0.0.2"]


def test_response_drops_what_does_not_fit_and_sets_tc() -> None:
    addresses = [f"10.0.{i // 250}.{i % 250}" for i in range(100)]
    query = parse_query(build_query("web"))
    data = response(query, addresses, max_size=512)
    reply = decode(data)
    assert len(data) <= 512 and reply.has(TC)
    assert reply.addresses == addresses[: len(reply.answers)]
    assert len(data) + 16 > 512  # no further record would have fitted
    assert not decode(response(query, addresses)).has(TC)


def test_response_refuses_what_is_no_address() -> None:
    with pytest.raises(ValueError):
        response(parse_query(build_query()), ["web.example.com"])


@pytest.mark.parametrize("rcode", [NXDOMAIN, SERVFAIL, FORMERR, NOTIMP])
def test_error_replies_carry_the_rcode_and_question(rcode: int) -> None:
    query = parse_query(build_query("gone", qid=99))
    reply = decode(error(query, rcode))
    assert (reply.id, reply.rcode, reply.answers) == (99, rcode, [])
    assert reply.question == ("gone", TYPE_A, CLASS_IN)
    assert reply.has(QR) and reply.has(RD) and reply.has(RA)


def test_reject_salvages_the_id() -> None:
    reply = decode(reject(b"\xab\xcd\x01\x00\xff") or b"")
    assert (reply.id, reply.rcode, reply.qdcount) == (0xABCD, FORMERR, 0)
    assert reply.has(QR) and reply.has(RD)
    assert decode(reject(b"\xab\xcd") or b"").id == 0xABCD


def test_reject_keeps_the_opcode() -> None:
    reply = decode(reject(build_query(flags=2 << 11), NOTIMP) or b"")
    assert (reply.rcode, (reply.flags >> 11) & 0xF) == (NOTIMP, 2)


def test_reject_sends_nothing_without_an_id_or_to_a_response() -> None:
    assert reject(b"") is None
    assert reject(b"\x12") is None
    assert reject(build_query(flags=QR)) is None


def test_read_resolv_conf() -> None:
    text = """\
# written by the network manager
; another kind of comment
nameserver 10.0.0.2
nameserver   192.168.1.1  # the router
  nameserver 2001:DB8::1
nameserver 10.0.0.2
nameserver not-an-address
nameserver
nameserver 1.1.1.1 8.8.8.8
#nameserver 9.9.9.9
search example.com
options ndots:2
nameserver fe80::1%eth0
"""
    assert read_resolv_conf(text) == ["10.0.0.2", "192.168.1.1", "2001:db8::1", "fe80::1%eth0"]
    assert read_resolv_conf("") == []


# --- fixtures for the server -------------------------------------------------------------------


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1."""
    while True:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        ):
            tcp.bind((LOCAL, 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind((LOCAL, port))
            except OSError:
                continue
            return port


def canned_reply(data: bytes) -> bytes:
    """What a fake upstream answers: a TXT record naming itself (owner name in full)."""
    _, end = read_name(data, 12)
    question = data[12 : end + 4]
    header = data[:2] + b"\x81\x80" + struct.pack("!HHHH", 1, 1, 0, 0)
    txt = b"\x0dfrom-upstream"
    record = question[:-4] + struct.pack("!HHIH", TYPE_TXT, CLASS_IN, 42, len(txt)) + txt
    return header + question + record


class Upstream:
    """A resolver the server forwards to, over UDP and TCP on one port."""

    def __init__(self, silent: bool = False) -> None:
        self.silent = silent
        self.port = 0
        self.queries: asyncio.Queue[bytes] = asyncio.Queue()
        self.replies: list[bytes] = []
        self.held: dict[str, asyncio.Event] = {}  # names answered only once their event is set
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        return (LOCAL, self.port)

    async def start(self) -> Upstream:
        self.port = free_port()
        loop = asyncio.get_running_loop()
        upstream = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                upstream._spawn(upstream._answer(data, lambda r: transport.sendto(r, addr)))

        transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=self.address)
        self._udp = transport
        self._tcp = await asyncio.start_server(self._tcp_client, LOCAL, self.port)
        return self

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, data: bytes, send: Callable[[bytes], None]) -> None:
        self.queries.put_nowait(data)
        if self.silent:
            return
        event = self.held.get(parse_query(data).name)
        if event is not None:
            await event.wait()
        reply = canned_reply(data)
        self.replies.append(reply)
        send(reply)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            size = int.from_bytes(await reader.readexactly(2), "big")
            data = await reader.readexactly(size)
            await self._answer(data, lambda r: writer.write(len(r).to_bytes(2, "big") + r))
            await writer.drain()
        writer.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()


class Client(asyncio.DatagramProtocol):
    """A UDP stub resolver: one socket, replies queued in arrival order."""

    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # no subclass before 3.12

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.replies.put_nowait(data)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data)

    async def reply(self, timeout: float = WAIT) -> bytes:
        return await asyncio.wait_for(self.replies.get(), timeout)


@contextlib.asynccontextmanager
async def udp_client(host: str, port: int) -> AsyncIterator[Client]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(Client, remote_addr=(host, port))
    try:
        yield client
    finally:
        transport.close()


async def ask(data: bytes, port: int, host: str = LOCAL) -> bytes:
    async with udp_client(host, port) as client:
        client.send(data)
        return await client.reply()


class TcpClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, host: str = LOCAL) -> TcpClient:
        return cls(*await asyncio.wait_for(asyncio.open_connection(host, port), WAIT))

    async def ask(self, data: bytes) -> bytes:
        self.writer.write(len(data).to_bytes(2, "big") + data)
        async with asyncio.timeout(WAIT):
            size = int.from_bytes(await self.reader.readexactly(2), "big")
            return await self.reader.readexactly(size)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


NAMES: dict[str, list[str]] = {
    "web": ["10.0.1.5", "10.0.1.6", "fd00::5"],
    "db": [],  # known, but no healthy task
    "big": [f"10.1.{i // 250}.{i % 250}" for i in range(100)],
}


@dataclass
class Names:
    """The cluster's names, and who asked for what."""

    asked: list[tuple[str, str]] = field(default_factory=list)
    broken: bool = False

    def __call__(self, client_ip: str, name: str) -> list[str] | None:
        self.asked.append((client_ip, name))
        if self.broken:
            raise RuntimeError("the routing table is gone")
        return NAMES.get(name)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def names() -> Names:
    return Names()


MakeServer = Callable[..., Awaitable[DnsServer]]


@pytest.fixture
async def make_server(port: int, names: Names) -> AsyncIterator[MakeServer]:
    made: list[DnsServer] = []

    async def make(hosts: Sequence[str] = (LOCAL,), **kwargs: Any) -> DnsServer:
        server = DnsServer(names, port=port, **kwargs)
        made.append(server)
        assert await server.listen(hosts) == []
        return server

    yield make
    for server in made:
        await server.close()


@pytest.fixture
async def upstream() -> AsyncIterator[Callable[..., Awaitable[Upstream]]]:
    made: list[Upstream] = []

    async def make(silent: bool = False) -> Upstream:
        made.append(await Upstream(silent).start())
        return made[-1]

    yield make
    for one in made:
        await one.close()


# --- the server --------------------------------------------------------------------------------


async def test_answers_cluster_names(make_server: MakeServer, port: int, names: Names) -> None:
    server = await make_server(ttl=5)
    reply = decode(await ask(build_query("WEB", qid=321), port))
    assert (reply.id, reply.rcode, reply.addresses) == (321, NOERROR, ["10.0.1.5", "10.0.1.6"])
    assert reply.answers[0].ttl == 5
    reply = decode(await ask(build_query("web", TYPE_AAAA), port))
    assert reply.addresses == ["fd00::5"]
    assert names.asked == [(LOCAL, "web"), (LOCAL, "web")]
    assert server.stats.answered == 2


async def test_known_names_without_records_get_no_data(make_server: MakeServer, port: int) -> None:
    server = await make_server()
    for data in (build_query("db"), build_query("web", TYPE_MX)):
        reply = decode(await ask(data, port))
        assert (reply.rcode, reply.answers) == (NOERROR, [])
    assert server.stats.answered == 2


async def test_forwards_other_names_byte_for_byte(
    make_server: MakeServer, upstream: Callable[..., Awaitable[Upstream]], port: int
) -> None:
    up = await upstream()
    server = await make_server(upstreams=[up.address])
    query = build_query("Example.COM", TYPE_A, qid=4242, additional=[opt_record()])
    reply = await ask(query, port)
    assert await asyncio.wait_for(up.queries.get(), WAIT) == query
    assert up.replies == [reply]
    assert decode(reply).answers[0].rdata == b"\x0dfrom-upstream"
    assert (server.stats.forwarded, server.stats.answered) == (1, 0)


async def test_forwards_other_classes_even_for_cluster_names(
    make_server: MakeServer, upstream: Callable[..., Awaitable[Upstream]], port: int
) -> None:
    up = await upstream()
    await make_server(upstreams=[up.address])
    chaos = build_query("web", TYPE_TXT, qclass=3)
    assert await ask(chaos, port) == canned_reply(chaos)


async def test_next_upstream_when_one_is_silent(
    make_server: MakeServer, upstream: Callable[..., Awaitable[Upstream]], port: int
) -> None:
    silent, good = await upstream(silent=True), await upstream()
    server = await make_server(upstreams=[silent.address, good.address], timeout=0.2)
    query = build_query("example.com")
    assert await ask(query, port) == canned_reply(query)
    assert silent.queries.qsize() == 1 and good.queries.qsize() == 1
    assert (server.stats.forwarded, server.stats.failed) == (1, 0)


async def test_next_upstream_at_once_when_one_refuses(
    make_server: MakeServer, upstream: Callable[..., Awaitable[Upstream]], port: int
) -> None:
    good = await upstream()
    await make_server(upstreams=[(LOCAL, free_port()), good.address], timeout=30)
    query = build_query("example.com")
    assert await ask(query, port) == canned_reply(query)  # within WAIT, not after 30 s


async def test_servfail_when_no_upstream_answers(
    make_server: MakeServer, upstream: Callable[..., Awaitable[Upstream]], port: int
) -> None:
    silent = await upstream(silent=True)
    server = await make_server(upstreams=[silent.address], timeout=0.2)
    reply = decode(await ask(build_query("example.com", qid=77), port))
    assert (reply.id, reply.rcode, reply.question) == (77, SERVFAIL, ("example.com", 1, 1))
    assert (server.stats.failed, server.stats.forwarded) == (1, 0)


async def test_servfail_without_upstreams(make_server: MakeServer, port: int) -> None:
    server = await make_server()
    assert decode(await ask(build_query("example.com"), port)).rcode == SERVFAIL
    assert server.stats.failed == 1


async def test_own_address_is_no_upstream(make_server: MakeServer, port: int, names: Names) -> None:
    server = await make_server(upstreams=[(LOCAL, port)], timeout=30)
    assert decode(await ask(build_query("example.com"), port)).rcode == SERVFAIL
    assert names.asked == [(LOCAL, "example.com")]  # asked once: the query did not come back
    assert (server.stats.failed, server.stats.forwarded) == (1, 0)


async def test_lookup_failure_is_servfail(make_server: MakeServer, port: int, names: Names) -> None:
    server = await make_server()
    names.broken = True
    assert decode(await ask(build_query("web"), port)).rcode == SERVFAIL
    assert server.stats.failed == 1


async def test_a_slow_forward_holds_up_nobody(
    make_server: MakeServer, upstream: Callable[..., Awaitable[Upstream]], port: int
) -> None:
    up = await upstream()
    up.held["slow.example"] = release = asyncio.Event()
    await make_server(upstreams=[up.address], timeout=30)
    async with udp_client(LOCAL, port) as client:
        client.send(build_query("slow.example", qid=1))
        await asyncio.wait_for(up.queries.get(), WAIT)
        client.send(build_query("fast.example", qid=2))
        assert decode(await client.reply()).id == 2
        client.send(build_query("web", qid=3))
        assert decode(await client.reply()).id == 3
        release.set()
        assert decode(await client.reply()).id == 1


async def test_close_drops_forwards_in_flight(
    make_server: MakeServer, upstream: Callable[..., Awaitable[Upstream]], port: int
) -> None:
    silent = await upstream(silent=True)
    server = await make_server(upstreams=[silent.address], timeout=30)
    async with udp_client(LOCAL, port) as client:
        client.send(build_query("example.com"))
        await asyncio.wait_for(silent.queries.get(), WAIT)
        await asyncio.wait_for(server.close(), WAIT)
    assert server.addresses == []


async def test_tcp_answers_and_forwards(
    make_server: MakeServer, upstream: Callable[..., Awaitable[Upstream]], port: int
) -> None:
    up = await upstream()
    server = await make_server(upstreams=[up.address])
    client = await TcpClient.connect(port)
    try:
        assert decode(await client.ask(build_query("web"))).addresses == ["10.0.1.5", "10.0.1.6"]
        query = build_query("example.com", qid=9)
        assert await client.ask(query) == canned_reply(query)
        reply = decode(await client.ask(build_query(qid=10, qdcount=2)))
        assert (reply.id, reply.rcode) == (10, FORMERR)
    finally:
        await client.close()
    assert (server.stats.answered, server.stats.forwarded, server.stats.malformed) == (1, 1, 1)


async def test_udp_truncates_and_tcp_carries_everything(make_server: MakeServer, port: int) -> None:
    await make_server()
    data = await ask(build_query("big"), port)
    assert len(data) <= 512 and decode(data).has(TC)
    client = await TcpClient.connect(port)
    try:
        reply = decode(await client.ask(build_query("big")))
    finally:
        await client.close()
    assert not reply.has(TC) and reply.addresses == NAMES["big"]


async def test_malformed_datagrams(make_server: MakeServer, port: int) -> None:
    server = await make_server()
    async with udp_client(LOCAL, port) as client:
        client.send(b"\x12\x34\x01")
        reply = decode(await client.reply())
        assert (reply.id, reply.rcode) == (0x1234, FORMERR)
        client.send(build_query(qid=5, flags=2 << 11))
        reply = decode(await client.reply())
        assert (reply.id, reply.rcode) == (5, NOTIMP)
        client.send(b"\x01")  # not even an id: no reply
        client.send(build_query(qid=6, flags=QR))  # a response: no reply
        client.send(build_query(qid=7))
        assert decode(await client.reply()).id == 7  # the next reply is the good query's
    assert (server.stats.malformed, server.stats.answered) == (4, 1)


async def test_listen_reconfigures(make_server: MakeServer, port: int) -> None:
    server = await make_server([LOCAL])
    kept = await TcpClient.connect(port, LOCAL)
    try:
        assert await server.listen([OTHER, LOCAL, LOCAL]) == []
        assert sorted(server.addresses) == [LOCAL, OTHER]
        assert decode(await kept.ask(build_query(qid=1))).id == 1  # its address was kept
        assert decode(await ask(build_query(qid=2), port, OTHER)).id == 2
        assert decode(await ask(build_query(qid=3), port, LOCAL)).id == 3

        assert await server.listen([OTHER]) == []
        assert server.addresses == [OTHER]
        assert await asyncio.wait_for(kept.reader.read(), WAIT) == b""  # closed with its address
        with pytest.raises(ConnectionRefusedError):
            await TcpClient.connect(port, LOCAL)
        assert decode(await ask(build_query(qid=4), port, OTHER)).id == 4
    finally:
        await kept.close()


async def test_listen_reports_addresses_it_cannot_bind(names: Names, port: int) -> None:
    async with DnsServer(names, port=port) as server:
        errors = await server.listen([UNBINDABLE, LOCAL])
        assert len(errors) == 1
        assert errors[0].startswith(f"{UNBINDABLE}:{port}: ")
        assert "assign requested address" in errors[0]
        assert server.addresses == [LOCAL]
        assert decode(await ask(build_query(), port)).rcode == NOERROR
    assert server.addresses == []


async def test_dig_resolves_through_the_server(make_server: MakeServer, port: int) -> None:
    dig = shutil.which("dig")
    if dig is None:
        pytest.skip("needs dig (dnsutils)")
    await make_server()
    for transport in ("+notcp", "+tcp"):
        process = await asyncio.create_subprocess_exec(
            dig, f"@{LOCAL}", "-p", str(port), "web", "A", "+short", "+tries=1", transport,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, _ = await asyncio.wait_for(process.communicate(), 10)
        assert stdout.decode().split() == ["10.0.1.5", "10.0.1.6"]
