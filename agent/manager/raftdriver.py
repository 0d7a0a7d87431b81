"""The asyncio driver around the pure Raft core: it persists, sends over MQTT, applies to the
store and advances, in that order, and times the core with ticks.

Messages between managers travel as envelopes of type "raft" on each manager's own
`shoal/<cluster>/mgr/<id>/raft` topic, at QoS 0: Raft retries on its own, and the broker's ACL
lets only managers use those topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Callable
from typing import Any, Protocol

from agent.manager.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    NotLeader,
    ProposalDropped,
    RaftError,
    RaftNode,
    Ready,
    Snapshot,
    StateType,
    StorageError,
    from_wire,
    to_wire,
)
from agent.manager.store import Store
from broker.envelope import Envelope
from broker.errors import BrokerError
from broker.session import Session
from broker.topics import Topics

__all__ = ["LogStorage", "ManagerHalted", "MemoryLog", "RaftDriver"]

log = logging.getLogger("shoal.raft")


class LogStorage(Protocol):
    """What the driver needs of a storage: the core's read side plus durable writes."""

    def initial_state(self) -> Any: ...
    def entries(self, lo: int, hi: int) -> Any: ...
    def term(self, i: int) -> int: ...
    def first_index(self) -> int: ...
    def last_index(self) -> int: ...
    def snapshot(self) -> Snapshot: ...
    def save(self, hard_state: Any, entries: Any, snapshot: Snapshot | None) -> None: ...
    def create_snapshot(self, index: int, voters: Any, data: bytes) -> Snapshot: ...
    def compact(self, index: int) -> None: ...


class ManagerHalted(RaftError):
    """The core refused this manager's own state (say, a leader's commit index beyond the end
    of a log that lost entries): the driver stops for good, as retrying cannot help."""


