"""The storage a `RaftNode` reads its durable state from, and an in-memory implementation.

Contract of `Storage` (the on-disk storage of the driver implements the same protocol)
------------------------------------------------------------------------------------
The core only *reads* storage. The driver *writes* it while handling a `Ready`, before sending
that Ready's messages: the Ready's snapshot (if any) first, then its entries (which replace any
stored entries at the same or higher indices: a conflicting suffix is truncated), then its hard
state. A write must be durable (fsync'd) before the messages of that Ready are sent.

The log held by a storage is a contiguous run of entries ``[first_index(), last_index()]``
preceded by a snapshot at index ``first_index() - 1`` (index 0 and term 0 when there is none).

- ``initial_state()`` returns the last persisted `HardState` and the voters of the configuration
  as of the snapshot (the bootstrap voters; an empty tuple for a node that joins an existing
  group and has not received anything yet). Configuration changes in the log after the snapshot
  are replayed by the core itself up to `Config.applied`.
- ``entries(lo, hi)`` returns the entries with ``lo <= index < hi`` in order. It raises
  `Compacted` if ``lo < first_index()`` and `Unavailable` if ``hi > last_index() + 1``.
- ``term(i)`` returns the term of entry ``i``, for ``first_index() - 1 <= i <= last_index()``
  (the snapshot's term at ``first_index() - 1``); it raises `Compacted` below that range and
  `Unavailable` above it.
- ``first_index()`` is the index of the first entry that is still available (snapshot index + 1).
- ``last_index()`` is the index of the last entry (the snapshot index when no entry follows it).
- ``snapshot()`` returns the most recent snapshot (``Snapshot(0, 0)`` when there is none). The
  core sends it to a follower whose next index has been compacted away.

All methods must be fast and must not block on the network; they may raise `StorageError`.

Bootstrapping: the members of a brand-new group all start from `bootstrap_state(voters)` (a
snapshot at index 1, term 1, with empty data, and a hard state at term 1). A node that joins an
existing group starts with empty storage and receives a snapshot from the leader.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from .errors import Compacted, RaftError, SnapshotOutOfDate, Unavailable
from .messages import Entry, HardState, Snapshot

__all__ = ["MemoryStorage", "Storage", "bootstrap_state"]


class Storage(Protocol):
    def initial_state(self) -> tuple[HardState, tuple[str, ...]]: ...

    def entries(self, lo: int, hi: int) -> list[Entry]: ...

    def term(self, i: int) -> int: ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> Snapshot: ...


def bootstrap_state(voters: Iterable[str]) -> tuple[Snapshot, HardState]:
    """The snapshot and hard state every initial member of a new group starts from."""
    ids = tuple(sorted(set(voters)))
    if not ids:
        raise RaftError("a group needs at least one voter")
    return Snapshot(index=1, term=1, voters=ids, data=b""), HardState(term=1, vote=None, commit=1)


class MemoryStorage:
    """`Storage` in memory, with the writes a driver performs (as etcd's MemoryStorage).

    ``self._ents[0]`` is a dummy entry standing for the snapshot (its index and term).
    """

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot = Snapshot(0, 0)
        self._ents: list[Entry] = [Entry(0, 0)]

    @classmethod
    def bootstrap(cls, voters: Iterable[str]) -> MemoryStorage:
        storage = cls()
        snap, hs = bootstrap_state(voters)
        storage.apply_snapshot(snap)
        storage.set_hardstate(hs)
        return storage

    # ------------------------------------------------------------------ Storage protocol

    def initial_state(self) -> tuple[HardState, tuple[str, ...]]:
        return self._hard_state, self._snapshot.voters

    def entries(self, lo: int, hi: int) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise Compacted(f"entries from {lo} are compacted (first index {offset + 1})")
        if hi > self.last_index() + 1:
            raise Unavailable(f"entries up to {hi - 1} are beyond the last {self.last_index()}")
        return self._ents[lo - offset : hi - offset]

    def term(self, i: int) -> int:
        offset = self._ents[0].index
        if i < offset:
            raise Compacted(f"term of {i} is compacted (snapshot index {offset})")
        if i - offset >= len(self._ents):
            raise Unavailable(f"term of {i} is beyond the last index {self.last_index()}")
        return self._ents[i - offset].term

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # ------------------------------------------------------------------ writes

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    def set_hardstate(self, hs: HardState) -> None:
        self._hard_state = hs

    def append(self, entries: Iterable[Entry]) -> None:
        """Append entries, truncating any stored entries at their indices or later."""
        ents = list(entries)
        if not ents:
            return
        first = self.first_index()
        if ents[-1].index < first:
            return  # all of them are already covered by the snapshot
        if ents[0].index < first:
            ents = ents[first - ents[0].index :]
        offset = ents[0].index - self._ents[0].index
        if offset > len(self._ents):
            raise RaftError(
                f"missing log entries: last index {self.last_index()}, appending {ents[0].index}"
            )
        self._ents = self._ents[:offset] + ents

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log with `snap` (a snapshot received from the leader)."""
        if snap.index < self._snapshot.index:
            raise SnapshotOutOfDate(
                f"snapshot at {snap.index} is older than the stored one at {self._snapshot.index}"
            )
        self._snapshot = snap
        self._ents = [Entry(snap.term, snap.index)]

    def create_snapshot(self, index: int, voters: Iterable[str], data: bytes) -> Snapshot:
        """Record a snapshot of the state machine as of applied `index` (then `compact`)."""
        if index <= self._snapshot.index:
            raise SnapshotOutOfDate(f"snapshot at {index} is not newer than {self._snapshot.index}")
        if index > self.last_index():
            raise Unavailable(f"snapshot index {index} is beyond the last index")
        snap = Snapshot(index, self.term(index), tuple(sorted(voters)), data)
        self._snapshot = snap
        return snap

    def compact(self, index: int) -> None:
        """Discard the entries up to and including `index` (which a snapshot must cover)."""
        offset = self._ents[0].index
        if index <= offset:
            raise Compacted(f"already compacted up to {offset}")
        if index > self._snapshot.index:
            raise RaftError(f"compact({index}) needs a snapshot at or after it; create it first")
        self._ents = [
            Entry(self._ents[index - offset].term, index),
            *self._ents[index - offset + 1 :],
        ]
