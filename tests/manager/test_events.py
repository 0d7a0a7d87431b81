"""Cluster events: derived from committed store changes, kept on every manager for `--since`,
followed by `shoal events`, published by the leader on ``mon/events``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.manager.eventlog import QUEUE, EventLog, EventPublisher
from agent.manager.events import derive, names_in
from agent.manager.store import (
    Client,
    Cluster,
    Commit,
    Event,
    Network,
    Node,
    NodeAvailability,
    NodeStatus,
    Secret,
    Service,
    Store,
    Task,
    UpdateState,
    UpdateStatus,
    initial_snapshot,
)
from agent.model.errors import ShoalError
from agent.model.events import ClusterEvent, EventFilter
from agent.model.spec import ServiceMode
from broker.errors import BrokerError
from broker.topics import Topics
from tests.store.store_values import service_spec, status, task_spec

T = 1_796_300_000_000_000_000  # ns


def _unnamed(kind: str, ident: str) -> str:
    return ""


def _web(**changes: Any) -> Service:
    return dataclasses.replace(
        Service(id="s1", name="web", spec=service_spec("web", "nginx:1")), **changes
    )


def _task(state: str | None = "pending", **changes: Any) -> Task:
    task = Task(
        id="t1",
        service_id="s1",
        slot=1,
        node_id="n1",
        spec=task_spec(),
        status=status(state) if state else None,
    )
    return dataclasses.replace(task, **changes)


def _one(ev: Event, names: Any = _unnamed) -> ClusterEvent | None:
    return derive(ev, names, T)


# deriving events --------------------------------------------------------------------------
def test_a_created_service_is_a_service_create_event_with_its_name() -> None:
    ev = _one(Event("service", "create", "s1", None, _web()))
    assert ev == ClusterEvent("service", "create", "s1", {"name": "web"}, T)
    assert ev.to_dict() == {
        "Type": "service",
        "Action": "create",
        "Actor": {"ID": "s1", "Attributes": {"name": "web"}},
        "scope": "swarm",
        "time": T // 1_000_000_000,
        "timeNano": T,
    }


def test_a_service_update_says_what_changed_in_image_replicas_and_update_state() -> None:
    old = _web(update_status=UpdateStatus(state=UpdateState.COMPLETED))
    spec = dataclasses.replace(service_spec("web", "nginx:2"), mode=ServiceMode(replicas=3))
    new = _web(spec=spec, update_status=UpdateStatus(state=UpdateState.UPDATING))
    ev = _one(Event("service", "update", "s1", old, new))
    assert ev is not None and ev.action == "update"
    assert ev.attributes == {
        "name": "web",
        "image.old": "nginx:1",
        "image.new": "nginx:2",
        "replicas.old": "1",
        "replicas.new": "3",
        "updatestate.old": "completed",
        "updatestate.new": "updating",
    }


def test_a_write_that_changes_only_the_updated_stamp_is_no_event() -> None:
    old, new = _web(updated="a"), _web(updated="b")
    assert _one(Event("service", "update", "s1", old, new)) is None
    node = Node(id="n1", hostname="pi-1", updated="a")
    assert _one(Event("node", "update", "n1", node, dataclasses.replace(node, updated="b"))) is None


def test_a_node_update_is_named_by_hostname_and_says_state_availability_and_role() -> None:
    old = Node(id="n1", hostname="pi-1", status=NodeStatus.READY)
    new = dataclasses.replace(old, status=NodeStatus.DOWN, availability=NodeAvailability.DRAIN)
    ev = _one(Event("node", "update", "n1", old, new))
    assert ev is not None
    assert ev.attributes == {
        "name": "pi-1",
        "state.old": "ready",
        "state.new": "down",
        "availability.old": "active",
        "availability.new": "drain",
    }


def test_a_task_state_change_is_a_task_update_naming_its_service_and_node() -> None:
    names = {("service", "s1"): "web", ("node", "n1"): "pi-1"}
    ev = _one(
        Event("task", "update", "t1", _task("starting"), _task("running")),
        lambda kind, ident: names.get((kind, ident), ""),
    )
    assert ev == ClusterEvent(
        "task",
        "update",
        "t1",
        {
            "name": "web.1",
            "service.id": "s1",
            "service.name": "web",
            "node.id": "n1",
            "node.name": "pi-1",
            "state.old": "starting",
            "state.new": "running",
        },
        T,
    )


def test_a_task_write_that_keeps_its_state_is_no_event() -> None:
    old, new = _task("running"), _task("running", desired_state="shutdown")
    assert _one(Event("task", "update", "t1", old, new)) is None


def test_a_task_without_a_status_or_a_node_is_new_and_unplaced() -> None:
    ev = _one(Event("task", "create", "t1", None, _task(None, node_id="")))
    assert ev is not None and ev.action == "create"
    assert ev.attributes == {
        "name": "s1.1",  # the service's id when its name is not known
        "service.id": "s1",
        "service.name": "s1",
        "state.new": "new",
    }


def test_a_task_removed_with_its_service_is_still_named() -> None:
    changes = [
        Event("service", "delete", "s1", _web(), None),
        Event("task", "delete", "t1", _task("shutdown"), None),
    ]
    names = names_in(changes, _unnamed)
    events = [derive(c, names, T) for c in changes]
    assert [(e.type, e.action) for e in events if e] == [("service", "remove"), ("task", "remove")]
    assert events[1] is not None and events[1].attributes["service.name"] == "web"


@pytest.mark.parametrize(
    "obj",
    [
        Secret(id="x1", name="db-pass"),
        Network(id="x1", name="back"),
    ],
)
def test_secrets_and_networks_are_events_of_their_own_type(obj: Any) -> None:
    ev = _one(Event(obj.KIND, "delete", "x1", obj, None))
    assert ev == ClusterEvent(obj.KIND, "remove", "x1", {"name": obj.name}, T)


def test_the_cluster_clients_and_allocations_make_no_events() -> None:
    assert _one(Event("cluster", "update", "cluster", Cluster(id="cluster"), None)) is None
    assert _one(Event("client", "create", "c1", None, Client(id="c1"))) is None


# the event log on a store -----------------------------------------------------------------
class _Log:
    """An in-memory Raft group of one: each proposal is committed and applied at once."""

    def __init__(self, store: Store) -> None:
        self.store, self.index = store, 1

    async def __call__(self, data: bytes) -> int:
        self.index += 1
        self.store.apply(self.index, data)
        return self.index


class _Clock:
    def __init__(self, now: int = T) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@contextlib.asynccontextmanager
async def _running(limit: int = 1000) -> AsyncIterator[tuple[Store, EventLog, _Clock]]:
    clock = _Clock()
    store = Store(clock=clock)
    store.proposer = _Log(store)
    events = EventLog(store, limit=limit, clock=clock)
    task = asyncio.create_task(events.run())
    await asyncio.sleep(0)  # it watches from now on
    try:
        yield store, events, clock
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def _create(store: Store, name: str, ident: str) -> None:
    await store.update(lambda tx: tx.put(Service(id=ident, name=name, spec=service_spec(name))))


async def _batches(it: AsyncIterator[dict[str, Any]], timeout: float = 2.0) -> list[Any]:
    out = []
    async with asyncio.timeout(timeout):
        async for batch in it:
            out.append(batch)
    return out


async def test_events_are_kept_with_the_time_their_entry_was_written() -> None:
    async with _running() as (store, events, clock):
        await _create(store, "web", "s1")
        clock.now = T + 5_000_000_000  # applied, and looked at, later
        await _settle()
        assert [(e.type, e.action, e.actor_id, e.time_ns) for e in events.recent] == [
            ("service", "create", "s1", T)
        ]


async def test_since_and_until_pick_kept_events_and_an_until_in_the_past_ends_the_stream() -> None:
    async with _running() as (store, events, clock):
        for i, name in enumerate(("a", "b", "c")):
            clock.now = T + i * 1_000_000_000
            await _create(store, name, f"s{i}")
        await _settle()
        clock.now = T + 10_000_000_000
        it = events.follow({"since": T + 1_000_000_000, "until": T + 1_500_000_000})
        batches = await _batches(it)
    assert [[e["Actor"]["Attributes"]["name"] for e in b["events"]] for b in batches] == [["b"]]


async def test_a_follower_gets_new_events_that_match_its_filters_and_none_from_before() -> None:
    async with _running() as (store, events, _clock):
        await _create(store, "old", "s0")
        await _settle()
        filters = EventFilter.parse(["type=service", "service=web"]).to_wire()
        it = events.follow({"filters": filters, "until": T + 60_000_000_000})
        first = asyncio.ensure_future(it.__anext__())
        await _settle()
        await _create(store, "db", "s1")
        await _create(store, "web", "s2")
        batch = await asyncio.wait_for(first, 2)
        await it.aclose()
    assert [e["Actor"]["ID"] for e in batch["events"]] == ["s2"]


async def test_a_follow_with_until_ends_when_that_time_comes() -> None:
    async with _running() as (_store, events, clock):
        real = asyncio.get_running_loop().time
        start = real()
        clock.now = T
        events.clock = lambda: T + int((real() - start) * 1e9)
        assert await _batches(events.follow({"until": T + 200_000_000})) == []
        assert real() - start >= 0.19


async def test_a_snapshot_restore_makes_no_events() -> None:
    source = Store()
    data = initial_snapshot([Service(id="s1", name="web", spec=service_spec())])
    source.restore(data, 5)
    async with _running() as (store, events, _clock):
        store.restore(source.snapshot(), 5)
        await _settle()
        assert list(events.recent) == []


async def test_the_log_keeps_at_most_its_limit_and_nothing_older_than_its_age() -> None:
    async with _running(limit=2) as (store, events, clock):
        for i in range(3):
            await _create(store, f"s{i}", f"s{i}")
        await _settle()
        assert [e.actor_id for e in events.recent] == ["s1", "s2"]
        clock.now = T + events.max_age_ns + 1
        assert events.past(EventFilter(), None, None) == []


async def test_a_slow_follower_loses_new_events_and_is_told_how_many() -> None:
    async with _running() as (_store, events, _clock):
        it = events.follow({})
        first = asyncio.ensure_future(it.__anext__())
        await _settle()  # following
        many = [
            Event("service", "create", f"s{i}", None, _web(id=f"s{i}")) for i in range(QUEUE + 3)
        ]
        events.take(many, Commit(2, at=T))
        batch = await asyncio.wait_for(first, 2)
        await it.aclose()
    assert len(batch["events"]) == QUEUE and batch["dropped"] == 3


async def test_bad_ranges_from_the_socket_are_refused_with_a_clear_error() -> None:
    async with _running() as (_store, events, _clock):
        with pytest.raises(ShoalError, match="since must be nanoseconds"):
            await events.follow({"since": "yesterday"}).__anext__()
        with pytest.raises(ShoalError, match="invalid filter 'colour'"):
            await events.follow({"filters": {"colour": ["red"]}}).__anext__()


# the leader's publisher -------------------------------------------------------------------
class _Session:
    """What the publisher needs of the MQTT session: publish (which may fail)."""

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[tuple[str, bytes, int, bool]] = []
        self.fail = fail
        self.arrived = asyncio.Event()

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        if self.fail:
            self.fail -= 1
            raise BrokerError("the broker went away")
        self.sent.append((topic, payload, qos, retain))
        self.arrived.set()


async def test_the_leader_publishes_each_new_event_as_json_on_mon_events_not_retained() -> None:
    topics = Topics("c1")
    session = _Session(fail=1)
    async with _running() as (store, events, _clock):
        publisher = EventPublisher(events, session, topics)  # type: ignore[arg-type]
        task = asyncio.create_task(publisher.run())
        await _settle()
        await _create(store, "lost", "s0")  # the broker refuses this one: counted, not retried
        await _create(store, "web", "s1")
        await asyncio.wait_for(session.arrived.wait(), 2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert publisher.dropped == 1 and publisher.published == 1
    [(topic, payload, qos, retain)] = [m for m in session.sent if m[0].endswith("/events")]
    assert (topic, qos, retain) == ("shoal/c1/mon/events", 1, False)
    doc = json.loads(payload)
    assert doc["Type"] == "service" and doc["Actor"]["Attributes"] == {"name": "web"}
    assert ClusterEvent.from_dict(doc).actor_id == "s1"


def _digests(session: _Session) -> list[list[dict[str, Any]]]:
    out = []
    for topic, payload, qos, retain in session.sent:
        if topic == "shoal/c1/mon/events/recent":
            assert (qos, retain) == (1, True)
            out.append(json.loads(payload)["events"])
    return out


async def _until(predicate: Any, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - a condition on plain state, polled
            await asyncio.sleep(0.01)


async def test_the_recent_events_are_retained_as_one_digest_that_a_burst_updates_once() -> None:
    session = _Session()
    async with _running() as (store, events, _clock):
        publisher = EventPublisher(events, session, Topics("c1"), digest_every=0.2)  # type: ignore[arg-type]
        task = asyncio.create_task(publisher.run())
        try:
            await _settle()
            assert _digests(session) == []  # nothing happened yet: the broker's digest stays
            for i in range(60):  # a burst: more events than the digest keeps
                await _create(store, f"web{i}", f"s{i}")
            await _until(lambda: publisher.published == 60)
            await _until(lambda: len(_digests(session)) >= 1 and len(_digests(session)[-1]) == 50)
            digests = _digests(session)
            assert len(digests) <= 3, "a burst of events costs one digest or two, not one each"
            names = [e["Actor"]["Attributes"]["name"] for e in digests[-1]]
            assert names == [f"web{i}" for i in range(10, 60)]  # the last 50, oldest first
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        # a new leader (the same recent events) refreshes the digest at once; a refused
        # publish is tried again
        again = _Session(fail=1)
        publisher = EventPublisher(events, again, Topics("c1"), digest_every=0.05)  # type: ignore[arg-type]
        task = asyncio.create_task(publisher.run())
        try:
            await _until(lambda: len(_digests(again)) == 1)
            assert _digests(again)[0] == digests[-1]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_every_manager_derives_the_same_events_at_the_same_times() -> None:
    writer = Store(clock=lambda: T)
    follower = Store(clock=lambda: T + 7)  # another manager, its clock a little off
    index = 1

    async def commit(data: bytes) -> int:
        nonlocal index
        index += 1
        for s in (writer, follower):
            s.apply(index, data)
        return index

    writer.proposer = commit
    logs = [EventLog(s, clock=lambda: T + 10**9) for s in (writer, follower)]
    tasks = [asyncio.create_task(log.run()) for log in logs]
    await _settle()
    try:
        await _create(writer, "web", "s1")
        await writer.update(lambda tx: tx.put(_task("pending")))
        await _settle()
    finally:
        for task in tasks:
            task.cancel()
    kept = [list(log.recent) for log in logs]
    assert kept[0] == kept[1] and [e.time_ns for e in kept[0]] == [T, T]
    assert [(e.type, e.attributes["name"]) for e in kept[0]] == [
        ("service", "web"),
        ("task", "web.1"),
    ]


async def test_an_entry_that_does_not_say_when_it_was_written_takes_the_time_it_was_seen() -> None:
    async with _running() as (_store, events, clock):
        clock.now = T + 42
        [ev] = events.take(
            [Event("secret", "create", "x1", None, Secret(id="x1", name="k"))], Commit(9)
        )
    assert ev.time_ns == T + 42


async def test_a_follower_is_told_when_this_node_stops_being_a_manager() -> None:
    store = Store()
    events = EventLog(store)
    task = asyncio.create_task(events.run())
    await _settle()
    it = events.follow({})
    waiting = asyncio.ensure_future(it.__anext__())
    await _settle()
    task.cancel()  # the manager role stops
    with pytest.raises(ShoalError, match="no longer a manager"):
        await asyncio.wait_for(waiting, 2)
    with pytest.raises(ShoalError, match="no longer a manager"):  # and a new one at once
        await asyncio.wait_for(events.follow({}).__anext__(), 2)
