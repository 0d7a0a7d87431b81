"""The replicated store, with a small in-memory stand-in for the Raft group: entries proposed
are applied in the order the test chooses, as every manager applies the committed log."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.manager.store import (
    KINDS,
    Cluster,
    Commit,
    Config,
    Conflict,
    Event,
    Network,
    Node,
    Secret,
    Service,
    Store,
    StoreError,
    Task,
    Tx,
    initial_snapshot,
)
from agent.model.spec import ServiceMode
from tests.store.store_values import service_spec, status, task_spec


class Log:
    """Commits every proposal at once, at the next index (a group of one)."""

    def __init__(self, *stores: Store) -> None:
        self.stores = stores
        self.index = 1
        self.entries: list[bytes] = []

    async def __call__(self, data: bytes) -> int:
        self.index += 1
        self.entries.append(data)
        for s in self.stores:
            s.apply(self.index, data)
        return self.index


WRITTEN_AT = 1_796_300_000_000_000_000  # the writer's clock, ns


def _store() -> tuple[Store, Log]:
    s = Store(clock=lambda: WRITTEN_AT)
    log = Log(s)
    s.proposer = log
    return s, log


async def test_updates_are_seen_by_views_and_announced_to_watchers() -> None:
    s, _ = _store()
    async with s.watch("node") as q:
        await s.update(lambda tx: tx.put(Node(id="n1", hostname="pi-1")))
        ev = q.get_nowait()
        assert (
            isinstance(ev, Event)
            and ev.action == "create"
            and ev.new == Node(id="n1", hostname="pi-1")
        )
        assert q.get_nowait() == Commit(2, at=WRITTEN_AT)  # when its writer wrote it
    assert s.view().get(Node, "n1") == Node(id="n1", hostname="pi-1")
    assert s.view().version("node", "n1") == 2


async def test_watchers_see_only_the_kinds_they_asked_for() -> None:
    s, _ = _store()
    async with s.watch("service") as q:
        await s.update(lambda tx: tx.put(Node(id="n1")))
        assert q.empty()
        await s.update(lambda tx: tx.put(Service(id="s1", name="web", spec=service_spec())))
        assert isinstance(q.get_nowait(), Event)


async def test_a_transaction_sees_its_own_writes() -> None:
    s, _ = _store()

    def fn(tx: Tx) -> list[str]:
        tx.put(Node(id="a"))
        tx.put(Node(id="b"))
        tx.delete(Node, "a")
        return [n.id for n in tx.list(Node)]

    assert await s.update(fn) == ["b"]
    assert [n.id for n in s.view().list(Node)] == ["b"]


async def test_a_stale_transaction_fails_on_every_manager_and_is_retried() -> None:
    a, b = Store(), Store()
    log = Log(a, b)
    a.proposer = log
    a.apply(2, _put(Node(id="n1", status="unknown")))
    b.apply(2, _put(Node(id="n1", status="unknown")))
    log.index = 2
    calls = []

    def mark_ready(tx: Tx) -> None:
        n = tx.get(Node, "n1")
        assert n is not None
        calls.append(n.status)
        if len(calls) == 1:
            # a concurrent change lands between this read and the commit
            other = Tx(a._tables)
            other.put(Node(id="n1", status="down"))
            log.index += 1
            for s in (a, b):
                s.apply(log.index, other.encode())
        tx.put(Node(id="n1", status="ready", hostname=n.status))

    await a.update(mark_ready)
    assert calls == ["unknown", "down"]
    assert (
        a.view().get(Node, "n1")
        == b.view().get(Node, "n1")
        == Node(id="n1", status="ready", hostname="down")
    )


async def test_conflicts_that_never_settle_give_up_with_a_clear_error() -> None:
    s, log = _store()
    await s.update(lambda tx: tx.put(Node(id="n1")))

    def always_stale(tx: Tx) -> None:
        tx.get(Node, "n1")
        tx.put(Node(id="n1", hostname="x"))
        s.apply(log.index + 1, _put(Node(id="n1", hostname=str(log.index))))
        log.index += 1

    with pytest.raises(Conflict, match="conflicted"):
        await s.update(always_stale, attempts=3)


def test_malformed_entries_are_skipped_without_changing_state() -> None:
    s = Store()
    s.apply(2, _put(Node(id="n1")))
    for i, junk in enumerate([b"\xc1", msgpack.packb({"ops": 1}), msgpack.packb([1, 2])], 3):
        s.apply(i, junk)
        assert s.applied == i
    bad_object = msgpack.packb({"tx": "t", "checks": [], "ops": [["put", "node", "n2", {"id": 5}]]})
    s.apply(6, bad_object)
    assert [n.id for n in s.view().list(Node)] == ["n1"]


async def test_a_snapshot_restores_every_kind_exactly() -> None:
    s, _ = _store()
    objects = [
        Cluster(id="cluster", cluster_id="c1", ca_key=b"\x00key", revoked={"12": "t"}),
        Node(id="n1", serials=("1", "2"), labels={"zone": "a"}),
        Service(
            id="s1",
            name="web",
            spec=dataclasses.replace(service_spec("web"), mode=ServiceMode(replicas=3)),
        ),
        Task(
            id="t1",
            service_id="s1",
            slot=1,
            node_id="n1",
            spec=task_spec(),
            status=status("running"),
        ),
        Secret(id="x1", name="db", data=b"\xffpassword"),
        Config(id="c1", name="nginx.conf", data=b"server {}"),
        Network(id="w1", name="front", subnet="10.0.1.0/24", attachable=True),
    ]

    def fill(tx: Tx) -> None:
        for o in objects:
            tx.put(o)

    await s.update(fill)
    t = Store()
    async with t.watch() as q:
        t.restore(s.snapshot(), s.applied)
        created: set[str] = set()
        while not q.empty():
            e = q.get_nowait()
            if isinstance(e, Event):
                created.add(e.id)
    assert created == {o.id for o in objects}
    for o in objects:
        assert t.view().get(type(o), o.id) == o
    assert t.applied == s.applied


def test_a_malformed_snapshot_is_refused() -> None:
    with pytest.raises(StoreError, match="malformed"):
        Store().restore(msgpack.packb({"tables": {"node": {"n1": [1, {"id": 3}]}}}), 5)


@settings(max_examples=300)
@given(
    st.sampled_from(sorted(KINDS)),
    st.dictionaries(
        st.sampled_from(["id", "name", "role", "serials", "data", "spec", "slot", "labels", "x"]),
        st.none()
        | st.integers()
        | st.text(max_size=5)
        | st.binary(max_size=5)
        | st.lists(st.integers(), max_size=3)
        | st.dictionaries(st.text(max_size=3), st.integers()),
    ),
)
def test_objects_from_the_network_are_checked_strictly(kind: str, raw: dict[str, Any]) -> None:
    try:
        obj = KINDS[kind].from_dict(raw)
    except StoreError:
        return
    assert isinstance(obj.id, str)


def _put(obj: Any) -> bytes:
    tx = Tx({k: {} for k in KINDS})
    tx.put(obj)
    tx.checks.clear()
    return tx.encode()


def test_watch_queue_is_released_when_the_watcher_leaves() -> None:
    async def go() -> int:
        s = Store()
        async with s.watch():
            pass
        return len(s._watchers)

    assert asyncio.run(go()) == 0


async def test_listings_stay_sorted_by_id_as_objects_come_and_go() -> None:
    s, _ = _store()
    for ident in ("c", "a"):
        await s.update(lambda tx, i=ident: tx.put(Node(id=i)))
    assert [n.id for n in s.view().list(Node)] == ["a", "c"]
    await s.update(lambda tx: tx.put(Node(id="b")))
    await s.update(lambda tx: tx.put(Node(id="c", hostname="renamed")))  # an update keeps order
    assert [(n.id, n.hostname) for n in s.view().list(Node)] == [
        ("a", ""),
        ("b", ""),
        ("c", "renamed"),
    ]
    await s.update(lambda tx: tx.delete(Node, "a"))
    assert [n.id for n in s.view().list(Node)] == ["b", "c"]
    s.restore(initial_snapshot([Node(id="z"), Node(id="y")]), 100)
    assert [n.id for n in s.view().list(Node)] == ["y", "z"]
