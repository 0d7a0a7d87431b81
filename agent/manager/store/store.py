"""The replicated store: the only bus between manager components.

Writes are transactions: a function reads through a `Tx` and records puts and deletes; the
store encodes them (with the version of every object the function read or wrote) into one Raft
entry. Every manager applies committed entries in log order with :meth:`Store.apply`; a
transaction whose objects changed since it was built fails on every manager alike and is
retried by its author. Reads go through :meth:`Store.view` (consistent as long as the caller
does not await while holding it); :meth:`Store.watch` yields typed change events, each batch
ending with a `Commit`.

Two rules hold at apply, whatever the transactions read: no create or rename takes a name
that another service, network, secret or config of its kind holds (the losing transaction is
retried and its author sees the ordinary "already exists"), and a control request's writes
apply for one attempt only (see `agent.manager.store.requests`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgpack

from agent.manager.raft.errors import RaftError
from agent.manager.store.objects import KINDS, StoreError, StoreObject, kind_of
from agent.manager.store.requests import Requests, current_request

__all__ = ["NAMED_KINDS", "AlreadyApplied", "Commit", "Conflict", "Event", "Store", "Tx", "View"]

log = logging.getLogger("shoal.store")

T = TypeVar("T")
Obj = TypeVar("Obj", bound=StoreObject)

Tables = dict[str, dict[str, tuple[int, StoreObject]]]


# kinds whose objects' names are unique within the kind
NAMED_KINDS = ("service", "network", "secret", "config")

_DUPLICATE = "the request's writes were applied already, by another attempt"
_NAME_TAKEN = "name taken: "


class Conflict(StoreError):
    """The objects a transaction read changed before it was applied."""


class AlreadyApplied(StoreError):
    """A write of a control request that another attempt of the same request has written
    already (a resend after a leader change): it was not applied again."""


# what a write through `Store.update` raises when it did not go through: the store refused it,
# Raft did (not the leader, not committed in time), or a wait on the commit ran out
WRITE_ERRORS: tuple[type[Exception], ...] = (StoreError, RaftError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    action: str  # create | update | delete
    id: str
    old: StoreObject | None
    new: StoreObject | None


@dataclass(frozen=True, slots=True)
class Commit:
    """The end of one applied entry's events: its index, when its author wrote it (ns since
    the epoch by the author's clock; 0 when the entry does not say), and whether the events
    came from restoring a snapshot rather than from an entry."""

    index: int
    at: int = 0
    restored: bool = False


class View:
    """Read access to the store as it is now."""

    def __init__(self, tables: Tables, order: dict[str, list[str]] | None = None) -> None:
        self._tables = tables
        self._order = order  # the store's cache of each table's ids in sorted order

    def get(self, cls: type[Obj], ident: str) -> Obj | None:
        row = self._tables.get(cls.KIND, {}).get(ident)
        return row[1] if row else None  # type: ignore[return-value]

    def version(self, kind: str, ident: str) -> int:
        row = self._tables.get(kind, {}).get(ident)
        return row[0] if row else 0

    def list(self, cls: type[Obj]) -> list[Obj]:
        rows = self._tables.get(cls.KIND, {})
        keys = self._order.get(cls.KIND) if self._order is not None else None
        if keys is None:
            keys = sorted(rows)
            if self._order is not None:
                self._order[cls.KIND] = keys
        return [rows[k][1] for k in keys]  # type: ignore[misc]


class Tx(View):
    """A write transaction: reads see its own writes."""

    def __init__(self, tables: Tables, request: tuple[str, str] | None = None) -> None:
        super().__init__(tables)
        self.checks: dict[tuple[str, str], int] = {}
        self.ops: list[tuple[str, str, str, dict[str, Any] | None]] = []
        self._written: dict[tuple[str, str], StoreObject | None] = {}
        self.request = request
        self.reply: dict[str, Any] | None = None

    def answer(self, result: Any) -> None:
        """The control request's answer, recorded with this transaction's writes: call it in
        the request's last write only (a resend then gets `result` without running again)."""
        self.reply = {"ok": True, "result": result}

    def get(self, cls: type[Obj], ident: str) -> Obj | None:
        key = (cls.KIND, ident)
        if key in self._written:
            return self._written[key]  # type: ignore[return-value]
        self.checks.setdefault(key, self.version(*key))
        return super().get(cls, ident)

    def list(self, cls: type[Obj]) -> list[Obj]:
        found: dict[str, StoreObject] = {o.id: o for o in super().list(cls)}
        for (kind, ident), obj in self._written.items():
            if kind == cls.KIND:
                if obj is None:
                    found.pop(ident, None)
                else:
                    found[ident] = obj
        for ident in found:
            self.checks.setdefault((cls.KIND, ident), self.version(cls.KIND, ident))
        return [found[k] for k in sorted(found)]  # type: ignore[misc]

    def put(self, obj: StoreObject) -> None:
        key = (kind_of(obj), obj.id)
        self.checks.setdefault(key, self.version(*key))
        self._written[key] = obj
        self.ops.append(("put", key[0], key[1], obj.to_dict()))

    def delete(self, cls: type[StoreObject], ident: str) -> None:
        key = (cls.KIND, ident)
        self.checks.setdefault(key, self.version(*key))
        self._written[key] = None
        self.ops.append(("del", key[0], key[1], None))

    def encode(self, at: int = 0) -> bytes:
        entry: dict[str, Any] = {
            "tx": secrets.token_hex(8),
            "checks": [[k, i, v] for (k, i), v in sorted(self.checks.items())],
            "ops": [list(op) for op in self.ops],
        }
        if at:
            entry["at"] = at  # when it was written: when its events happened (see events.py)
        if self.request is not None:
            entry["req"] = list(self.request)
            if self.reply is not None:
                entry["reply"] = self.reply
        return msgpack.packb(entry, use_bin_type=True)


