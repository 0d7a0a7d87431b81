"""The manager's recent cluster events, for `shoal events`, and their topic ``mon/events``.

Every manager applies the same committed entries, so every manager derives the same events
(agent/manager/events.py) with the same times: each entry carries when its author wrote it.
:class:`EventLog` watches the store in a task of its own (applying an entry only queues its
changes) and keeps the last :data:`LIMIT` events of the last :data:`MAX_AGE_NS`; a follower
gets those it asks for, then each new one as it comes. Events restored from a snapshot are
not changes and make none. On the leader, :class:`EventPublisher` sends each new event as
JSON on ``mon/events`` (QoS 1, not retained) through a bounded queue: a broker that cannot
keep up loses events (counted), never the apply path's time; and it keeps the last ones
retained on ``mon/events/recent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from agent.manager.events import derive, names_in
from agent.manager.store import Commit, Event, Node, Service, Store
from agent.model.errors import ShoalError
from agent.model.events import ClusterEvent, EventFilter
from broker.errors import BrokerError
from broker.session import Session
from broker.topics import Topics

__all__ = ["LIMIT", "MAX_AGE_NS", "RECENT", "EventLog", "EventPublisher"]

log = logging.getLogger("shoal.events")

LIMIT = 1000  # events kept for --since
MAX_AGE_NS = 3600 * 1_000_000_000  # and none older than an hour
QUEUE = 1000  # events waiting for one follower or the publisher; more are dropped, counted
RECENT = 50  # events in the retained digest mon/events/recent
DIGEST_EVERY = 1.0  # seconds: the digest is published at most this often


class _Feed:
    """One follower's queue of new events, bounded: what overflows is counted."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[ClusterEvent] = asyncio.Queue(maxsize=QUEUE)
        self.dropped = 0
        self.ended = asyncio.Event()  # the log stopped: no more events will come

    def put(self, ev: ClusterEvent) -> None:
        try:
            self.queue.put_nowait(ev)
        except asyncio.QueueFull:
            self.dropped += 1


