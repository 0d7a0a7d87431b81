"""The MQTT session every shoal process uses: aiomqtt over TLS, will, failover over the broker's
servers with jittered backoff (broker.servers), QoS 1 messages sent again on the next connection
when one drops before the broker acknowledged them, handlers by topic filter, and
request/response with correlation and timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from broker.envelope import MAX_MESSAGE_BYTES, Envelope, Rejections, decode, encode
from broker.errors import BrokerError, EnvelopeError, MessageTooLarge, NotConnected, RequestTimeout
from broker.servers import Address, Rotation, parse_address
from broker.tls import REVOKED, diagnose, explain_refusal
from broker.topics import answers

__all__ = ["Handler", "Session", "SessionConfig", "Traffic", "Will", "keepalive_for"]

log = logging.getLogger("shoal.session")

Handler = Callable[[str, Envelope], Awaitable[None]]
RawHandler = Callable[[str, bytes], Awaitable[None]]


def keepalive_for(heartbeat: float) -> int:
    """The MQTT keepalive (whole seconds) for a node's heartbeat period: the heartbeat itself,
    at least 1 s and at most 30 s. Both ends then notice a broker or a node that has stopped
    answering (TCP still open, nothing arriving) within one to two keepalives."""
    return max(1, min(30, int(heartbeat)))


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1


@dataclass(slots=True)
class Traffic:
    """What went through this session since it was made, for the metrics endpoint."""

    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0


@dataclass(slots=True)
class SessionConfig:
    client_id: str
    sender: str
    tls: Callable[[], ssl.SSLContext]
    host: str = ""
    port: int = 0
    addresses: tuple[str, ...] = ()
    """Every broker server's "host:port"; empty: host:port alone."""
    will: Will | None = None
    clean_session: bool = True
    keepalive: int = 30
    connect_timeout: float = 10.0
    probe_after: float = 2.0
    """A connect attempt pending this long is probed with raw TLS for its reason."""
    backoff_min: float = 0.2
    backoff_max: float = 15.0
    rng: random.Random = field(default_factory=random.Random)

    def servers(self) -> list[Address]:
        if self.addresses:
            return [parse_address(a) for a in self.addresses]
        return [Address(self.host, self.port)]


