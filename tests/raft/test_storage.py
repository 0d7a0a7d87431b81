"""MemoryStorage keeps the Storage contract the core relies on."""

from __future__ import annotations

import pytest

from agent.manager.raft import (
    Compacted,
    Entry,
    HardState,
    MemoryStorage,
    RaftError,
    Snapshot,
    SnapshotOutOfDate,
    Unavailable,
    bootstrap_state,
)


def storage_with(last: int) -> MemoryStorage:
    st = MemoryStorage.bootstrap(["a", "b", "c"])
    st.append([Entry(2, i, data=f"e{i}".encode()) for i in range(2, last + 1)])
    return st


def test_a_new_storage_is_empty_with_a_zero_snapshot() -> None:
    st = MemoryStorage()
    assert st.initial_state() == (HardState(), ())
    assert (st.first_index(), st.last_index()) == (1, 0)
    assert st.term(0) == 0
    assert st.snapshot() == Snapshot(0, 0)


def test_bootstrap_starts_every_member_from_the_same_snapshot_and_term() -> None:
    snap, hs = bootstrap_state(["c", "a", "b", "a"])
    assert snap == Snapshot(1, 1, ("a", "b", "c"), b"")
    assert hs == HardState(term=1, vote=None, commit=1)
    st = MemoryStorage.bootstrap(["a", "b", "c"])
    assert st.initial_state() == (hs, ("a", "b", "c"))
    assert (st.first_index(), st.last_index(), st.term(1)) == (2, 1, 1)
    with pytest.raises(RaftError):
        bootstrap_state([])


def test_entries_and_terms_are_served_within_the_log_only() -> None:
    st = storage_with(5)
    assert [e.index for e in st.entries(2, 6)] == [2, 3, 4, 5]
    assert st.term(1) == 1 and st.term(5) == 2
    with pytest.raises(Compacted):
        st.entries(1, 3)
    with pytest.raises(Unavailable):
        st.entries(3, 7)
    with pytest.raises(Compacted):
        st.term(0)
    with pytest.raises(Unavailable):
        st.term(6)


def test_appending_replaces_a_conflicting_suffix() -> None:
    st = storage_with(5)
    st.append([Entry(3, 4, data=b"new")])
    assert st.last_index() == 4
    assert st.entries(4, 5) == [Entry(3, 4, data=b"new")]


def test_appending_with_a_gap_is_refused() -> None:
    with pytest.raises(RaftError):
        storage_with(3).append([Entry(2, 5)])


def test_entries_covered_by_the_snapshot_are_ignored_on_append() -> None:
    st = storage_with(5)
    st.append([Entry(1, 1), Entry(2, 2, data=b"e2")])
    assert st.last_index() == 2


def test_compaction_needs_a_snapshot_covering_it() -> None:
    st = storage_with(6)
    with pytest.raises(RaftError):
        st.compact(4)
    snap = st.create_snapshot(4, ["a", "b", "c"], b"state")
    assert snap == Snapshot(4, 2, ("a", "b", "c"), b"state")
    st.compact(3)
    assert (st.first_index(), st.last_index(), st.term(3)) == (4, 6, 2)
    st.compact(4)
    assert st.first_index() == 5
    assert st.snapshot() == snap
    with pytest.raises(Compacted):
        st.compact(4)


def test_applying_a_snapshot_replaces_the_log() -> None:
    st = storage_with(4)
    st.apply_snapshot(Snapshot(10, 3, ("a",), b"x"))
    assert (st.first_index(), st.last_index(), st.term(10)) == (11, 10, 3)
    assert st.initial_state()[1] == ("a",)
    with pytest.raises(SnapshotOutOfDate):
        st.apply_snapshot(Snapshot(9, 3, ("a",), b""))
