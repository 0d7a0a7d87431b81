"""Control requests run once: the store's request table (replicated, bounded, in snapshots),
names unique at apply, and the leader's serving barrier. No broker: the Raft group is a
small in-memory log applied to every replica, and the driver runs a group of one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from agent.manager.commands import UNANSWERED, CommandRunner
from agent.manager.control.networks import NetworksAPI
from agent.manager.control.secrets import SecretsAPI
from agent.manager.raftdriver import MemoryLog, RaftDriver
from agent.manager.store import (
    AlreadyApplied,
    Network,
    Requests,
    Secret,
    Service,
    Store,
    StoreError,
    Tx,
    current_request,
)
from agent.model.errors import ShoalError
from broker.topics import Topics
from tests.store.store_values import service_spec

WEB = service_spec("web")


class Log:
    """Commits proposals in order and applies each to every replica. With `batch` > 1 it
    holds proposals until that many are pending, so their transactions are built against
    the same state, as concurrent requests on one leader are."""

    def __init__(self, *stores: Store, batch: int = 1) -> None:
        self.stores = stores
        self.index = 1
        self.batch = batch
        self.pending: list[tuple[bytes, asyncio.Future[int]]] = []

    async def __call__(self, data: bytes) -> int:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending.append((data, fut))
        if len(self.pending) >= self.batch:
            self.batch = 1
            pending, self.pending = self.pending, []
            for entry, f in pending:
                self.index += 1
                for s in self.stores:
                    s.apply(self.index, entry)
                f.set_result(self.index)
        return await fut


def _replicas(n: int = 2, batch: int = 1) -> tuple[list[Store], Log]:
    stores = [Store() for _ in range(n)]
    log = Log(*stores, batch=batch)
    for s in stores:
        s.proposer = log
    return stores, log


@contextlib.contextmanager
def _attempt(request_id: str, attempt: str) -> Iterator[None]:
    token = current_request.set((request_id, attempt))
    try:
        yield
    finally:
        current_request.reset(token)


def _create(name: str, ident: str, answer: Any = None) -> Any:
    def fn(tx: Tx) -> None:
        tx.put(Service(id=ident, name=name, spec=service_spec(name)))
        if answer is not None:
            tx.answer(answer)

    return fn


class Serving:
    """The driver as the runner sees it: always the leader and caught up."""

    async def wait_serving(self, timeout: float = 5.0) -> None:
        return None


def _runner(store: Store) -> CommandRunner:
    return CommandRunner(store, Serving())  # type: ignore[arg-type]


# the request table ---------------------------------------------------------------------
async def test_a_second_attempt_of_a_request_is_refused_and_the_first_answer_kept() -> None:
    (a, b), _ = _replicas()
    with _attempt("r1", "first"):
        await a.update(_create("web", "s1", answer={"id": "s1"}))
    with _attempt("r1", "second"), pytest.raises(AlreadyApplied):
        await b.update(_create("web", "s2", answer={"id": "s2"}))
    for s in (a, b):
        assert [x.id for x in s.view().list(Service)] == ["s1"]
        row = s.requests.get("r1")
        assert row is not None and row.reply == {"ok": True, "result": {"id": "s1"}}


async def test_every_write_of_one_attempt_applies() -> None:
    (a,), _ = _replicas(1)
    with _attempt("r1", "only"):
        await a.update(_create("web", "s1"))
        await a.update(_create("api", "s2"))
    assert sorted(x.name for x in a.view().list(Service)) == ["api", "web"]


async def test_a_resend_to_a_new_leader_gets_the_first_answer_without_running_again() -> None:
    (old, new), _ = _replicas()
    runs: list[str] = []

    async def create(args: dict[str, Any]) -> dict[str, Any]:
        runs.append(args["id"])
        answer = {"id": args["id"]}
        await current_store[0].update(_create("web", args["id"], answer=answer))
        return answer

    current_store = [old]
    first = await _runner(old).serve("r1", create, {"id": "s1"})
    current_store[0] = new  # the old leader died; the follower resends to the new one
    again = await _runner(new).serve("r1", create, {"id": "s2"})
    assert first == again == {"ok": True, "result": {"id": "s1"}}
    assert runs == ["s1"]
    assert [x.id for x in new.view().list(Service)] == ["s1"]


async def test_a_request_written_but_not_answered_is_not_applied_again() -> None:
    """The old leader committed the command's first write, then died before its last one
    (and before any answer): the new leader says so and writes nothing."""
    (old, new), _ = _replicas()
    with _attempt("r1", "old-leader"):
        await old.update(_create("web", "s1"))
    runs: list[str] = []

    async def handler(args: dict[str, Any]) -> str:
        runs.append("ran")
        await new.update(_create("web", "s2"))
        return "done"

    reply = await _runner(new).serve("r1", handler, {})
    assert reply == {"ok": False, "error": UNANSWERED}
    assert runs == []
    assert [x.id for x in new.view().list(Service)] == ["s1"]


async def test_a_multi_write_command_records_its_reply_after_its_writes() -> None:
    (leader, other), _ = _replicas()

    async def handler(args: dict[str, Any]) -> str:
        await leader.update(_create("web", "s1"))
        await leader.update(_create("api", "s2"))
        return "both"

    assert await _runner(leader).serve("r1", handler, {}) == {"ok": True, "result": "both"}
    row = other.requests.get("r1")
    assert row is not None and row.reply == {"ok": True, "result": "both"}
    assert await _runner(other).serve("r1", handler, {}) == {"ok": True, "result": "both"}
    assert len(other.view().list(Service)) == 2


async def test_a_duplicate_arriving_while_the_first_runs_waits_for_it() -> None:
    (s,), _ = _replicas(1)
    release = asyncio.Event()
    runs: list[int] = []

    async def handler(args: dict[str, Any]) -> int:
        runs.append(1)
        await release.wait()
        return len(runs)

    runner = _runner(s)
    first = asyncio.ensure_future(runner.serve("r1", handler, {}))
    second = asyncio.ensure_future(runner.serve("r1", handler, {}))
    await asyncio.sleep(0)
    release.set()
    assert await first == await second == {"ok": True, "result": 1}
    assert runs == [1]


async def test_a_duplicate_arriving_after_the_first_wrote_waits_for_its_answer() -> None:
    (s,), _ = _replicas(1)
    release, wrote = asyncio.Event(), asyncio.Event()

    async def handler(args: dict[str, Any]) -> str:
        await s.update(_create("web", "s1"))
        wrote.set()
        await release.wait()
        await s.update(_create("api", "s2"))
        return "both"

    runner = _runner(s)
    first = asyncio.ensure_future(runner.serve("r1", handler, {}))
    await wrote.wait()
    row = s.requests.get("r1")
    assert row is not None and row.reply is None  # its first write is applied, no answer yet
    second = asyncio.ensure_future(runner.serve("r1", handler, {}))
    await asyncio.sleep(0)
    release.set()
    assert await first == await second == {"ok": True, "result": "both"}


async def test_requests_that_write_nothing_are_not_remembered() -> None:
    (s,), _ = _replicas(1)

    async def read(args: dict[str, Any]) -> int:
        return len(s.view().list(Service))

    assert await _runner(s).serve("r1", read, {}) == {"ok": True, "result": 0}
    assert s.requests.get("r1") is None and len(s.requests) == 0


async def test_the_table_is_bounded_dropping_the_oldest_alike_on_every_replica() -> None:
    (a, b), _ = _replicas()
    for s in (a, b):
        s.requests = Requests(limit=3)
    for i in range(5):
        with _attempt(f"r{i}", "x"):
            await a.update(_create(f"svc{i}", f"s{i}", answer=i))
    for s in (a, b):
        assert [row[0] for row in s.requests.to_wire()] == ["r2", "r3", "r4"]
    assert a.requests == b.requests


async def test_the_table_survives_a_snapshot_and_refuses_resends_after_restore() -> None:
    (a,), _ = _replicas(1)
    with _attempt("r1", "first"):
        await a.update(_create("web", "s1", answer={"id": "s1"}))
    restored = Store()
    restored.restore(a.snapshot(), a.applied)
    assert restored.requests == a.requests
    row = restored.requests.get("r1")
    assert row is not None and row.reply == {"ok": True, "result": {"id": "s1"}}
    restored.proposer = Log(restored)
    with _attempt("r1", "second"), pytest.raises(AlreadyApplied):
        await restored.update(_create("web2", "s2"))


def test_a_snapshot_without_a_request_table_restores_an_empty_one() -> None:
    import msgpack

    s = Store()
    s.restore(msgpack.packb({"applied": 3, "tables": {}}), 3)
    assert len(s.requests) == 0


def test_a_malformed_request_table_in_a_snapshot_is_a_store_error() -> None:
    import msgpack

    s = Store()
    with pytest.raises(StoreError, match="malformed"):
        s.restore(msgpack.packb({"tables": {}, "requests": [["r1", 5]]}), 3)


# names unique at apply ----------------------------------------------------------------
def _entry(fn: Any, store: Store) -> bytes:
    tx = Tx(store._tables)
    fn(tx)
    return tx.encode()


def test_two_creates_of_one_name_built_on_the_same_state_apply_once() -> None:
    s = Store()
    first = _entry(_create("web", "s1"), s)
    second = _entry(_create("web", "s2"), s)  # its listing did not see s1: a phantom
    s.apply(2, first)
    s.apply(3, second)
    assert [x.id for x in s.view().list(Service)] == ["s1"]


def test_one_transaction_cannot_create_two_objects_of_one_name() -> None:
    s = Store()

    def both(tx: Tx) -> None:
        tx.put(Secret(id="a", name="pw"))
        tx.put(Secret(id="b", name="pw"))

    s.apply(2, _entry(both, s))
    assert s.view().list(Secret) == []


def test_a_rename_into_a_taken_name_is_refused_and_a_freed_name_can_be_taken() -> None:
    s = Store()
    s.apply(2, _entry(_create("web", "s1"), s))
    s.apply(3, _entry(_create("api", "s2"), s))
    s.apply(4, _entry(lambda tx: tx.put(Service(id="s2", name="web", spec=WEB)), s))
    assert {x.id: x.name for x in s.view().list(Service)} == {"s1": "web", "s2": "api"}

    def swap(tx: Tx) -> None:  # free "web" and take it in one transaction
        tx.delete(Service, "s1")
        tx.put(Service(id="s2", name="web", spec=WEB))

    s.apply(5, _entry(swap, s))
    assert {x.id: x.name for x in s.view().list(Service)} == {"s2": "web"}


def test_objects_that_share_a_name_from_before_can_still_be_updated() -> None:
    s = Store()
    s._tables["service"] = {"s1": (1, Service(id="s1", name="web", spec=WEB))}
    s._tables["service"]["s2"] = (1, Service(id="s2", name="web", spec=WEB))
    s.apply(2, _entry(lambda tx: tx.put(Service(id="s2", name="web", spec=WEB, spec_version=2)), s))
    assert s.view().get(Service, "s2") == Service(id="s2", name="web", spec=WEB, spec_version=2)


def test_unnamed_kinds_and_other_kinds_may_share_names() -> None:
    s = Store()
    s.apply(2, _entry(_create("web", "s1"), s))
    s.apply(3, _entry(lambda tx: tx.put(Secret(id="x", name="web")), s))
    assert s.view().get(Secret, "x") is not None


async def test_concurrent_creates_of_one_name_on_one_leader_give_already_exists() -> None:
    (s,), _ = _replicas(1, batch=2)
    api = SecretsAPI(s)
    results = await asyncio.gather(
        api.commands["secret-create"]({"name": "pw", "data": "b25l"}),
        api.commands["secret-create"]({"name": "pw", "data": "dHdv"}),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], ShoalError)
    assert "already exists" in str(errors[0])
    assert [x.name for x in s.view().list(Secret)] == ["pw"]


async def test_concurrent_network_creates_of_one_name_give_already_exists() -> None:
    (s,), _ = _replicas(1, batch=2)
    api = NetworksAPI(s)
    results = await asyncio.gather(
        api.commands["network-create"]({"name": "back"}),
        api.commands["network-create"]({"name": "back"}),
        return_exceptions=True,
    )
    assert sum(isinstance(r, ShoalError) and "already exists" in str(r) for r in results) == 1
    assert [n.name for n in s.view().list(Network)] == ["back"]


# the serving barrier ------------------------------------------------------------------
class FakeSession:
    """What the driver needs of a session, for a group of one that sends nothing."""

    def __init__(self) -> None:
        self.rejections = None

    def on(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def send(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("a group of one sends no raft messages")


async def test_a_new_leader_serves_only_once_its_term_has_an_applied_entry() -> None:
    store = Store()
    driver = RaftDriver(
        node_id="m1",
        storage=MemoryLog.bootstrap(["m1"]),
        store=store,
        session=FakeSession(),  # type: ignore[arg-type]
        topics=Topics("c1"),
    )
    assert not driver.serving
    driver.core.campaign()  # leader at once, its term's first entry not yet committed
    assert driver.is_leader and not driver.serving
    seen: list[int] = []

    async def handler(args: dict[str, Any]) -> bool:
        seen.append(store.applied)
        return driver.serving

    runner = CommandRunner(store, driver)
    serve = asyncio.ensure_future(runner.serve("r1", handler, {}))
    await asyncio.sleep(0.05)
    assert not serve.done() and seen == []  # the command waits for the barrier
    run = asyncio.ensure_future(driver.run())
    try:
        assert await asyncio.wait_for(serve, 5) == {"ok": True, "result": True}
        assert seen and seen[0] >= 2  # the new term's entry (index 2) was applied first
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run


async def test_a_manager_that_is_not_the_leader_is_never_serving() -> None:
    from agent.manager.raft import NotLeader

    store = Store()
    driver = RaftDriver(
        node_id="m1",
        storage=MemoryLog.bootstrap(["m1", "m2", "m3"]),
        store=store,
        session=FakeSession(),  # type: ignore[arg-type]
        topics=Topics("c1"),
    )
    assert not driver.serving
    with pytest.raises(NotLeader):
        await driver.wait_serving(0.5)