Proposer = Callable[[bytes], Awaitable[int]]


class Store:
    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self.clock = clock  # ns since the epoch: stamps the entries this store writes
        self._tables: Tables = {kind: {} for kind in KINDS}
        self._order: dict[str, list[str]] = {}  # sorted ids per kind; dropped when ids change
        self.applied = 0
        self._watchers: list[asyncio.Queue[Event | Commit]] = []
        self._outcomes: dict[str, str | None] = {}
        self.requests = Requests()
        self.proposer: Proposer | None = None

    # reads ---------------------------------------------------------------------------
    def view(self) -> View:
        return View(self._tables, self._order)

    @contextlib.asynccontextmanager
    async def watch(self, *kinds: str) -> AsyncIterator[asyncio.Queue[Event | Commit]]:
        """Queue of events for the given kinds (all when none), each batch then a Commit."""
        q: asyncio.Queue[Event | Commit] = asyncio.Queue()
        q.kinds = set(kinds)  # type: ignore[attr-defined]
        self._watchers.append(q)
        try:
            yield q
        finally:
            self._watchers.remove(q)

    # writes --------------------------------------------------------------------------
    async def update(self, fn: Callable[[Tx], T], *, attempts: int = 5) -> T:
        """Run `fn` in a transaction and commit it through Raft (retrying conflicts).

        Inside a control request (`current_request`) the transaction is tagged with it, and
        `AlreadyApplied` says another attempt of the request wrote already."""
        if self.proposer is None:
            raise StoreError("this store has no Raft group to write through")
        request = current_request.get()
        outcome: str | None = None
        for _ in range(attempts):
            tx = Tx(self._tables, request)
            result = fn(tx)
            if not tx.ops:
                return result
            outcome = await self._commit(tx.encode(self.clock()))
            if outcome is None:
                return result
            log.debug("transaction retried: %s", outcome)
        if outcome is not None and outcome.startswith(_NAME_TAKEN):
            raise StoreError(f"{outcome[len(_NAME_TAKEN) :]} already exists")
        raise Conflict(f"the change conflicted with concurrent changes {attempts} times")

    async def answer(self, request: tuple[str, str], reply: dict[str, Any]) -> None:
        """Record a control request's reply (after its writes) in an entry of its own."""
        if self.proposer is None:
            raise StoreError("this store has no Raft group to write through")
        entry: dict[str, Any] = {"tx": secrets.token_hex(8), "checks": [], "ops": []}
        entry.update(req=list(request), reply=reply)
        outcome = await self._commit(msgpack.packb(entry, use_bin_type=True))
        if outcome is not None:
            raise StoreError(f"the reply was not recorded: {outcome}")

    async def _commit(self, data: bytes) -> str | None:
        """Propose an encoded transaction; its outcome at apply (None: applied)."""
        assert self.proposer is not None
        tx_id = msgpack.unpackb(data)["tx"]
        await self.proposer(data)
        outcome = self._outcomes.pop(tx_id, "lost")
        if outcome == _DUPLICATE:
            raise AlreadyApplied(
                "this request was applied already by an earlier attempt (a resend after a"
                " leader change); it was not applied again"
            )
        return outcome

    # applying (every manager, in log order) ------------------------------------------
    def apply(self, index: int, data: bytes) -> None:
        """Apply one committed entry. Deterministic: every manager reaches the same state."""
        try:
            tx = msgpack.unpackb(data, raw=False)
            checks, ops, tx_id = tx["checks"], tx["ops"], tx["tx"]
            request = _request_of(tx.get("req"))
            at = tx.get("at", 0)
            at = at if type(at) is int and at > 0 else 0
        except (ValueError, TypeError, KeyError, AttributeError, msgpack.UnpackException) as exc:
            log.error("skipping a malformed entry at %d: %s", index, exc)
            self.applied = index
            return
        outcome: str | None = None
        if request is not None and not self.requests.admits(request):
            outcome = _DUPLICATE
        for kind, ident, version in [] if outcome else checks:
            if self.view().version(kind, ident) != version:
                outcome = f"{kind} {ident} changed"
                break
        events: list[Event] = []
        if outcome is None:
            try:
                staged = [
                    (op, kind, ident, None if raw is None else KINDS[kind].from_dict(raw))
                    for op, kind, ident, raw in ops
                ]
            except (StoreError, KeyError) as exc:
                staged, outcome = [], f"malformed object: {exc}"
            outcome = outcome or self._name_taken(staged)
            if outcome is None:
                events = self._write(index, staged)
                if request is not None:
                    self.requests.record(request, index, tx.get("reply"))
        self._outcomes[tx_id] = outcome
        if len(self._outcomes) > 10000:
            self._outcomes.pop(next(iter(self._outcomes)))
        self.applied = index
        self._publish(events, Commit(index, at))

    def _write(self, index: int, staged: list[tuple[str, str, str, Any]]) -> list[Event]:
        events: list[Event] = []
        for op, kind, ident, obj in staged:
            table = self._tables[kind]
            old = table.get(ident)
            if op == "put" and obj is not None:
                if old is None:
                    self._order.pop(kind, None)
                table[ident] = (index, obj)
                action = "update" if old else "create"
                events.append(Event(kind, action, ident, old[1] if old else None, obj))
            elif op == "del" and old is not None:
                self._order.pop(kind, None)
                del table[ident]
                events.append(Event(kind, "delete", ident, old[1], None))
        return events

    def _name_taken(self, staged: list[tuple[str, str, str, Any]]) -> str | None:
        """Why these writes would give two objects of a named kind one name, or None.

        Only creates and renames are checked (an object keeps the name it has), so objects
        that share a name from before this rule can still be updated and removed."""
        final: dict[tuple[str, str], StoreObject | None] = {}
        for op, kind, ident, obj in staged:
            if kind in NAMED_KINDS:
                final[(kind, ident)] = obj if op == "put" else None
        claimed: dict[tuple[str, str], str] = {}
        for (kind, ident), obj in final.items():
            name = getattr(obj, "name", "")
            if not name:
                continue
            if claimed.setdefault((kind, name), ident) != ident:
                return f"{_NAME_TAKEN}{kind} {name}"
            old = self._tables[kind].get(ident)
            if old is not None and getattr(old[1], "name", "") == name:
                continue
            for other, (_, held) in self._tables[kind].items():
                if other == ident or getattr(held, "name", "") != name:
                    continue
                after = final.get((kind, other), held)
                if after is not None and getattr(after, "name", "") == name:
                    return f"{_NAME_TAKEN}{kind} {name}"
        return None

    def _publish(self, events: Iterable[Event], commit: Commit) -> None:
        events = list(events)
        for q in self._watchers:
            kinds = q.kinds  # type: ignore[attr-defined]
            mine = [e for e in events if not kinds or e.kind in kinds]
            if mine:
                for e in mine:
                    q.put_nowait(e)
                q.put_nowait(commit)

    # snapshots -----------------------------------------------------------------------
    def snapshot(self) -> bytes:
        return msgpack.packb(
            {
                "applied": self.applied,
                "requests": self.requests.to_wire(),
                "tables": {
                    kind: {i: [v, o.to_dict()] for i, (v, o) in rows.items()}
                    for kind, rows in self._tables.items()
                },
            },
            use_bin_type=True,
        )

    def restore(self, data: bytes, index: int) -> None:
        """Replace the whole state with a snapshot's (empty data: an empty store)."""
        tables: Tables = {kind: {} for kind in KINDS}
        requests = Requests(self.requests.limit)
        if data:
            try:
                obj = msgpack.unpackb(data, raw=False)
                for kind, rows in obj["tables"].items():
                    cls = KINDS[kind]
                    tables[kind] = {i: (int(v), cls.from_dict(o)) for i, (v, o) in rows.items()}
                requests = Requests.from_wire(obj.get("requests", []), self.requests.limit)
            except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
                raise StoreError(f"the snapshot at {index} is malformed: {exc}") from exc
        old = self._tables
        self._tables = tables
        self.requests = requests
        self._order = {}
        self.applied = index
        events = []
        for kind in KINDS:
            for ident, (_, o) in old[kind].items():
                if ident not in tables[kind]:
                    events.append(Event(kind, "delete", ident, o, None))
            for ident, (_, o) in tables[kind].items():
                prev = old[kind].get(ident)
                if prev is None or prev[1] != o:
                    events.append(
                        Event(
                            kind,
                            "update" if prev else "create",
                            ident,
                            prev[1] if prev else None,
                            o,
                        )
                    )
        self._publish(events, Commit(index, restored=True))


def _request_of(raw: Any) -> tuple[str, str] | None:
    if raw is None:
        return None
    if isinstance(raw, list) and len(raw) == 2 and all(isinstance(x, str) for x in raw):
        return (raw[0], raw[1])
    raise ValueError("malformed request tag")


def initial_snapshot(objects: Iterable[StoreObject]) -> bytes:
    """The snapshot data a new cluster starts from."""
    s = Store()
    for obj in objects:
        s._tables[kind_of(obj)][obj.id] = (1, obj)
    s.applied = 1
    return s.snapshot()
