"""The Raft log: durable entries in `Storage` plus an unstable tail not yet persisted.

As etcd's raftLog: entries the core appends (as leader, or received from the leader) go to the
unstable tail first; the driver persists them from `Ready.entries` and the core then marks them
stable (`stable_to`). `committed` is the highest index known to be committed, `applied` the
highest index the driver has applied (`applied <= committed` always).
"""

from __future__ import annotations

from .errors import RaftError, StorageError
from .messages import Entry, Snapshot
from .storage import Storage

__all__ = ["RaftLog", "Unstable"]


class Unstable:
    """Entries (and possibly a snapshot) not yet in storage; `entries[i]` has index offset+i."""

    __slots__ = ("entries", "offset", "snapshot")

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        return self.snapshot.index + 1 if self.snapshot is not None else None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        return self.snapshot.index if self.snapshot is not None else None

    def maybe_term(self, i: int) -> int | None:
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.index == i:
                return self.snapshot.term
            return None
        last = self.maybe_last_index()
        if last is None or i > last:
            return None
        if not self.entries:  # i is the snapshot index
            return self.snapshot.term if self.snapshot is not None else None
        return self.entries[i - self.offset].term

    def stable_to(self, i: int, term: int) -> None:
        if i >= self.offset and self.maybe_term(i) == term:
            del self.entries[: i + 1 - self.offset]
            self.offset = i + 1

    def stable_snap_to(self, i: int) -> None:
        if self.snapshot is not None and self.snapshot.index == i:
            self.snapshot = None

    def restore(self, snap: Snapshot) -> None:
        self.offset = snap.index + 1
        self.entries = []
        self.snapshot = snap

    def truncate_and_append(self, ents: list[Entry]) -> None:
        after = ents[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif after <= self.offset:
            self.offset = after
            self.entries = list(ents)
        else:
            self.entries = self.entries[: after - self.offset] + ents


class RaftLog:
    __slots__ = ("applied", "committed", "storage", "unstable")

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.unstable = Unstable(storage.last_index() + 1)
        self.committed = storage.first_index() - 1
        self.applied = storage.first_index() - 1

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, len(unstable)={len(self.unstable.entries)})"
        )

    # ------------------------------------------------------------------ indices and terms

    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def term(self, i: int) -> int | None:
        """Term of entry `i`, or None when `i` is compacted away or beyond the last index."""
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        if i < self.first_index() - 1 or i > self.last_index():
            return None
        try:
            return self.storage.term(i)
        except StorageError:
            return None

    def last_term(self) -> int:
        t = self.term(self.last_index())
        if t is None:
            raise RaftError(f"term of the last index {self.last_index()} is unavailable")
        return t

    def match_term(self, i: int, term: int) -> bool:
        return self.term(i) == term

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Is a log ending at (last_index, term) at least as up to date as ours? (§5.4.1)"""
        our = self.last_term()
        return term > our or (term == our and last_index >= self.last_index())

    # ------------------------------------------------------------------ reading entries

    def slice(self, lo: int, hi: int, max_entries: int | None = None) -> list[Entry]:
        """Entries with lo <= index < hi (at most `max_entries`). Raises StorageError."""
        if max_entries is not None:
            hi = min(hi, lo + max_entries)
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise RaftError(f"slice from {lo} below the first index {self.first_index()}")
        if hi > self.last_index() + 1:
            raise RaftError(f"slice up to {hi} beyond the last index {self.last_index()}")
        out: list[Entry] = []
        off = self.unstable.offset
        if lo < off:
            out.extend(self.storage.entries(lo, min(hi, off)))
        if hi > off:
            out.extend(self.unstable.entries[max(lo, off) - off : hi - off])
        return out

    def entries_from(self, i: int, max_entries: int) -> list[Entry] | None:
        """Up to `max_entries` entries from index `i`; None when `i` is compacted away."""
        if i > self.last_index():
            return []
        if i < self.first_index():
            return None
        try:
            return self.slice(i, self.last_index() + 1, max_entries)
        except StorageError:
            return None

    def has_next_committed(self) -> bool:
        return self.committed > max(self.applied, self.first_index() - 1)

    def next_committed(self) -> list[Entry]:
        lo = max(self.applied + 1, self.first_index())
        return self.slice(lo, self.committed + 1) if self.committed + 1 > lo else []

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    # ------------------------------------------------------------------ changing the log

    def append(self, ents: list[Entry]) -> int:
        if not ents:
            return self.last_index()
        if ents[0].index - 1 < self.committed:
            raise RaftError(f"appending at {ents[0].index} would overwrite committed entries")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: tuple[Entry, ...]) -> int:
        """Index of the first entry that is new or conflicts with ours; 0 if none."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest (i, t) with i <= index whose term t <= term; (i, 0) if i's term is unknown.

        Used on both sides of a rejected MsgApp to skip, in one round trip, all the entries of
        a term the other side cannot have.
        """
        while index > 0:
            our = self.term(index)
            if our is None:
                return index, 0
            if our <= term:
                return index, our
            index -= 1
        return 0, 0

    def maybe_append(
        self, index: int, log_term: int, committed: int, ents: tuple[Entry, ...]
    ) -> int | None:
        """Append the leader's entries following (index, log_term); None if we lack that entry.

        Returns the index of the last new entry. Our entries that conflict with the leader's
        are replaced; entries we already have are kept as they are.
        """
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.committed:
                raise RaftError(f"entry {ci} conflicts with a committed entry")
            self.append(list(ents[ci - index - 1 :]))
        self.commit_to(min(committed, last_new))
        return last_new

    def commit_to(self, to_commit: int) -> None:
        if to_commit > self.committed:
            if to_commit > self.last_index():
                raise RaftError(
                    f"commit index {to_commit} is beyond the last index {self.last_index()}; "
                    "was the log corrupted, truncated or lost?"
                )
            self.committed = to_commit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit up to `max_index` if its entry is from `term` (the leader's current term)."""
        if max_index > self.committed and self.term(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, i: int) -> None:
        if i == 0:
            return
        if i > self.committed or i < self.applied:
            raise RaftError(f"applied({i}) out of range [{self.applied}, {self.committed}]")
        self.applied = i

    def stable_to(self, i: int, term: int) -> None:
        self.unstable.stable_to(i, term)

    def stable_snap_to(self, i: int) -> None:
        self.unstable.stable_snap_to(i)

    def restore(self, snap: Snapshot) -> None:
        self.committed = snap.index
        self.unstable.restore(snap)