class RaftDriver:
    def __init__(
        self,
        *,
        node_id: str,
        storage: LogStorage,
        store: Store,
        session: Session,
        topics: Topics,
        rng: random.Random | None = None,
        tick_interval: float = 0.1,
        election_tick: int = 10,
        snapshot_every: int = 2000,
        on_leadership: Callable[[bool], None] | None = None,
        on_membership: Callable[[tuple[str, ...]], None] | None = None,
    ) -> None:
        self.id = node_id
        self.storage = storage
        self.store = store
        self.session = session
        self.topics = topics
        self.tick_interval = tick_interval
        self.snapshot_every = snapshot_every
        self.on_leadership = on_leadership
        self.on_membership = on_membership
        snap = storage.snapshot()
        store.restore(snap.data, snap.index)
        self.config = Config(
            id=node_id,
            storage=storage,
            rng=rng or random.Random(),
            election_tick=election_tick,
            applied=snap.index,
        )
        self.core = RaftNode(self.config)
        self._wake = asyncio.Event()
        self._waiters: dict[int, tuple[int, asyncio.Future[int]]] = {}
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._applied_event = asyncio.Event()
        self._was_leader = False
        self._succession: set[asyncio.Task[None]] = set()
        self._known_leader: str | None = None
        self.leader_changes = 0  # times a new leader became known here
        self._leader_event = asyncio.Event()
        self._last_snapshot = snap.index
        self.failure: str | None = None
        session.on(topics.mgr_raft(node_id), self._on_message, qos=0)

    # state ---------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self.core.state is StateType.Leader

    @property
    def leader_id(self) -> str | None:
        return self.core.leader_id

    @property
    def serving(self) -> bool:
        """Leader, with an entry of its own term committed and everything up to it applied:
        its store holds every write any earlier leader acknowledged, so it may answer."""
        if not self.is_leader or self.store.applied <= 0:
            return False
        return self.core.log.term(self.store.applied) == self.core.term

    async def wait_serving(self, timeout: float = 5.0) -> None:
        """Wait until this manager is `serving`; NotLeader when it is not (or stops being)
        the leader, RaftError when it has not caught up within the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.serving:
            if not self.is_leader:
                raise NotLeader(self.core.leader_id)
            left = deadline - loop.time()
            if left <= 0:
                raise RaftError(
                    f"this manager became the leader but has not applied the log within"
                    f" {timeout:g} s; try again"
                )
            self._applied_event.clear()
            if self.serving:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._applied_event.wait(), min(left, 0.2))

    @property
    def voters(self) -> tuple[str, ...]:
        return self.core.voters

    # inputs --------------------------------------------------------------------------
    async def _on_message(self, topic: str, env: Envelope) -> None:
        try:
            msg = from_wire(env.body)
        except RaftError as exc:
            self.session.rejections.reject(topic, f"bad raft message: {exc}")
            return
        if msg.to != self.id:
            self.session.rejections.reject(topic, "raft message for another manager")
            return
        self._step(msg)

    def _step(self, msg: Message) -> None:
        if self.failure is not None:
            return  # halted: this manager neither votes nor answers any more
        try:
            self.core.step(msg)
        except RaftError as exc:
            self._halt(exc)
        self._wake.set()

    def _halt(self, exc: RaftError) -> None:
        """Stop for good on an error of the core; `run` raises ManagerHalted with it."""
        if self.failure is None:
            self.failure = str(exc)
            log.error("the raft core stopped this manager: %s", exc)
        self._wake.set()

    def leader_gone(self, leader: str) -> None:
        """The broker says the leader's session ended: elect a successor now.

        Survivors take turns by id: the first campaigns at once, the next 150 ms later if no
        leader has emerged by then (the first may lack entries the others have), and so on.
        The campaign is started as a leadership transfer would start it, so it does not wait
        out an election timeout and other voters do not wait out the dead leader's lease.
        """
        if leader != self.core.leader_id or self.is_leader:
            return
        survivors = sorted(v for v in self.core.voters if v != leader)
        if self.id in survivors:
            rank = survivors.index(self.id)
            task = asyncio.get_running_loop().create_task(self._succeed(leader, rank * 0.15))
            self._succession.add(task)
            task.add_done_callback(self._succession.discard)

    async def _succeed(self, dead: str, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        if self.core.leader_id != dead or self.is_leader:
            return  # someone already took over
        log.info("leader %s is gone; campaigning", dead)
        self._step(Message(type=MessageType.TimeoutNow, to=self.id, frm=dead, term=self.core.term))

    async def propose(self, data: bytes, *, timeout: float = 10.0) -> int:
        """Commit `data` (leader only: raises NotLeader elsewhere) and wait until applied."""
        entry = self.core.propose(data)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters[entry.index] = (entry.term, fut)
        self._wake.set()
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise RaftError(f"the change was not committed within {timeout:g} s") from None
        finally:
            self._waiters.pop(entry.index, None)

    async def change_membership(
        self, kind: ConfChangeType, node: str, timeout: float = 10.0
    ) -> None:
        """Add or remove a voter (leader only), and wait until the change is applied.

        A leader takes one change at a time, and none before an entry of its own term is
        applied: such a refusal ("not applied yet") is waited out, up to the timeout.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                entry = self.core.propose_conf_change(ConfChange(kind, node))
                break
            except ProposalDropped:
                if loop.time() > deadline:
                    raise
                self._applied_event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._applied_event.wait(), 0.2)
        fut: asyncio.Future[int] = loop.create_future()
        self._waiters[entry.index] = (entry.term, fut)
        self._wake.set()
        try:
            await asyncio.wait_for(fut, max(0.1, deadline - loop.time()))
        finally:
            self._waiters.pop(entry.index, None)

    async def read_barrier(self, timeout: float = 5.0) -> None:
        """Wait until this manager's store reflects everything committed before the call."""
        ctx = secrets.token_bytes(8)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reads[ctx] = fut
        self.core.read_index(ctx)
        self._wake.set()
        try:
            index = await asyncio.wait_for(fut, timeout)
            while self.store.applied < index:
                self._applied_event.clear()
                await asyncio.wait_for(self._applied_event.wait(), timeout)
        finally:
            self._reads.pop(ctx, None)

    # the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        if self.core.voters == (self.id,):
            self.core.campaign()  # a group of one needs no election timeout
            self._wake.set()
        ticker = asyncio.create_task(self._tick_forever())
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self.failure is not None:
                    raise ManagerHalted(self.failure)
                try:
                    while self.core.has_ready():
                        rd = self.core.ready()
                        await self._handle(rd)
                        self.core.advance(rd)
                except StorageError:
                    raise  # the disk failed: a restart recovers from it
                except RaftError as exc:
                    self._halt(exc)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            for _, fut in self._waiters.values():
                if not fut.done():
                    fut.set_exception(NotLeader(None))

    async def _tick_forever(self) -> None:
        while self.failure is None:
            await asyncio.sleep(self.tick_interval)
            try:
                self.core.tick()
            except RaftError as exc:
                self._halt(exc)
            self._wake.set()

    async def _handle(self, rd: Ready) -> None:
        # 1. persist, durably, before anything is sent
        if rd.must_sync:
            await asyncio.to_thread(self.storage.save, rd.hard_state, rd.entries, rd.snapshot)
        # 2. send
        for m in rd.messages:
            await self._send(m)
        # 3. apply
        if rd.snapshot is not None and rd.snapshot.index > self.store.applied:
            self.store.restore(rd.snapshot.data, rd.snapshot.index)
            self._membership()
        for e in rd.committed_entries:
            if e.type is EntryType.ConfChange:
                self.core.apply_conf_change(ConfChange.decode(e.data))
                self._membership()
                self.store.applied = e.index
            elif e.data:
                self.store.apply(e.index, e.data)
            else:
                self.store.applied = e.index
            waiter = self._waiters.get(e.index)
            if waiter is not None and not waiter[1].done():
                if waiter[0] == e.term:
                    waiter[1].set_result(e.index)
                else:
                    waiter[1].set_exception(NotLeader(self.core.leader_id))
        if rd.committed_entries or rd.snapshot is not None:
            self._applied_event.set()
        # 4. linearizable reads
        for rs in rd.read_states:
            fut = self._reads.get(rs.ctx)
            if fut is not None and not fut.done():
                fut.set_result(rs.index)
        if rd.soft_state is not None:
            self._leadership()
        self._maybe_snapshot()

    async def _send(self, m: Message) -> None:
        try:
            await self.session.send(self.topics.mgr_raft(m.to), "raft", to_wire(m), qos=0)
            ok = True
        except BrokerError:
            ok = False
            self.core.report_unreachable(m.to)
        if m.type is MessageType.Snap:
            self.core.report_snapshot(m.to, ok)

    def wake(self) -> None:
        self._wake.set()

    async def leader_changed(self, timeout: float) -> bool:
        """Wait until the known leader changes (True), or the timeout passes (False)."""
        self._leader_event.clear()
        try:
            await asyncio.wait_for(self._leader_event.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def _leadership(self) -> None:
        if self.core.leader_id != self._known_leader:
            self._known_leader = self.core.leader_id
            self.leader_changes += self._known_leader is not None
            self._leader_event.set()
        leader = self.is_leader
        if leader != self._was_leader:
            self._was_leader = leader
            log.info("%s leadership (term %d)", "took" if leader else "lost", self.core.term)
            if not leader:
                for _, fut in self._waiters.values():
                    if not fut.done():
                        fut.set_exception(NotLeader(self.core.leader_id))
            if self.on_leadership is not None:
                self.on_leadership(leader)

    def _membership(self) -> None:
        if self.on_membership is not None:
            self.on_membership(self.core.voters)

    def _maybe_snapshot(self) -> None:
        applied = self.store.applied
        if applied - self._last_snapshot < self.snapshot_every:
            return
        try:
            self.storage.create_snapshot(applied, self.core.voters, self.store.snapshot())
            self.storage.compact(max(1, applied - self.snapshot_every // 2))
            self._last_snapshot = applied
        except StorageError:
            raise  # a storage that failed a write refuses all others: stop this manager
        except RaftError as exc:
            log.warning("could not snapshot at %d: %s", applied, exc)


class MemoryLog(MemoryStorage):
    """MemoryStorage with the driver's `save`: for tests and simulations, not durable."""

    def save(self, hard_state: HardState | None, entries: Any, snapshot: Snapshot | None) -> None:
        if snapshot is not None:
            self.apply_snapshot(snapshot)
        if entries:
            self.append(entries)
        if hard_state is not None:
            self.set_hardstate(hard_state)
