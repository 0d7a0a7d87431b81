"""The Raft log: appending with conflict detection, the fast back-off search, commit and
applied bookkeeping, and the unstable tail."""

from __future__ import annotations

import pytest

from agent.manager.raft import Entry, MemoryStorage, RaftError, Snapshot
from agent.manager.raft.log import RaftLog


def log_with_terms(*terms: int) -> RaftLog:
    """A log after the bootstrap snapshot (1/1) whose entries 2, 3, ... have `terms`."""
    st = MemoryStorage.bootstrap(["1"])
    st.append([Entry(t, i) for i, t in enumerate(terms, start=2)])
    return RaftLog(st)


def test_a_new_log_starts_committed_and_applied_at_the_snapshot() -> None:
    log = RaftLog(MemoryStorage.bootstrap(["1"]))
    assert (log.first_index(), log.last_index(), log.committed, log.applied) == (2, 1, 1, 1)


def test_maybe_append_refuses_entries_that_do_not_follow_ours() -> None:
    log = log_with_terms(1, 2)
    assert log.maybe_append(3, 1, 3, (Entry(2, 4),)) is None
    assert log.maybe_append(5, 2, 3, (Entry(2, 6),)) is None
    assert log.last_index() == 3


def test_maybe_append_keeps_what_matches_and_replaces_what_conflicts() -> None:
    log = log_with_terms(1, 1, 1)  # 2..4
    assert log.maybe_append(2, 1, 0, (Entry(1, 3), Entry(2, 4), Entry(2, 5))) == 5
    assert [log.term(i) for i in range(2, 6)] == [1, 1, 2, 2]
    assert log.unstable.offset == 4


def test_maybe_append_commits_no_further_than_the_new_entries() -> None:
    log = log_with_terms(1, 1, 1)
    assert log.maybe_append(2, 1, 10, (Entry(1, 3),)) == 3
    assert log.committed == 3  # entry 4 may still be replaced


def test_a_conflict_with_a_committed_entry_is_a_corruption() -> None:
    log = log_with_terms(1, 1)
    log.commit_to(3)
    with pytest.raises(RaftError):
        log.append([Entry(2, 3)])


def test_find_conflict_by_term_skips_every_entry_of_a_higher_term() -> None:
    log = log_with_terms(1, 2, 2, 2, 4, 4)  # 2..7
    assert log.find_conflict_by_term(7, 3) == (5, 2)
    assert log.find_conflict_by_term(7, 5) == (7, 4)
    assert log.find_conflict_by_term(5, 1) == (2, 1)
    assert log.find_conflict_by_term(5, 0) == (0, 0)


def test_find_conflict_by_term_stops_at_a_compacted_index_with_unknown_term() -> None:
    st = MemoryStorage.bootstrap(["1"])
    st.append([Entry(2, i) for i in range(2, 8)])
    st.create_snapshot(5, ["1"], b"")
    st.compact(5)
    assert RaftLog(st).find_conflict_by_term(7, 1) == (4, 0)


def test_only_an_entry_of_the_given_term_is_committed_by_maybe_commit() -> None:
    log = log_with_terms(1, 2)
    assert not log.maybe_commit(3, 3)
    assert log.maybe_commit(3, 2)
    assert log.committed == 3


def test_commit_beyond_the_log_is_a_corruption() -> None:
    with pytest.raises(RaftError):
        log_with_terms(1).commit_to(5)


def test_applied_stays_within_committed() -> None:
    log = log_with_terms(1, 1)
    log.commit_to(2)
    log.applied_to(2)
    with pytest.raises(RaftError):
        log.applied_to(3)
    with pytest.raises(RaftError):
        log.applied_to(1)


def test_unstable_entries_become_stable_only_if_still_the_same() -> None:
    log = RaftLog(MemoryStorage.bootstrap(["1"]))
    log.append([Entry(2, 2), Entry(2, 3)])
    log.stable_to(3, 1)  # wrong term: they were replaced in between
    assert len(log.unstable.entries) == 2
    log.stable_to(2, 2)
    assert [e.index for e in log.unstable.entries] == [3]


def test_next_committed_hands_out_committed_unapplied_entries() -> None:
    log = log_with_terms(1, 1, 1)
    log.commit_to(3)
    assert [e.index for e in log.next_committed()] == [2, 3]
    log.applied_to(3)
    assert log.next_committed() == [] and not log.has_next_committed()


def test_restore_replaces_the_log_with_a_snapshot() -> None:
    log = log_with_terms(1, 1)
    log.restore(Snapshot(10, 4, ("1",), b""))
    assert (log.first_index(), log.last_index(), log.committed) == (11, 10, 10)
    assert log.term(10) == 4 and log.term(3) is None
    assert log.snapshot().index == 10
