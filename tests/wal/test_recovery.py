"""Recovery: a torn write at the tail is cut off; damage anywhere else is refused, loudly.

The rule (see `agent.manager.wal.records.read_frames`): a record that is incomplete or fails
its checksum is a torn write when no intact record follows it in the file, and it is cut off
with everything after it; when an intact record follows it, an fsync'd record was damaged and
opening raises StorageCorrupt naming the file and the offset.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.manager.raft import Entry, HardState, Snapshot, StorageError
from agent.manager.wal import DiskStorage, StorageCorrupt
from agent.manager.wal.records import Sealer
from agent.manager.wal.snapfiles import snapshot_path, write_snapshot
from agent.manager.wal.synced import MARK_NAME

from .helpers import KEY, OTHER_KEY, build, entries, segment_frames, view


def copy_of(src: Path, dst: Path, mark: bytes | None = None) -> Path:
    """A copy of the storage in `src`; with `mark`, as a crash during the last save leaves it:
    the sync mark from before that save (it is rewritten only after the save's fsync)."""
    shutil.copytree(src, dst)
    if mark is not None:
        (dst / MARK_NAME).write_bytes(mark)
    return dst


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_cut_anywhere_in_the_last_record_loses_that_record_only(tmp_path: Path) -> None:
    st = build(tmp_path / "orig")
    before = view(st)
    mark = (tmp_path / "orig" / MARK_NAME).read_bytes()
    st.append([Entry(3, 26, data=b"last")])
    after = view(st)
    segment = st.segment_paths()[-1]
    st.close()
    last = segment_frames(segment)[-1]
    for cut in range(last.offset, last.end):
        d = copy_of(tmp_path / "orig", tmp_path / f"cut{cut}", mark)
        seg = d / "wal" / segment.name
        seg.write_bytes(seg.read_bytes()[:cut])
        with DiskStorage(d, KEY) as again:
            assert view(again) == before, cut
            assert seg.stat().st_size == last.offset  # the torn bytes were trimmed
            again.append([Entry(4, 26, data=b"again")])  # and the log goes on from there
        with DiskStorage(d, KEY) as again:
            assert again.entries(26, 27) == [Entry(4, 26, data=b"again")]
        shutil.rmtree(d)
    with DiskStorage(tmp_path / "orig", KEY) as again:
        assert view(again) == after


def test_a_cut_anywhere_in_the_last_save_keeps_exactly_the_whole_records(tmp_path: Path) -> None:
    st = build(tmp_path / "orig")
    batch, hs = entries(26, 29, term=3, tag="g"), HardState(3, "b", 24)
    segment = st.segment_paths()[-1]
    start = segment.stat().st_size
    mark = (tmp_path / "orig" / MARK_NAME).read_bytes()
    st.save(hs, batch)
    st.close()
    frames = [f for f in segment_frames(segment) if f.offset >= start]
    assert len(frames) == 5
    for cut in range(start, frames[-1].end, 3):
        whole = sum(1 for f in frames if f.end <= cut)
        d = copy_of(tmp_path / "orig", tmp_path / "cut", mark)
        seg = d / "wal" / segment.name
        seg.write_bytes(seg.read_bytes()[:cut])
        with DiskStorage(d, KEY) as again:
            assert again.last_index() == 25 + min(whole, 4), cut
            assert again.entries(26, again.last_index() + 1) == batch[:whole]
            assert (again.hard_state == hs) == (whole == 5)
        shutil.rmtree(d)


def test_a_garbled_byte_in_the_tail_record_is_a_torn_write(tmp_path: Path) -> None:
    st = build(tmp_path / "orig")
    before = view(st)
    mark = (tmp_path / "orig" / MARK_NAME).read_bytes()
    st.append([Entry(3, 26, data=b"last")])
    segment = st.segment_paths()[-1]
    st.close()
    last = segment_frames(segment)[-1]
    for offset in range(last.offset, last.end):
        d = copy_of(tmp_path / "orig", tmp_path / "flip", mark)
        flip(d / "wal" / segment.name, offset)
        with DiskStorage(d, KEY) as again:
            assert view(again) == before, offset
        shutil.rmtree(d)


def test_a_garbled_byte_in_a_middle_record_is_corruption_naming_the_file(tmp_path: Path) -> None:
    build(tmp_path / "orig").close()
    segment = next((tmp_path / "orig" / "wal").iterdir())
    middle = segment_frames(segment)[10]
    for offset in range(middle.offset, middle.end):
        d = copy_of(tmp_path / "orig", tmp_path / "flip")
        flip(d / "wal" / segment.name, offset)
        with pytest.raises(StorageCorrupt) as info:
            DiskStorage(d, KEY)
        assert info.value.path == d / "wal" / segment.name
        assert info.value.offset == middle.offset
        assert segment.name in str(info.value) and "restore" in str(info.value)
        shutil.rmtree(d)


def test_zeros_after_the_last_record_are_a_torn_write(tmp_path: Path) -> None:
    st = build(tmp_path)
    before = view(st)
    segment = st.segment_paths()[-1]
    st.close()
    with segment.open("ab") as f:
        f.write(bytes(5000))
    with DiskStorage(tmp_path, KEY) as again:
        assert view(again) == before


def test_a_damaged_record_at_the_end_of_an_older_segment_is_corruption(tmp_path: Path) -> None:
    st = DiskStorage(tmp_path, KEY, segment_bytes=400)
    for i in range(1, 30):
        st.append([Entry(1, i, data=b"x" * 40)])
    first = st.segment_paths()[0]
    st.close()
    flip(first, segment_frames(first)[-1].end - 1)
    with pytest.raises(StorageCorrupt, match=first.name):
        DiskStorage(tmp_path, KEY, segment_bytes=400)


def test_a_record_that_checks_out_but_does_not_decrypt_is_corruption(tmp_path: Path) -> None:
    build(tmp_path).close()
    segment = next((tmp_path / "wal").iterdir())
    frames = segment_frames(segment)
    # swap two whole entry records: each is intact, but bound to the other's offset
    a, b = frames[5], frames[6]
    data = bytearray(segment.read_bytes())
    assert a.end - a.offset == b.end - b.offset
    data[a.offset : b.end] = bytes(data[b.offset : b.end]) + bytes(data[a.offset : a.end])
    segment.write_bytes(bytes(data))
    with pytest.raises(StorageCorrupt, match="does not decrypt"):
        DiskStorage(tmp_path, KEY)


def test_the_wrong_data_key_is_a_clear_error_not_corruption(tmp_path: Path) -> None:
    build(tmp_path).close()
    with pytest.raises(StorageError, match="cannot decrypt the raft log: wrong data key") as info:
        DiskStorage(tmp_path, OTHER_KEY)
    assert not isinstance(info.value, StorageCorrupt)
    with DiskStorage(tmp_path, KEY) as st:  # and nothing was changed by the attempt
        assert st.last_index() == 25


def test_nothing_on_disk_is_in_the_clear(tmp_path: Path) -> None:
    with build(tmp_path) as st:
        st.append([Entry(3, 26, data=b"the-secret-entry")])
        st.create_snapshot(20, ["a"], b"the-secret-snapshot")
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"the-secret" not in path.read_bytes(), path


def test_a_missing_segment_is_corruption(tmp_path: Path) -> None:
    st = DiskStorage(tmp_path, KEY, segment_bytes=400)
    for i in range(1, 40):
        st.append([Entry(1, i, data=b"x" * 40)])
    paths = st.segment_paths()
    st.close()
    assert len(paths) >= 3
    paths[1].unlink()
    with pytest.raises(StorageCorrupt, match="is missing"):
        DiskStorage(tmp_path, KEY)


def test_losing_the_oldest_segment_while_it_is_needed_is_corruption(tmp_path: Path) -> None:
    st = DiskStorage(tmp_path, KEY, segment_bytes=400)
    for i in range(1, 40):
        st.append([Entry(1, i, data=b"x" * 40)])
    paths = st.segment_paths()
    st.close()
    paths[0].unlink()
    with pytest.raises(StorageCorrupt, match="no longer exist"):
        DiskStorage(tmp_path, KEY)


def test_a_damaged_snapshot_falls_back_to_an_older_one_the_log_still_covers(
    tmp_path: Path,
) -> None:
    with build(tmp_path) as st:  # snapshot at 10, log from 9
        st.create_snapshot(20, ["a", "b", "c"], b"state@20")
        expected = {**view(st), "snapshot": st.snapshot()}
    newest = snapshot_path(tmp_path / "snap", 3, 20)
    flip(newest, 40)
    with DiskStorage(tmp_path, KEY) as st:
        assert st.snapshot().index == 10 and st.snapshot().data == b"state@10"
        assert st.entries(11, 26) == expected["entries"][2:]
        st.create_snapshot(22, ["a"], b"state@22")
    assert newest.with_suffix(".snap.corrupt").exists()
    with DiskStorage(tmp_path, KEY) as st:  # the fallback is recorded in the log
        assert st.snapshot().data == b"state@22"


def test_a_damaged_snapshot_is_corruption_when_the_log_no_longer_covers_the_gap(
    tmp_path: Path,
) -> None:
    with build(tmp_path) as st:  # snapshot at 10
        st.create_snapshot(20, ["a", "b", "c"], b"state@20")
        st.compact(15)  # the log starts after 15: the snapshot at 10 cannot stand in
    flip(snapshot_path(tmp_path / "snap", 3, 20), 40)
    with pytest.raises(StorageCorrupt, match="fails its checksum"):
        DiskStorage(tmp_path, KEY)


def test_a_damaged_snapshot_received_from_the_leader_is_corruption(tmp_path: Path) -> None:
    with build(tmp_path) as st:
        st.apply_snapshot(Snapshot(40, 6, ("a",), b"state@40"))
    flip(snapshot_path(tmp_path / "snap", 6, 40), 30)
    with pytest.raises(StorageCorrupt):
        DiskStorage(tmp_path, KEY)


def test_a_snapshot_file_the_log_never_recorded_is_dropped(tmp_path: Path) -> None:
    # a crash between writing a snapshot file and recording it in the log
    with build(tmp_path) as st:
        before = view(st)
    write_snapshot(tmp_path / "snap", Sealer(KEY), Snapshot(24, 3, ("a",)))
    with DiskStorage(tmp_path, KEY) as st:
        assert view(st) == before
    assert not snapshot_path(tmp_path / "snap", 3, 24).exists()


def test_leftover_temporary_files_are_removed(tmp_path: Path) -> None:
    build(tmp_path).close()
    junk = tmp_path / "snap" / ".0000000000000003-0000000000000018.snap.tmp"
    junk.write_bytes(b"half a snapshot")
    DiskStorage(tmp_path, KEY).close()
    assert not junk.exists()
