"""The embedded DNS server a node runs for its tasks (Docker's 127.0.0.11, shoal style).

Tasks on overlay networks resolve each other's service names through it: a question for a name
the cluster knows is answered from the cluster's records, any other question is forwarded
unchanged to the node's upstream resolvers and their reply relayed unchanged.

The module has two halves. The codec (:func:`parse_query`, :func:`response`, :func:`error`,
:func:`reject`, :func:`read_resolv_conf`) is pure: bytes in, bytes out, no sockets. It reads
only what a stub resolver sends (one question, no compression in it; an EDNS OPT record or
other additional records after the question are ignored) and writes only what the server
needs (A and AAAA answers, whose owner names point back at the question, and error replies).

:class:`DnsServer` is the asyncio shell around it: UDP and TCP (RFC 1035 4.2.2 length
prefixes) on each address given to :meth:`DnsServer.listen`. Names are looked up through a
callable ``lookup(client_ip, name)``: a list of addresses (possibly empty) for a name of the
cluster, ``None`` for any other name. Answers carry the addresses in the order the lookup gives
them, so round robin over a service's tasks is the lookup's business. Forwarded questions go
to the upstreams in order, each given ``timeout`` seconds, every forward in its own task so a
slow upstream holds up nobody else; when none answers the client gets SERVFAIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

__all__ = [
    "CLASS_IN",
    "FORMERR",
    "NOERROR",
    "NOTIMP",
    "NXDOMAIN",
    "SERVFAIL",
    "TYPE_A",
    "TYPE_AAAA",
    "DnsError",
    "DnsServer",
    "DnsStats",
    "Lookup",
    "Query",
    "error",
    "parse_query",
    "read_resolv_conf",
    "reject",
    "response",
]

log = logging.getLogger("shoal.dns")

NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4

TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1

UDP_MAX = 512  # the most a reply over UDP may carry (RFC 1035 4.2.1; EDNS is not spoken)
TCP_MAX = 65535

_HEADER = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
_RECORD = struct.Struct("!HHHIH")  # name (a pointer), type, class, ttl, rdlength
_QR = 0x8000
_OPCODE = 0x7800
_TC = 0x0200
_RD = 0x0100
_RA = 0x0080
_POINTER = 0xC000 | _HEADER.size  # the question's name: always right after the header
_MAX_NAME = 255  # octets of a name on the wire, length bytes and final zero included
_MAX_LABEL = 63


class DnsError(ValueError):
    """A message that is not a query this server can read; ``rcode`` is the reply it earns."""

    def __init__(self, reason: str, rcode: int = FORMERR) -> None:
        super().__init__(reason)
        self.rcode = rcode


@dataclass(frozen=True, slots=True)
class Query:
    """One question. ``name`` is lower-case without the final dot (bytes that are not plain
    printable ASCII, dots within a label included, are written ``\\DDD``); ``question`` is the
    question section as received, echoed in every reply."""

    id: int
    name: str
    qtype: int
    qclass: int
    recursion_desired: bool
    question: bytes


# --- the codec ---------------------------------------------------------------------------------


def parse_query(data: bytes) -> Query:
    """The question of a standard query; :class:`DnsError` says what is wrong otherwise."""
    if len(data) < _HEADER.size:
        raise DnsError(f"message too short: {len(data)} bytes, a header takes {_HEADER.size}")
    qid, flags, qdcount, _, _, _ = _HEADER.unpack_from(data)
    if flags & _QR:
        raise DnsError("a response, not a query")
    if opcode := (flags & _OPCODE) >> 11:
        raise DnsError(f"opcode {opcode} not supported, only standard queries", NOTIMP)
    if qdcount != 1:
        raise DnsError(f"{qdcount} questions, expected exactly 1")
    name, end = _read_name(data, _HEADER.size)
    if end + 4 > len(data):
        raise DnsError("truncated question: type and class missing")
    qtype, qclass = struct.unpack_from("!HH", data, end)
    return Query(
        id=qid,
        name=name,
        qtype=qtype,
        qclass=qclass,
        recursion_desired=bool(flags & _RD),
        question=bytes(data[_HEADER.size : end + 4]),
    )


def _read_name(data: bytes, pos: int) -> tuple[str, int]:
    """The name starting at ``pos`` and the offset just past it; no compression allowed."""
    start = pos
    labels: list[str] = []
    while True:
        if pos >= len(data):
            raise DnsError("truncated question: name not terminated")
        length = data[pos]
        if length == 0:
            return ".".join(labels), pos + 1
        if length & 0xC0 == 0xC0:
            raise DnsError("compression pointer in the question")
        if length > _MAX_LABEL:
            raise DnsError(f"label too long (length byte 0x{length:02x}, at most {_MAX_LABEL})")
        if pos + 1 + length > len(data):
            raise DnsError("truncated question: label runs past the end")
        labels.append(_label_text(data[pos + 1 : pos + 1 + length]))
        pos += 1 + length
        if pos - start + 1 > _MAX_NAME:
            raise DnsError(f"name too long (more than {_MAX_NAME} octets)")


def _label_text(label: bytes) -> str:
    return "".join(
        chr(b) if 0x20 < b < 0x7F and b not in b".\\" else f"\\{b:03d}" for b in label.lower()
    )


def response(
    query: Query, addresses: Sequence[str], *, ttl: int = 600, max_size: int = TCP_MAX
) -> bytes:
    """A NOERROR reply with an A (or AAAA) record per IPv4 (or IPv6) address in ``addresses``.

    Addresses of the other family, and all of them for other query types, are left out: what
    remains may be no record at all ("no data"). Duplicates are answered once. Records that do
    not fit in ``max_size`` bytes are dropped and the reply marked truncated, so the client asks
    again over TCP. An address that is not an IP address raises ValueError.
    """
    size = {TYPE_A: 4, TYPE_AAAA: 16}.get(query.qtype)  # of the addresses answered
    records: list[bytes] = []
    seen: set[bytes] = set()
    for text in addresses:
        packed = ipaddress.ip_address(text).packed
        if len(packed) != size or packed in seen:
            continue
        seen.add(packed)
        records.append(_RECORD.pack(_POINTER, query.qtype, CLASS_IN, ttl, len(packed)) + packed)
    room = max_size - _HEADER.size - len(query.question)
    fitting = 0
    while fitting < len(records) and room >= len(records[fitting]):
        room -= len(records[fitting])
        fitting += 1
    flags = _reply_flags(query.recursion_desired, NOERROR) | (_TC if fitting < len(records) else 0)
    header = _HEADER.pack(query.id, flags, 1, fitting, 0, 0)
    return header + query.question + b"".join(records[:fitting])


def error(query: Query, rcode: int) -> bytes:
    """A reply carrying only ``rcode`` (NXDOMAIN, SERVFAIL, ...) and the echoed question."""
    header = _HEADER.pack(query.id, _reply_flags(query.recursion_desired, rcode), 1, 0, 0, 0)
    return header + query.question


def reject(data: bytes, rcode: int = FORMERR) -> bytes | None:
    """A header-only ``rcode`` reply to a message :func:`parse_query` refused, with its id.

    ``None`` when no reply should go out: the id itself is missing (under two bytes), or the
    message is a response (answering responses invites two servers to bounce errors forever).
    """
    if len(data) < 2:
        return None
    flags = int.from_bytes(data[2:4].ljust(2, b"\0"), "big")
    if flags & _QR:
        return None
    flags = _reply_flags(bool(flags & _RD), rcode) | (flags & _OPCODE)
    return _HEADER.pack(int.from_bytes(data[:2], "big"), flags, 0, 0, 0, 0)


def _reply_flags(recursion_desired: bool, rcode: int) -> int:
    return _QR | _RA | (_RD if recursion_desired else 0) | (rcode & 0xF)


def read_resolv_conf(text: str) -> list[str]:
    """The ``nameserver`` addresses of resolv.conf text, in order, each once.

    Comments (``#`` or ``;`` to the end of the line) and lines that do not name one valid IP
    address are skipped.
    """
    found: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) != 2 or words[0] != "nameserver":
            continue
        try:
            address = str(ipaddress.ip_address(words[1]))
        except ValueError:
            continue
        if address not in found:
            found.append(address)
    return found


# --- the server --------------------------------------------------------------------------------

Lookup = Callable[[str, str], Sequence[str] | None]
Send = Callable[[bytes], None]

_MAX_FORWARDS = 1024  # forwards in flight at once; beyond, clients get SERVFAIL at once
_TCP_IDLE = 10.0  # seconds a TCP client may keep a connection open without asking anything


@dataclass(slots=True)
class DnsStats:
    """What the server did with the messages it received."""

    answered: int = 0  # questions answered from the cluster's names
    forwarded: int = 0  # upstream replies relayed
    failed: int = 0  # SERVFAIL replies: no upstream answered, or the lookup failed
    malformed: int = 0  # messages that were not readable queries


@dataclass(slots=True)
class _Listener:
    """The sockets of one address, and its TCP connections (closed with it)."""

    udp: asyncio.DatagramTransport | None = None
    tcp: asyncio.Server | None = None
    clients: set[asyncio.Task[Any]] = field(default_factory=set)
    closed: bool = False


class DnsServer:
    """Answers the cluster's names and forwards the rest, on the addresses given to listen()."""

    def __init__(
        self,
        lookup: Lookup,
        *,
        upstreams: Sequence[tuple[str, int]] = (),
        port: int = 53,
        timeout: float = 2.0,
        ttl: int = 600,
    ) -> None:
        self.lookup = lookup
        self.upstreams = tuple(upstreams)  # may be replaced at any time (resolv.conf changed)
        self.port = port
        self.timeout = timeout
        self.ttl = ttl
        self.stats = DnsStats()
        self._listeners: dict[str, _Listener] = {}
        self._forwards: set[asyncio.Task[None]] = set()
        self._reconfiguring = asyncio.Lock()

    async def __aenter__(self) -> DnsServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def addresses(self) -> list[str]:
        """The addresses listened on now."""
        return list(self._listeners)

    async def listen(self, hosts: Iterable[str]) -> list[str]:
        """Listen on exactly ``hosts`` (at :attr:`port`); one error string per failed address.

        Addresses already listened on are kept as they are, those no longer given are closed.
        An address that cannot be bound is left out (and tried again by the next call).
        """
        wanted = list(dict.fromkeys(_normal(h) for h in hosts))
        errors: list[str] = []
        async with self._reconfiguring:
            for host in [h for h in self._listeners if h not in wanted]:
                await self._close_listener(self._listeners.pop(host))
            for host in wanted:
                if host in self._listeners:
                    continue
                try:
                    self._listeners[host] = await self._open_listener(host)
                except OSError as exc:
                    reason = f"{_endpoint(host, self.port)}: {exc.strerror or exc}"
                    log.warning("dns: cannot listen on %s", reason)
                    errors.append(reason)
        return errors

    async def close(self) -> None:
        """Stop listening and drop every forward and TCP connection in flight."""
        await self.listen(())
        await _cancel(self._forwards)

    async def _open_listener(self, host: str) -> _Listener:
        listener = _Listener()
        loop = asyncio.get_running_loop()
        listener.udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(host, self.port)
        )
        try:
            listener.tcp = await asyncio.start_server(
                functools.partial(self._tcp_client, listener), host, self.port
            )
        except BaseException:
            listener.udp.close()
            raise
        return listener

    async def _close_listener(self, listener: _Listener) -> None:
        listener.closed = True
        if listener.udp is not None:
            listener.udp.close()
        if listener.tcp is not None:
            listener.tcp.close()
            await _cancel(listener.clients)  # else wait_closed() waits for them (3.12 on)
            await listener.tcp.wait_closed()

    # -- one message

    def _serve(
        self, data: bytes, client_ip: str, send: Send, *, tcp: bool = False
    ) -> asyncio.Task[None] | None:
        """Reply to ``data`` through ``send``: now, or from the forward's task that is returned.

        Never raises: whatever goes wrong is logged.
        """
        try:
            outcome = self._local(data, client_ip, TCP_MAX if tcp else UDP_MAX)
            if not isinstance(outcome, Query):
                if outcome is not None:
                    send(outcome)
                return None
            if len(self._forwards) >= _MAX_FORWARDS:
                log.warning("dns: %d forwards in flight, refusing more", len(self._forwards))
                self.stats.failed += 1
                send(error(outcome, SERVFAIL))
                return None
            task = asyncio.get_running_loop().create_task(self._forward(outcome, data, send, tcp))
            self._forwards.add(task)
            task.add_done_callback(self._forwards.discard)
            return task
        except Exception:
            log.exception("dns: failed to serve a message from %s", client_ip)
            return None

    def _local(self, data: bytes, client_ip: str, max_size: int) -> bytes | Query | None:
        """The reply the node gives itself, or the query when it is for the upstreams."""
        try:
            query = parse_query(data)
        except DnsError as exc:
            self.stats.malformed += 1
            log.debug("dns: malformed message from %s: %s", client_ip, exc)
            return reject(data, exc.rcode)
        if query.qclass != CLASS_IN:
            return query
        try:
            addresses = self.lookup(client_ip, query.name)
            if addresses is None:
                return query
            reply = response(query, addresses, ttl=self.ttl, max_size=max_size)
        except Exception:
            log.exception("dns: lookup of %r for %s failed", query.name, client_ip)
            self.stats.failed += 1
            return error(query, SERVFAIL)
        self.stats.answered += 1
        return reply

    async def _forward(self, query: Query, data: bytes, send: Send, tcp: bool) -> None:
        exchange = _tcp_exchange if tcp else _udp_exchange
        for host, port in self._upstreams():
            try:
                async with asyncio.timeout(self.timeout):
                    reply = await exchange(host, port, data)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                log.debug("dns: upstream %s gave no reply: %r", _endpoint(host, port), exc)
                continue
            self.stats.forwarded += 1
            send(reply)
            return
        self.stats.failed += 1
        send(error(query, SERVFAIL))

    def _upstreams(self) -> list[tuple[str, int]]:
        """The upstreams, less the server's own addresses (asking itself would loop)."""
        return [
            (host, port)
            for host, port in self.upstreams
            if not (port == self.port and _normal(host) in self._listeners)
        ]

    # -- TCP clients

    async def _tcp_client(
        self, listener: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if listener.closed or task is None:  # accepted just before the address was dropped
            writer.close()
            return
        listener.clients.add(task)
        client_ip = str(writer.get_extra_info("peername", ("?",))[0])
        forwards: set[asyncio.Task[None]] = set()

        def send(reply: bytes) -> None:
            if not writer.is_closing():
                writer.write(len(reply).to_bytes(2, "big") + reply)

        try:
            while True:
                try:
                    async with asyncio.timeout(_TCP_IDLE):
                        size = int.from_bytes(await reader.readexactly(2), "big")
                        data = await reader.readexactly(size)
                except (TimeoutError, OSError, asyncio.IncompleteReadError):
                    break
                forwards = {t for t in forwards if not t.done()}
                if forward := self._serve(data, client_ip, send, tcp=True):
                    forwards.add(forward)
            # Replies still on their way: the client may only have half-closed.
            await asyncio.gather(*forwards, return_exceptions=True)
        except Exception:
            log.exception("dns: TCP client %s failed", client_ip)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            listener.clients.discard(task)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # no subclass before 3.12

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        transport = self.transport
        if transport is None:
            return

        def send(reply: bytes) -> None:
            if not transport.is_closing():
                transport.sendto(reply, addr)

        self.server._serve(data, str(addr[0]), send)

    def error_received(self, exc: Exception) -> None:
        log.debug("dns: UDP listener error: %s", exc)


# --- asking an upstream ------------------------------------------------------------------------


async def _udp_exchange(host: str, port: int, data: bytes) -> bytes:
    """One query over a connected UDP socket; the first datagram that is its reply."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Exchange(data[:2], reply), remote_addr=(host, port)
    )
    try:
        transport.sendto(data)
        return await reply
    finally:
        transport.close()


class _Exchange(asyncio.DatagramProtocol):
    def __init__(self, qid: bytes, reply: asyncio.Future[bytes]) -> None:
        self.qid = qid
        self.reply = reply

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if _is_reply(data, self.qid) and not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:  # e.g. port unreachable: refused
        if not self.reply.done():
            self.reply.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc or ConnectionError("upstream socket closed"))


async def _tcp_exchange(host: str, port: int, data: bytes) -> bytes:
    """One query over its own TCP connection."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(len(data).to_bytes(2, "big") + data)
        while True:
            size = int.from_bytes(await reader.readexactly(2), "big")
            reply = await reader.readexactly(size)
            if _is_reply(reply, data[:2]):
                return reply
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _cancel(tasks: set[asyncio.Task[Any]]) -> None:
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def _is_reply(data: bytes, qid: bytes) -> bool:
    return len(data) >= _HEADER.size and data[:2] == qid and bool(data[2] & 0x80)


def _normal(host: str) -> str:
    """An IP address in its canonical spelling (so "::1" and "0::1" are one); names as given."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
