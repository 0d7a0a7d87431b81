"""DiskStorage is indistinguishable from MemoryStorage, through any sequence of writes and reopens.

A model-based test: hypothesis runs random writes on both (appends that truncate, hard states,
snapshots received and taken, compaction, whole Readies through `save`) and reopens the disk
storage from its directory after every step. Before and after each reopen the two must read the
same, and a write refused by one must be refused by the other with the same exception. Segments
are tiny so that
rollover and the deletion of old segments happen all the time.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from agent.manager.raft import Entry, EntryType, HardState, MemoryStorage, RaftError, Snapshot
from agent.manager.wal import DiskStorage

from .helpers import KEY, view

T = TypeVar("T")
SEGMENT = 600

terms = st.integers(1, 9)
voters = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=3, unique=True)
payloads = st.binary(max_size=24)
hard_states = st.builds(
    HardState, terms, st.none() | st.sampled_from(["a", "b"]), st.integers(0, 40)
)


@st.composite
def runs(draw: st.DrawFn) -> tuple[int, list[tuple[int, EntryType, bytes]]]:
    """(offset of the first index from last_index() + 1, [(term, type, data)])."""
    offset = draw(st.integers(-6, 2))
    items = draw(st.lists(st.tuples(terms, st.sampled_from(EntryType), payloads), max_size=5))
    return offset, items


def materialize(run: tuple[int, list[tuple[int, EntryType, bytes]]], last: int) -> list[Entry]:
    offset, items = run
    first = max(1, last + 1 + offset)
    return [Entry(t, first + i, k, d) for i, (t, k, d) in enumerate(items)]


class DiskMatchesMemory(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="shoal-wal-model-"))
        self.disk = DiskStorage(self.directory, KEY, segment_bytes=SEGMENT)
        self.mem = MemoryStorage()

    def teardown(self) -> None:
        self.disk.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def same(self, on_mem: Callable[[], T], on_disk: Callable[[], T]) -> None:
        try:
            expected = on_mem()
        except IndexError:
            return  # MemoryStorage's own limit (compact beyond the last entry): not a contract
        except RaftError as exc:
            try:
                on_disk()
            except RaftError as got:
                assert type(got) is type(exc), (got, exc)
            else:
                raise AssertionError(f"DiskStorage accepted what MemoryStorage refused: {exc}")
            return
        assert on_disk() == expected

    @rule(run=runs())
    def append(self, run: tuple[int, list[tuple[int, EntryType, bytes]]]) -> None:
        ents = materialize(run, self.mem.last_index())
        self.same(lambda: self.mem.append(ents), lambda: self.disk.append(ents))

    @rule(hs=hard_states)
    def set_hardstate(self, hs: HardState) -> None:
        self.same(lambda: self.mem.set_hardstate(hs), lambda: self.disk.set_hardstate(hs))

    @rule(offset=st.integers(-1, 8), term=terms, who=voters, data=payloads)
    def apply_snapshot(self, offset: int, term: int, who: list[str], data: bytes) -> None:
        snap = Snapshot(max(1, self.mem.snapshot().index + offset), term, tuple(sorted(who)), data)
        self.same(lambda: self.mem.apply_snapshot(snap), lambda: self.disk.apply_snapshot(snap))

    @rule(back=st.integers(-1, 6), who=voters, data=payloads)
    def create_snapshot(self, back: int, who: list[str], data: bytes) -> None:
        index = self.mem.last_index() - back
        self.same(
            lambda: self.mem.create_snapshot(index, who, data),
            lambda: self.disk.create_snapshot(index, who, data),
        )

    @rule(back=st.integers(-1, 6))
    def compact(self, back: int) -> None:
        index = self.mem.snapshot().index - back
        self.same(lambda: self.mem.compact(index), lambda: self.disk.compact(index))

    @rule(
        hs=st.none() | hard_states,
        run=runs(),
        snap=st.none() | st.tuples(st.integers(0, 8), terms, voters, payloads),
    )
    def save(
        self,
        hs: HardState | None,
        run: tuple[int, list[tuple[int, EntryType, bytes]]],
        snap: tuple[int, int, list[str], bytes] | None,
    ) -> None:
        snapshot = None
        last = self.mem.last_index()
        if snap is not None:
            offset, term, who, data = snap
            snapshot = Snapshot(self.mem.snapshot().index + offset, term, tuple(who), data)
            last = snapshot.index
        ents = materialize(run, last)

        def on_mem() -> None:  # a Ready is stored whole or (when refused) not at all
            trial = copy.deepcopy(self.mem)
            if snapshot is not None:
                trial.apply_snapshot(snapshot)
            trial.append(ents)
            if hs is not None:
                trial.set_hardstate(hs)
            self.mem = trial

        self.same(on_mem, lambda: self.disk.save(hs, ents, snapshot))

    @invariant()
    def reads_the_same_before_and_after_a_reopen(self) -> None:
        assert view(self.disk) == view(self.mem)
        assert self.disk.hard_state == self.mem.hard_state
        self.disk.close()
        self.disk = DiskStorage(self.directory, KEY, segment_bytes=SEGMENT)
        assert view(self.disk) == view(self.mem)


DiskMatchesMemory.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
test_disk_storage_matches_memory_storage = DiskMatchesMemory.TestCase
