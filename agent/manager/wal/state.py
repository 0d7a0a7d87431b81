"""The log and state a `DiskStorage` holds in memory, changed the same way live and on replay.

Every write of `DiskStorage` is one of the `do_*` operations here, recorded in the log as one
or more records; opening the storage replays the records through the same operations, so the
state after a restart is the state before it by construction.

`LogState` checks its arguments with the same rules and exceptions as `MemoryStorage`, in
`check_*` methods that change nothing, so a refused write leaves memory and disk untouched.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from agent.manager.raft.errors import Compacted, RaftError, SnapshotOutOfDate, Unavailable
from agent.manager.raft.messages import Entry, HardState, Snapshot

from .records import SegmentHeader

__all__ = ["UNKNOWN_TERM", "LogState"]

UNKNOWN_TERM = -1


@dataclass(slots=True)
class LogState:
    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot = field(default_factory=lambda: Snapshot(0, 0))  # metadata only
    # ents[0] stands for the entry the log starts after (as in MemoryStorage)
    ents: list[Entry] = field(default_factory=lambda: [Entry(0, 0)])
    # on replay only: the entries up to ents[0].index are in segments deleted by compaction,
    # and a COMPACT or SNAPSHOT record still to come must cover them
    missing: bool = False
    # per segment: the highest entry index it holds that a replay may still need
    seg_max: dict[int, int] = field(default_factory=dict)

    # ------------------------------------------------------------------ reads

    @property
    def base(self) -> Entry:
        return self.ents[0]

    def first_index(self) -> int:
        return self.ents[0].index + 1

    def last_index(self) -> int:
        return self.ents[0].index + len(self.ents) - 1

    def term(self, i: int) -> int:
        offset = self.ents[0].index
        if i < offset:
            raise Compacted(f"term of {i} is compacted (snapshot index {offset})")
        if i - offset >= len(self.ents):
            raise Unavailable(f"term of {i} is beyond the last index {self.last_index()}")
        return self.ents[i - offset].term

    def entries(self, lo: int, hi: int) -> list[Entry]:
        offset = self.ents[0].index
        if lo <= offset:
            raise Compacted(f"entries from {lo} are compacted (first index {offset + 1})")
        if hi > self.last_index() + 1:
            raise Unavailable(f"entries up to {hi - 1} are beyond the last {self.last_index()}")
        return self.ents[lo - offset : hi - offset]

    def header(self, seq: int) -> SegmentHeader:
        last = self.ents[-1]
        base = (self.base.index, self.base.term)
        return SegmentHeader(seq, self.hard_state, self.snapshot, base, (last.index, last.term))

    def deletable(self, current_seq: int) -> list[int]:
        """The oldest segments that a replay no longer needs (never the current one)."""
        out = []
        for seq in sorted(self.seg_max):
            if seq >= current_seq or self.seg_max[seq] > self.base.index:
                break
            out.append(seq)
        return out

    # ------------------------------------------------------------------ checks

    def check_append(self, ents: list[Entry], first: int, last: int) -> list[Entry]:
        """The entries `append` would store on a log ``[first, last]``, as MemoryStorage."""
        if not ents:
            return []
        for prev, e in itertools.pairwise(ents):
            if e.index != prev.index + 1:
                raise RaftError(f"entries to append are not contiguous at {prev.index}")
        if ents[-1].index < first:
            return []
        if ents[0].index < first:
            ents = ents[first - ents[0].index :]
        if ents[0].index > last + 1:
            raise RaftError(f"missing log entries: last index {last}, appending {ents[0].index}")
        return ents

    def check_apply_snapshot(self, snap: Snapshot) -> None:
        if snap.index < self.snapshot.index:
            raise SnapshotOutOfDate(
                f"snapshot at {snap.index} is older than the stored one at {self.snapshot.index}"
            )

    def check_create_snapshot(self, index: int) -> int:
        """The term of entry `index`, of which a snapshot may be created."""
        if index <= self.snapshot.index:
            raise SnapshotOutOfDate(f"snapshot at {index} is not newer than {self.snapshot.index}")
        if index > self.last_index():
            raise Unavailable(f"snapshot index {index} is beyond the last index")
        return self.term(index)

    def check_compact(self, index: int) -> int:
        """The term of entry `index`, up to which the log may be compacted."""
        offset = self.base.index
        if index <= offset:
            raise Compacted(f"already compacted up to {offset}")
        if index > self.snapshot.index:
            raise RaftError(f"compact({index}) needs a snapshot at or after it; create it first")
        return self.term(index)

    # ------------------------------------------------------------------ changes

    def do_append(self, ents: list[Entry], seq: int) -> None:
        """Store checked, contiguous `ents`, replacing the entries at their indices and above."""
        if self.missing and ents[0].index <= self.base.index:
            self.ents = [Entry(UNKNOWN_TERM, ents[0].index - 1)]
        offset = ents[0].index - self.base.index
        del self.ents[offset:]
        self.ents.extend(ents)
        self.seg_max[seq] = max(self.seg_max.get(seq, 0), ents[-1].index)

    def do_hard_state(self, hs: HardState) -> None:
        self.hard_state = hs

    def do_apply_snapshot(self, meta: Snapshot, seq: int) -> None:
        self.snapshot = meta
        self.ents = [Entry(meta.term, meta.index)]
        self.missing = False
        self.seg_max = dict.fromkeys(self.seg_max, 0)
        self.seg_max.setdefault(seq, 0)

    def do_create_snapshot(self, meta: Snapshot) -> None:
        self.snapshot = meta

    def do_compact(self, index: int, term: int) -> None:
        offset = self.base.index
        if index < offset:
            return  # on replay: still inside the entries of deleted segments
        self.ents = [Entry(term, index), *self.ents[index - offset + 1 :]]
        self.missing = False

    # ------------------------------------------------------------------ replay

    @classmethod
    def from_header(cls, header: SegmentHeader) -> LogState:
        """The state a replay starts from when `header`'s segment is the oldest one left."""
        base_index, base_term = header.base
        tail_index, tail_term = header.tail
        state = cls(header.hard_state, header.snapshot, seg_max={header.seq: 0})
        if tail_index > base_index:
            state.ents, state.missing = [Entry(tail_term, tail_index)], True
        else:
            state.ents = [Entry(base_term, base_index)]
        return state

    def continues(self, header: SegmentHeader) -> str | None:
        """Why a segment starting with `header` cannot follow this state, or None."""
        last = self.ents[-1]
        if header.hard_state != self.hard_state or header.snapshot != self.snapshot:
            return "its hard state or snapshot differ from the end of the previous segment"
        if header.tail[0] != last.index or last.term not in (UNKNOWN_TERM, header.tail[1]):
            return f"it starts after entry {header.tail[0]}, the previous one ends at {last.index}"
        if not self.missing and header.base != (self.base.index, self.base.term):
            return "its log start differs from the end of the previous segment"
        return None
