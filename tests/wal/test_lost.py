"""Lost entries: a log that lacks records it had synced is refused, a torn write is not.

A crash during a save leaves a prefix of that save (cut off silently on recovery: nothing of it
was acknowledged). A log cut below what it had fsync'd, or missing its last segment, may have
lost acknowledged entries: opening raises StorageLost naming the file and what is gone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.manager.raft import Entry
from agent.manager.wal import DiskStorage, StorageCorrupt, StorageLost
from agent.manager.wal.synced import MARK_NAME, SyncMark, commit_beyond_log, lost

from .helpers import KEY, build, segment_frames, view

# the pure rules ----------------------------------------------------------------------------


def test_a_mark_reads_back_and_a_damaged_one_is_no_mark() -> None:
    mark = SyncMark(seq=3, offset=4096, last=295, commit=290)
    data = mark.encode()
    assert SyncMark.decode(data) == mark
    assert SyncMark.decode(data[:-1]) is None
    assert SyncMark.decode(b"") is None
    damaged = bytearray(data)
    damaged[10] ^= 1
    assert SyncMark.decode(bytes(damaged)) is None


def test_no_mark_means_nothing_to_compare_with() -> None:
    assert lost(None, seq=1, end=10, last=5) is None


def test_a_log_ending_at_or_past_the_mark_lost_nothing() -> None:
    mark = SyncMark(seq=2, offset=1000, last=40, commit=39)
    assert lost(mark, seq=2, end=1000, last=40) is None
    assert lost(mark, seq=2, end=1300, last=43) is None  # a later save the mark missed
    assert lost(mark, seq=3, end=60, last=43) is None  # rolled on since


def test_a_log_ending_before_the_mark_lost_entries() -> None:
    mark = SyncMark(seq=2, offset=2_730_000, last=417, commit=415)
    reason = lost(mark, seq=2, end=1_500_000, last=295)
    assert reason is not None
    assert "byte 1500000" in reason and "2730000" in reason
    assert "entries 296 to 417 are gone" in reason and "committed up to 415" in reason


def test_a_missing_last_segment_lost_entries() -> None:
    reason = lost(SyncMark(seq=4, offset=100, last=90, commit=90), seq=3, end=9000, last=70)
    assert reason is not None and "segment number 4" in reason and "71 to 90" in reason


def test_a_hard_state_committing_beyond_the_log_lost_entries() -> None:
    assert commit_beyond_log(last=295, commit=295) is None
    reason = commit_beyond_log(last=295, commit=415)
    assert reason is not None and "295" in reason and "415" in reason


# on disk -----------------------------------------------------------------------------------


def _segments(st: DiskStorage) -> list[Path]:
    paths = st.segment_paths()
    st.close()
    return paths


def _last_segment(st: DiskStorage) -> Path:
    return _segments(st)[-1]


def test_a_log_cut_one_synced_record_short_is_refused(tmp_path: Path) -> None:
    st = build(tmp_path)
    st.append([Entry(3, 26, data=b"acknowledged")])
    segment = _last_segment(st)
    last = segment_frames(segment)[-1]
    os.truncate(segment, last.offset)  # a clean record boundary: no torn tail to see
    with pytest.raises(StorageLost) as info:
        DiskStorage(tmp_path, KEY)
    assert info.value.path == segment
    msg = str(info.value)
    assert "entries 26 to 26 are gone" in msg
    assert "shoal swarm leave --force" in msg and "Recovering a manager" in msg
    assert "\n" not in msg
    assert segment.stat().st_size == last.offset  # nothing was cut or rewritten


def test_a_log_cut_in_the_middle_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    st = build(tmp_path)
    segment = _last_segment(st)
    half = segment.stat().st_size // 2
    os.truncate(segment, half)
    before = segment.read_bytes()
    with pytest.raises(StorageLost, match="are gone"):
        DiskStorage(tmp_path, KEY)
    assert segment.read_bytes() == before
    with pytest.raises(StorageLost):  # and again: refused every time, never half-repaired
        DiskStorage(tmp_path, KEY)


def test_a_garbled_synced_tail_record_is_refused(tmp_path: Path) -> None:
    st = build(tmp_path)
    st.append([Entry(3, 26, data=b"acknowledged")])
    segment = _last_segment(st)
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0x40
    segment.write_bytes(bytes(data))
    with pytest.raises(StorageLost):
        DiskStorage(tmp_path, KEY)


def test_a_deleted_last_segment_is_refused(tmp_path: Path) -> None:
    st = DiskStorage(tmp_path, KEY, segment_bytes=400)
    for i in range(1, 40):
        st.append([Entry(1, i, data=b"x" * 40)])
    paths = st.segment_paths()
    st.close()
    assert len(paths) >= 3
    paths[-1].unlink()
    with pytest.raises(StorageLost, match="missing"):
        DiskStorage(tmp_path, KEY)


def test_every_segment_deleted_is_refused(tmp_path: Path) -> None:
    st = build(tmp_path)
    for path in _segments(st):
        path.unlink()
    with pytest.raises(StorageCorrupt):
        DiskStorage(tmp_path, KEY)


def test_a_log_without_a_mark_opens_as_before_and_gets_one(tmp_path: Path) -> None:
    st = build(tmp_path)
    before = view(st)
    st.close()
    (tmp_path / MARK_NAME).unlink()
    with DiskStorage(tmp_path, KEY) as again:
        assert view(again) == before
    assert SyncMark.decode((tmp_path / MARK_NAME).read_bytes()) is not None


def test_the_mark_follows_every_write(tmp_path: Path) -> None:
    with build(tmp_path) as st:
        st.append([Entry(3, 26, data=b"x")])
        mark = SyncMark.decode((tmp_path / MARK_NAME).read_bytes())
        assert mark is not None
        assert (mark.last, mark.commit) == (26, 15)
        assert mark.offset == st.segment_paths()[-1].stat().st_size