class EventLog:
    def __init__(
        self,
        store: Store,
        *,
        limit: int = LIMIT,
        max_age_ns: int = MAX_AGE_NS,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.store = store
        self.clock = clock
        self.max_age_ns = max_age_ns
        self.recent: deque[ClusterEvent] = deque(maxlen=limit)
        self._feeds: set[_Feed] = set()
        self.stopped = False  # run() ended: no more events

    # taking events in ----------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._watch()
        finally:  # the manager role stopped: followers hear no more, and are told
            self.stopped = True
            for feed in self._feeds:
                feed.ended.set()

    async def _watch(self) -> None:
        async with self.store.watch() as q:
            batch: list[Event] = []
            while True:
                item = await q.get()
                if isinstance(item, Event):
                    batch.append(item)
                    continue
                if not item.restored:
                    try:
                        self.take(batch, item)
                    except Exception:  # a change this code cannot read must not end the log
                        log.exception("events of entry %d were lost", item.index)
                batch = []

    def take(self, changes: list[Event], commit: Commit) -> list[ClusterEvent]:
        """The events of one committed entry's changes: kept, and handed to every follower."""
        at = commit.at or self.clock()
        view = self.store.view()

        def now_named(kind: str, ident: str) -> str:
            obj = view.get(Service, ident) if kind == "service" else view.get(Node, ident)
            if isinstance(obj, Node):
                return obj.hostname
            return obj.name if obj is not None else ""

        names = names_in(changes, now_named)
        events = [e for e in (derive(c, names, at) for c in changes) if e is not None]
        for ev in events:
            self.recent.append(ev)
            for feed in self._feeds:
                feed.put(ev)
        self._prune()
        return events

    def _prune(self) -> None:
        oldest = self.clock() - self.max_age_ns
        while self.recent and self.recent[0].time_ns < oldest:
            self.recent.popleft()

    @contextlib.contextmanager
    def feed(self) -> Iterator[_Feed]:
        """New events from now on, while the context lasts."""
        f = _Feed()
        if self.stopped:
            f.ended.set()
        self._feeds.add(f)
        try:
            yield f
        finally:
            self._feeds.discard(f)

    # `shoal events` ------------------------------------------------------------------------
    def past(self, filt: EventFilter, since: int | None, until: int | None) -> list[ClusterEvent]:
        self._prune()
        return [
            e
            for e in self.recent
            if (since is None or e.time_ns >= since)
            and (until is None or e.time_ns <= until)
            and filt.matches(e)
        ]

    async def follow(self, args: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Batches ``{"events": [...], "dropped": n}``: the kept events the range asks for
        (with ``since`` or ``until``), then new ones until ``until`` (ns) or until the caller
        closes the iterator."""
        filt = EventFilter.from_wire(args.get("filters"))
        since, until = _ns(args, "since"), _ns(args, "until")
        with self.feed() as f:
            if since is not None or until is not None:
                old = self.past(filt, since, until)
                if old:
                    yield {"events": [e.to_dict() for e in old], "dropped": 0}
            while True:
                wait = None if until is None else (until - self.clock()) / 1e9
                if wait is not None and wait <= 0:
                    return
                first = await _next(f, wait)
                if first is None:
                    return
                got = [first]
                while not f.queue.empty():
                    got.append(f.queue.get_nowait())
                shown = [
                    e.to_dict()
                    for e in got
                    if filt.matches(e) and (until is None or e.time_ns <= until)
                ]
                dropped, f.dropped = f.dropped, 0
                if shown or dropped:
                    yield {"events": shown, "dropped": dropped}


async def _next(f: _Feed, wait: float | None) -> ClusterEvent | None:
    """The feed's next event; None when `wait` seconds pass first. A `ShoalError` when the
    log ends (this node stopped being a manager)."""
    getting = asyncio.ensure_future(f.queue.get())
    ending = asyncio.ensure_future(f.ended.wait())
    try:
        done, _ = await asyncio.wait({getting, ending}, timeout=wait, return_when="FIRST_COMPLETED")
    finally:
        for waiter in (getting, ending):
            waiter.cancel()
    if getting in done:
        return getting.result()
    if ending in done:
        raise ShoalError("the events ended: this node is no longer a manager")
    return None


def _ns(args: dict[str, Any], key: str) -> int | None:
    value = args.get(key)
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise ShoalError(f"events: {key} must be nanoseconds since the epoch")
    return value


class EventPublisher:
    """The leader's half: each new event as JSON on ``mon/events``, and the last
    :data:`RECENT` as one retained document on ``mon/events/recent``, so that a dashboard or
    an MQTT client that starts later still sees what just happened. The digest follows the
    events at most every ``digest_every`` seconds (a burst costs one), and a new leader
    refreshes it at once (every manager keeps the same recent events)."""

    def __init__(
        self,
        events: EventLog,
        session: Session,
        topics: Topics,
        *,
        digest_every: float = DIGEST_EVERY,
    ) -> None:
        self.events = events
        self.session = session
        self.topic = topics.mon("events")
        self.recent_topic = topics.mon("events", "recent")
        self.digest_every = digest_every
        self.published = 0
        self.dropped = 0
        self._stale = asyncio.Event()

    async def run(self) -> None:
        if self.events.recent:  # none yet (a restarted manager): keep the broker's digest
            self._stale.set()
        digests = asyncio.create_task(self._digests())
        try:
            await self._events()
        finally:
            digests.cancel()

    async def _events(self) -> None:
        with self.events.feed() as f:
            while True:
                ev = await f.queue.get()
                if f.dropped:
                    log.warning("%d events were not published: the broker is slow", f.dropped)
                    self.dropped, f.dropped = self.dropped + f.dropped, 0
                payload = json.dumps(ev.to_dict(), separators=(",", ":")).encode()
                self._stale.set()
                try:
                    await self.session.publish(self.topic, payload, qos=1)
                    self.published += 1
                except BrokerError as exc:
                    self.dropped += 1
                    log.warning("could not publish an event: %s", exc)

    def digest(self) -> bytes:
        """The retained document: ``{"events": [...]}``, oldest first."""
        recent = list(self.events.recent)[-RECENT:]
        doc = {"events": [ev.to_dict() for ev in recent]}
        return json.dumps(doc, separators=(",", ":")).encode()

    async def _digests(self) -> None:
        while True:
            await self._stale.wait()
            self._stale.clear()
            try:
                await self.session.publish(self.recent_topic, self.digest(), qos=1, retain=True)
            except BrokerError as exc:
                self._stale.set()  # tried again after the pause
                log.warning("could not publish the recent events: %s", exc)
            await asyncio.sleep(self.digest_every)
