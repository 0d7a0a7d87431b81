"""Segments roll over at a size; compaction deletes the segments and snapshots nothing needs."""

from __future__ import annotations

import re
from pathlib import Path

from agent.manager.raft import Entry, HardState, Snapshot
from agent.manager.wal import SEGMENT_BYTES, DiskStorage
from agent.manager.wal.records import RecordType

from .helpers import KEY, entries, segment_frames, view

SMALL = 2048


def filled(directory: Path, last: int, **kwargs: int) -> DiskStorage:
    st = DiskStorage.bootstrap(directory, KEY, ["a", "b"])
    st.close()
    st = DiskStorage(directory, KEY, segment_bytes=SMALL, **kwargs)
    for first in range(2, last + 1, 5):
        st.save(HardState(2, "a", first), entries(first, min(first + 4, last), tag="x" * 40))
    return st


def first_indices(st: DiskStorage) -> list[int]:
    out = []
    for path in st.segment_paths():
        m = re.fullmatch(r"([0-9a-f]{16})-([0-9a-f]{16})\.seg", path.name)
        assert m, path.name
        out.append(int(m.group(2), 16))
    return out


def test_segments_are_about_8_mib_by_default() -> None:
    assert SEGMENT_BYTES == 8 * 1024 * 1024


def test_the_log_rolls_over_to_a_new_segment_named_by_number_and_first_index(
    tmp_path: Path,
) -> None:
    st = filled(tmp_path, 200)
    paths = st.segment_paths()
    assert len(paths) > 5
    assert [int(p.name[:16], 16) for p in paths] == list(range(1, len(paths) + 1))
    firsts = first_indices(st)
    assert firsts == sorted(firsts) and firsts[0] == 1
    for path in paths[:-1]:  # a segment is rolled once it reaches the size, after a whole save
        assert SMALL <= path.stat().st_size < SMALL + 5 * 200
    for path, first in zip(paths, firsts, strict=True):
        frames = segment_frames(path)
        assert frames[0].rtype == RecordType.HEADER
        if len(frames) > 1 and frames[1].rtype == RecordType.ENTRY:
            assert first > 1
    before = view(st)
    st.close()
    with DiskStorage(tmp_path, KEY, segment_bytes=SMALL) as again:
        assert view(again) == before


def test_compaction_deletes_the_segments_wholly_below_the_log_start(tmp_path: Path) -> None:
    st = filled(tmp_path, 200)
    st.create_snapshot(150, ["a", "b"], b"state@150")
    count = len(st.segment_paths())
    assert st.segment_paths()[0].name.startswith("0000000000000001-")  # nothing deleted yet
    st.compact(120)
    firsts = first_indices(st)
    assert len(firsts) < count
    assert firsts[0] <= 121  # the oldest segment left still holds entry 121...
    assert len(firsts) == 1 or firsts[1] > 121  # ...and is the only one that does
    before = view(st)
    st.close()
    with DiskStorage(tmp_path, KEY, segment_bytes=SMALL) as again:
        assert view(again) == before
        assert (again.first_index(), again.last_index()) == (121, 200)
        again.append(entries(201, 260, term=3, tag="y" * 40))
        again.create_snapshot(255, ["a", "b"], b"state@255")
        again.compact(255)
        assert len(again.segment_paths()) <= 2
        after = view(again)
    with DiskStorage(tmp_path, KEY, segment_bytes=SMALL) as again:
        assert view(again) == after


def test_applying_a_snapshot_deletes_every_older_segment(tmp_path: Path) -> None:
    st = filled(tmp_path, 200)
    st.apply_snapshot(Snapshot(500, 7, ("a", "c"), b"state@500"))
    assert len(st.segment_paths()) == 1
    st.append([Entry(7, 501, data=b"next")])
    st.close()
    with DiskStorage(tmp_path, KEY) as again:
        assert (again.first_index(), again.last_index()) == (501, 501)
        assert again.snapshot().data == b"state@500"
        assert sorted(p.name for p in (tmp_path / "snap").iterdir()) == [
            "0000000000000007-00000000000001f4.snap"
        ]


def test_older_snapshots_are_kept_while_they_can_stand_in_for_the_current_one(
    tmp_path: Path,
) -> None:
    st = filled(tmp_path, 200, keep_snapshots=3)
    for index in (50, 60, 70, 80, 90):
        st.create_snapshot(index, ["a", "b"], f"state@{index}".encode())
    names = sorted(p.name for p in (tmp_path / "snap").iterdir())
    assert [int(n[17:33], 16) for n in names] == [70, 80, 90]
    st.compact(75)
    names = sorted(p.name for p in (tmp_path / "snap").iterdir())
    assert [int(n[17:33], 16) for n in names] == [80, 90]
    st.close()


def test_a_reopened_log_continues_in_its_last_segment_and_rolls_on(tmp_path: Path) -> None:
    st = filled(tmp_path, 40)
    count = len(st.segment_paths())
    st.close()
    st = DiskStorage(tmp_path, KEY, segment_bytes=SMALL)
    for first in range(41, 400, 5):
        st.append(entries(first, first + 4, tag="z" * 40))
    assert len(st.segment_paths()) > count
    before = view(st)
    st.close()
    with DiskStorage(tmp_path, KEY, segment_bytes=SMALL) as again:
        assert view(again) == before