class Session:
    """One connection to the broker, kept up until :meth:`close`.

    Subscriptions are declared with :meth:`on` / :meth:`on_raw` and renewed on every
    reconnect. Handlers run one at a time in arrival order; a handler that raises is logged
    and the session carries on.
    """

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.rejections = Rejections()
        self.traffic = Traffic()
        self.last_error: str | None = None
        self.revoked = False  # the broker refused this identity's certificate as revoked
        self.connects = 0
        self.rotation = Rotation(
            config.servers(),
            config.client_id,
            backoff_min=config.backoff_min,
            backoff_max=config.backoff_max,
            rng=config.rng,
        )
        self.connected_to: Address | None = None  # the server of the connection that is up
        self._lost: asyncio.Future[None] | None = None  # done when that connection ends
        self._up_since = 0.0
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._seq = itertools.count(1)
        self._subs: list[tuple[str, int, RawHandler]] = []
        self._pending: dict[int, asyncio.Future[Envelope]] = {}
        self._asked_on: dict[int, str] = {}  # where each pending request was sent
        self._on_connect: list[Callable[[], Awaitable[None]]] = []
        self._on_revoked: list[Callable[[], None]] = []
        self._on_disconnect: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._spawned: set[asyncio.Task[None]] = set()
        self._diagnosis: asyncio.Task[None] | None = None
        self._inner: asyncio.Task[None] | None = None
        self._reconnect_now = False
        self._stopper: asyncio.Future[None] | None = None

    # declaration -----------------------------------------------------------------------
    def on(self, topic_filter: str, handler: Handler, qos: int = 1, *, spawn: bool = False) -> None:
        """Handle envelopes on `topic_filter`. With spawn, each message is handled in a task of
        its own, for handlers that wait on other messages (e.g. a Raft commit)."""

        async def raw(topic: str, payload: bytes) -> None:
            try:
                env = decode(payload)
            except EnvelopeError as exc:
                self.rejections.reject(topic, str(exc))
                return
            if env.re and env.re in self._pending:
                if not answers(self._asked_on.get(env.re, ""), topic):
                    self.rejections.reject(topic, "an answer on a topic that cannot carry it")
                    return
                fut = self._pending.pop(env.re)
                if not fut.done():
                    fut.set_result(env)
                return
            if spawn:
                task = asyncio.create_task(self._guard(handler, topic, env))
                self._spawned.add(task)
                task.add_done_callback(self._spawned.discard)
            else:
                await handler(topic, env)

        self._subs.append((topic_filter, qos, raw))

    async def _guard(self, handler: Handler, topic: str, env: Envelope) -> None:
        try:
            await handler(topic, env)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handler failed on a message from %s", topic)

    def on_raw(self, topic_filter: str, handler: RawHandler, qos: int = 1) -> None:
        self._subs.append((topic_filter, qos, handler))

    async def subscribe_now(self, topic_filter: str, handler: RawHandler, qos: int = 1) -> None:
        """Like :meth:`on_raw`, and subscribed at once when connected (not only at the next
        connect). A refused or failed subscription waits for the next connect."""
        self._subs.append((topic_filter, qos, handler))
        client = self._client
        if client is not None and self.connected:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.subscribe(topic_filter, qos=qos, timeout=10)

    async def unsubscribe_now(self, topic_filter: str) -> None:
        """Like :meth:`off`, and unsubscribed at once when connected."""
        self.off(topic_filter)
        client = self._client
        if client is not None and self.connected:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.unsubscribe(topic_filter, timeout=10)

    def off(self, *topic_filters: str) -> None:
        """Stop handling these filters (unsubscribed at the next reconnect)."""
        self._subs = [sub for sub in self._subs if sub[0] not in topic_filters]

    def on_connect(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._on_connect.append(callback)

    def on_revoked(self, callback: Callable[[], None]) -> None:
        """Called (once per refusal) when the broker refuses the certificate as revoked."""
        self._on_revoked.append(callback)

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        """Called when a connection that was up ends (dropped, or the keepalive found the
        broker silent), before any reconnect."""
        self._on_disconnect.append(callback)

    # state -----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def local_address(self) -> str | None:
        """The address this end of the broker connection has (None while not connected)."""
        client = self._client
        if client is None:
            return None
        try:
            sock: Any = client._client.socket()
            return str(sock.getsockname()[0]) if sock is not None else None
        except (AttributeError, OSError):
            return None

    async def wait_connected(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            why = self.last_error or "no answer"
            where = ", ".join(str(a) for a in self.rotation.addresses)
            raise NotConnected(
                f"could not connect to the broker at {where} within {timeout:g} s: {why}"
            ) from None

    def use_addresses(self, addresses: list[Address]) -> None:
        """Fail over among these servers from the next reconnect on (the connection that is up
        stays)."""
        self.rotation.replace(addresses)

    # the connection loop ---------------------------------------------------------------
    def _make_client(self, server: Address) -> aiomqtt.Client:
        c = self.config
        will = None
        if c.will is not None:
            will = aiomqtt.Will(c.will.topic, c.will.payload, qos=c.will.qos, retain=c.will.retain)
        client = aiomqtt.Client(
            server.host,
            server.port,
            identifier=c.client_id,
            protocol=aiomqtt.ProtocolVersion.V311,  # what every broker backend speaks
            tls_context=c.tls(),
            will=will,
            clean_session=c.clean_session,
            keepalive=c.keepalive,
            timeout=c.connect_timeout,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            max_inflight_messages=100,
            max_queued_outgoing_messages=10000,
        )
        client.pending_calls_threshold = 1000
        return client

    async def run(self) -> None:
        """Connect, dispatch, fail over and reconnect with backoff (broker.servers); until
        close()."""
        loop = asyncio.get_running_loop()
        while not self._closing:
            server = self.rotation.current
            self._lost = loop.create_future()
            self._inner = asyncio.create_task(self._connect_once(server))
            probe = asyncio.create_task(self._probe_pending_connect(server))
            was_up, failure = False, None
            try:
                await self._inner
            except asyncio.CancelledError:
                if not self._reconnect_now or self._closing:
                    raise
            except (aiomqtt.MqttError, OSError, ssl.SSLError) as exc:
                failure = exc
            finally:
                probe.cancel()
                self._inner = None
                self._client = None
                self.connected_to = None
                if not self._lost.done():
                    self._lost.set_result(None)
                if self._connected.is_set():
                    was_up = True
                    self._connected.clear()
                    for callback in self._on_disconnect:
                        callback()
            if self._closing:
                break
            if failure is not None:  # diagnosed while the next server is tried
                self._diagnose(failure, server)
            if self._reconnect_now:
                self._reconnect_now = False
                continue
            up_for = loop.time() - self._up_since if was_up else None
            wait = self.rotation.failed(up_for)
            log.info("left %s (%s); trying %s", server, failure or "closed", self.rotation.current)
            await asyncio.sleep(wait)

    async def _connect_once(self, server: Address) -> None:
        """One connection to `server`, until it ends."""
        async with self._make_client(server) as client:
            self._client = client
            for topic_filter, qos, _ in self._subs:
                await client.subscribe(topic_filter, qos=qos)
            self.connects += 1
            self.last_error = None
            self.connected_to = server
            if self._diagnosis is not None:
                self._diagnosis.cancel()
            self.rotation.connected()
            self._up_since = asyncio.get_running_loop().time()
            self._connected.set()
            log.info("connected to %s", server)
            for cb in self._on_connect:
                await cb()
            async for message in client.messages:
                await self._dispatch(message)

    def reconnect(self) -> None:
        """Drop the connection cleanly and connect again at once (e.g. with a new certificate)."""
        if self._inner is not None and not self._inner.done():
            self._reconnect_now = True
            self._stopper = asyncio.ensure_future(self._stop_inner(self._inner))

    async def _stop_inner(self, inner: asyncio.Task[None], grace: float = 1.0) -> None:
        """Cancel one connection; aiomqtt then disconnects gracefully. If the broker never
        acknowledges (seen under load), stop waiting after `grace` seconds."""
        inner.cancel()
        done, _ = await asyncio.wait({inner}, timeout=grace)
        if not done:
            client = self._client
            fut = getattr(client, "_disconnected", None)
            if fut is not None and not fut.done():
                log.warning("the broker did not acknowledge the disconnect; dropping it")
                fut.set_result(None)
            await asyncio.wait({inner}, timeout=grace)

    async def _probe_pending_connect(self, server: Address) -> None:
        """Name the reason of a connect attempt still pending after `probe_after` seconds.

        A broker that refuses the certificate (revoked, expired, another CA) makes aiomqtt
        wait for its whole connect timeout and then say only "timed out"; until then the
        session would show no reason at all, e.g. right after the daemon of a removed node
        restarts. A raw TLS probe of the server being tried tells at once."""
        await asyncio.sleep(self.config.probe_after)
        if self._connected.is_set() or self._closing:
            return
        try:  # TLS only: a CONNECT would take over the very session being set up
            why = await diagnose(server.host, server.port, self.config.tls(), timeout=3, mqtt=False)
        except (OSError, ssl.SSLError, ValueError):
            return
        if why != "ok" and not self._connected.is_set() and not self._closing:
            self._record_failure(why, server)

    def _diagnose(self, exc: BaseException, server: Address) -> None:
        """Record why `server` failed: what a probe of that server finds, or else the error.
        The probe can take seconds on a server that hangs, so it does not hold up the next
        attempt; a connection that comes up meanwhile ends it, and failures while one runs
        are not probed again. A refusal the broker answered with needs no probe: its code
        says it all, at once."""
        refusal = explain_refusal(exc)
        if refusal is not None and not self._closing:
            self._record_failure(refusal, server)
            return
        if self._closing or (self._diagnosis is not None and not self._diagnosis.done()):
            return
        reason = str(exc) or type(exc).__name__
        self._diagnosis = asyncio.create_task(self._probe_failed(server, reason))

    async def _probe_failed(self, server: Address, reason: str) -> None:
        # TLS only, as above: the next attempt may already be up when this probe reaches the
        # broker, and a CONNECT (clean session, the client id taken from the certificate)
        # would cut that connection and wipe its session
        try:
            why = await diagnose(server.host, server.port, self.config.tls(), timeout=3, mqtt=False)
        except (OSError, ssl.SSLError, ValueError) as exc:
            why = str(exc)
        if not self._connected.is_set() and not self._closing:
            self._record_failure(why if why != "ok" else reason, server)

    def _record_failure(self, reason: str, server: Address) -> None:
        if reason != self.last_error:
            log.warning("broker connection to %s lost or refused: %s", server, reason)
        self.last_error = reason
        if reason == REVOKED:
            self.revoked = True
            for callback in self._on_revoked:
                callback()

    async def _dispatch(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = str(payload).encode() if payload is not None else b""
        self.traffic.messages_in += 1
        self.traffic.bytes_in += len(payload)
        for topic_filter, _, handler in self._subs:
            if message.topic.matches(topic_filter):
                try:
                    await handler(topic, bytes(payload))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("handler for %s failed on a message from %s", topic_filter, topic)

    def start(self) -> asyncio.Task[None]:
        """Run the connection loop in a task of its own (see :meth:`close`)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"session-{self.config.client_id}")
        return self._task

    async def close(self) -> None:
        """Disconnect cleanly (no will is published) and stop reconnecting."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            if self._inner is not None and not self._inner.done():
                await self._stop_inner(self._inner)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._diagnosis is not None:
            self._diagnosis.cancel()
        for spawned in list(self._spawned):
            spawned.cancel()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(NotConnected("the session was closed"))
        self._pending.clear()

    # sending ---------------------------------------------------------------------------
    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float = 10.0,
        resend: bool = True,
    ) -> None:
        """Publish and, at QoS 1, wait for the broker's acknowledgement. A message whose
        connection ends before that is sent again on the next one (with `resend`; receivers
        may then get it twice), until `timeout` passes: only then does the caller see
        NotConnected."""
        if len(payload) > MAX_MESSAGE_BYTES:
            raise MessageTooLarge(
                f"a message of {len(payload):,} bytes to {topic} is over the {MAX_MESSAGE_BYTES:,}"
                "-byte limit of the broker; it was not sent"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._client is None:
                await self.wait_connected(max(0.0, deadline - loop.time()))
            client, lost = self._client, self._lost
            if client is None or lost is None:
                raise NotConnected("not connected to the broker")
            left = max(0.001, deadline - loop.time())
            if qos == 0 or lost.done():
                await self._publish_on(client, topic, payload, qos, retain, left)
                return
            sent = asyncio.ensure_future(
                self._publish_on(client, topic, payload, qos, retain, left)
            )
            try:
                await asyncio.wait({sent, lost}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                sent.cancel()
                raise
            failure = None
            if not sent.done():
                sent.cancel()  # the connection ended before the broker acknowledged it
            elif (failure := sent.exception()) is None:
                return
            elif resend and not lost.done():  # refused by a connection that is ending
                await asyncio.wait({lost}, timeout=max(0.0, deadline - loop.time()))
            if not resend or not lost.done() or loop.time() >= deadline:
                if failure is not None:
                    raise failure
                raise NotConnected(
                    f"publish to {topic} failed: the connection to the broker ended before"
                    " the broker acknowledged it"
                )
            log.debug("sending %s again on the next connection", topic)

    async def _publish_on(
        self,
        client: aiomqtt.Client,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        left: float,
    ) -> None:
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, timeout=left)
        except aiomqtt.MqttError as exc:
            raise NotConnected(f"publish to {topic} failed: {exc}") from exc
        self.traffic.messages_out += 1
        self.traffic.bytes_out += len(payload)

    def next_seq(self) -> int:
        return next(self._seq)

    async def send(
        self,
        topic: str,
        type: str,
        body: Any = None,
        *,
        re: int = 0,
        retain: bool = False,
        qos: int = 1,
    ) -> int:
        seq = self.next_seq()
        env = Envelope(type=type, sender=self.config.sender, seq=seq, body=body, re=re)
        await self.publish(topic, encode(env), retain=retain, qos=qos)
        return seq

    async def request(
        self, topic: str, type: str, body: Any = None, *, timeout: float = 10.0
    ) -> Envelope:
        """Send a request and wait for the envelope whose ``re`` is its seq.

        The reply topic must be subscribed with :meth:`on` (the reply is routed by ``re``).
        """
        seq = self.next_seq()
        fut: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._pending[seq] = fut
        self._asked_on[seq] = topic
        try:
            env = Envelope(type=type, sender=self.config.sender, seq=seq, body=body)
            # not sent again: a request may change things, and its answer would be lost anyway
            await self.publish(topic, encode(env), timeout=timeout, resend=False)
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise RequestTimeout(f"no answer to {type!r} within {timeout:g} s") from None
        finally:
            self._pending.pop(seq, None)
            self._asked_on.pop(seq, None)


def raise_for_reply(env: Envelope) -> dict[str, Any]:
    """The body of a reply, or a BrokerError carrying the remote error message."""
    body = env.body
    if not isinstance(body, dict):
        raise BrokerError(f"malformed {env.type!r} reply from {env.sender}")
    if body.get("ok") is not True:
        raise BrokerError(str(body.get("error") or "the request was refused"))
    return body
