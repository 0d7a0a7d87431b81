"""DiskStorage keeps the Storage contract, durably: what was written is there after a reopen."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from agent.manager.raft import (
    Compacted,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    RaftError,
    Snapshot,
    SnapshotOutOfDate,
    StorageError,
    Unavailable,
    bootstrap_state,
)
from agent.manager.wal import DiskStorage
from agent.manager.wal.records import RecordType

from .helpers import KEY, build, entries, segment_frames, view


def test_a_new_directory_is_an_empty_storage_like_a_new_memory_storage(tmp_path: Path) -> None:
    with DiskStorage(tmp_path / "raft", KEY) as st:
        assert view(st) == view(MemoryStorage())
    assert stat.S_IMODE((tmp_path / "raft").stat().st_mode) == 0o700


def test_bootstrap_starts_from_the_same_snapshot_and_hard_state_as_memory(tmp_path: Path) -> None:
    with DiskStorage.bootstrap(tmp_path, KEY, ["c", "a", "b"]) as st:
        assert view(st) == view(MemoryStorage.bootstrap(["a", "b", "c"]))
    with DiskStorage(tmp_path, KEY) as st:
        assert st.initial_state() == (bootstrap_state(["a"])[1], ("a", "b", "c"))


def test_bootstrap_refuses_a_directory_that_holds_raft_state(tmp_path: Path) -> None:
    DiskStorage.bootstrap(tmp_path, KEY, ["a"]).close()
    with pytest.raises(RaftError, match="already holds raft state"):
        DiskStorage.bootstrap(tmp_path, KEY, ["a"])


def test_everything_written_is_there_after_a_reopen(tmp_path: Path) -> None:
    st = build(tmp_path)
    before = view(st)
    st.close()
    with DiskStorage(tmp_path, KEY) as again:
        assert view(again) == before
        assert again.hard_state == HardState(3, "b", 15)
        assert again.snapshot() == Snapshot(10, 2, ("a", "b", "c"), b"state@10")
        assert (again.first_index(), again.last_index()) == (9, 25)


def test_entries_and_terms_are_served_within_the_log_only(tmp_path: Path) -> None:
    with build(tmp_path) as st:
        assert [e.index for e in st.entries(9, 12)] == [9, 10, 11]
        assert st.term(8) == 2 and st.term(25) == 3
        with pytest.raises(Compacted):
            st.entries(8, 10)
        with pytest.raises(Unavailable):
            st.entries(20, 27)
        with pytest.raises(Compacted):
            st.term(7)
        with pytest.raises(Unavailable):
            st.term(26)


def test_appending_replaces_a_conflicting_suffix_also_after_a_reopen(tmp_path: Path) -> None:
    with build(tmp_path) as st:
        st.append([Entry(4, 18, data=b"new"), Entry(4, 19, EntryType.ConfChange, b"cc")])
        assert st.last_index() == 19
    with DiskStorage(tmp_path, KEY) as st:
        assert st.last_index() == 19
        assert st.entries(17, 20) == [
            Entry(3, 17, data=b"f17"),
            Entry(4, 18, data=b"new"),
            Entry(4, 19, EntryType.ConfChange, b"cc"),
        ]


def test_refused_writes_change_nothing_on_disk_or_in_memory(tmp_path: Path) -> None:
    with build(tmp_path) as st:
        before = view(st)
        with pytest.raises(RaftError, match="missing log entries"):
            st.append([Entry(3, 30)])
        with pytest.raises(RaftError, match="not contiguous"):
            st.append([Entry(3, 20), Entry(3, 22)])
        with pytest.raises(SnapshotOutOfDate):
            st.apply_snapshot(Snapshot(9, 2, ("a",)))
        with pytest.raises(SnapshotOutOfDate):
            st.create_snapshot(10, ["a"], b"")
        with pytest.raises(Unavailable):
            st.create_snapshot(26, ["a"], b"")
        with pytest.raises(Compacted):
            st.compact(8)
        with pytest.raises(RaftError, match="needs a snapshot"):
            st.compact(11)
        with pytest.raises(RaftError, match="missing log entries"):
            st.save(HardState(9, None, 9), [Entry(9, 40)], Snapshot(30, 9, ("a",)))
        assert view(st) == before
    with DiskStorage(tmp_path, KEY) as st:
        assert view(st) == before


def test_entries_covered_by_the_log_start_are_ignored_on_append(tmp_path: Path) -> None:
    with build(tmp_path) as st:
        st.append(entries(5, 8))
        assert (st.first_index(), st.last_index()) == (9, 25)
        st.append(entries(7, 10, term=5))
        assert st.last_index() == 10 and st.term(10) == 5


def test_applying_a_snapshot_replaces_the_whole_log(tmp_path: Path) -> None:
    snap = Snapshot(40, 6, ("a", "d"), b"state@40")
    with build(tmp_path) as st:
        st.apply_snapshot(snap)
        st.append(entries(41, 42, term=6))
    with DiskStorage(tmp_path, KEY) as st:
        assert st.snapshot() == snap
        assert st.initial_state()[1] == ("a", "d")
        assert (st.first_index(), st.last_index(), st.term(40)) == (41, 42, 6)


def test_save_persists_a_ready_with_one_fsync_of_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = build(tmp_path)
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    st.save(HardState(3, "b", 20), entries(26, 90, term=3))
    assert len(fsyncs) == 1
    frames = segment_frames(st.segment_paths()[-1])
    assert [f.rtype for f in frames[-66:]] == [RecordType.ENTRY] * 65 + [RecordType.HARD_STATE]
    st.close()


def test_save_writes_the_snapshot_then_the_entries_then_the_hard_state(tmp_path: Path) -> None:
    with build(tmp_path) as st:
        st.save(HardState(7, "c", 41), entries(41, 43, term=7), Snapshot(40, 6, ("c",), b"s"))
        kinds = [f.rtype for f in segment_frames(st.segment_paths()[-1])[-5:]]
        assert kinds == [RecordType.SNAPSHOT] + [RecordType.ENTRY] * 3 + [RecordType.HARD_STATE]
    with DiskStorage(tmp_path, KEY) as st:
        assert (st.first_index(), st.last_index(), st.hard_state.commit) == (41, 43, 41)


def test_an_unchanged_hard_state_writes_nothing(tmp_path: Path) -> None:
    with build(tmp_path) as st:
        path = st.segment_paths()[-1]
        size = path.stat().st_size
        st.save(st.hard_state, ())
        assert path.stat().st_size == size


def test_a_directory_is_opened_by_one_storage_at_a_time(tmp_path: Path) -> None:
    with DiskStorage(tmp_path, KEY), pytest.raises(StorageError, match="in use"):
        DiskStorage(tmp_path, KEY)
    DiskStorage(tmp_path, KEY).close()


def test_a_closed_storage_refuses_writes(tmp_path: Path) -> None:
    st = DiskStorage(tmp_path, KEY)
    st.close()
    with pytest.raises(StorageError, match="closed"):
        st.append(entries(1, 1))


def test_a_failed_write_leaves_the_storage_failed_and_the_disk_consistent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = build(tmp_path)
    durable = view(st)

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(StorageError, match=r"cannot write the raft log.*Input/output error"):
        st.append(entries(26, 27, term=3))
    monkeypatch.undo()
    with pytest.raises(StorageError, match="an earlier write failed"):
        st.set_hardstate(HardState(9, None, 1))
    st.close()
    with DiskStorage(tmp_path, KEY) as again:
        got = view(again)
        # the unsynced entries may or may not have reached the disk; nothing else changed
        assert got == durable or got["last"] == 27


def test_the_data_key_must_be_32_bytes(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="32 bytes"):
        DiskStorage(tmp_path, b"short")


def test_files_are_private_to_the_manager(tmp_path: Path) -> None:
    with build(tmp_path) as st:
        files = [*st.segment_paths(), *(tmp_path / "snap").iterdir()]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((tmp_path / "wal").stat().st_mode) == 0o700


def test_reads_see_whole_writes_while_a_ready_is_persisted_in_another_thread(
    tmp_path: Path,
) -> None:
    # the driver persists a Ready in a worker thread while the core reads on the event loop
    st = build(tmp_path)
    done = threading.Event()

    def writer() -> None:
        for round_ in range(200):
            first = 20 + round_ % 5  # truncate a little, append a little
            st.save(HardState(3, "b", 15), entries(first, first + 7, term=3, tag=f"r{round_}"))
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        first, last = st.first_index(), st.last_index()
        try:
            got = st.entries(first, last + 1)
        except Unavailable:
            continue  # truncated between the two calls: refused, never a partial answer
        assert [e.index for e in got] == list(range(first, last + 1))
    thread.join()
    st.close()
