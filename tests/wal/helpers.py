"""Helpers of the write-ahead log tests: a storage's whole observable state, record offsets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.manager.raft import Entry, HardState, MemoryStorage
from agent.manager.wal import DiskStorage
from agent.manager.wal.records import Frame, read_frames

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))

AnyStorage = DiskStorage | MemoryStorage


def view(st: AnyStorage) -> dict[str, Any]:
    """Everything the core can read from a storage, for comparing two of them."""
    first, last = st.first_index(), st.last_index()
    return {
        "initial_state": st.initial_state(),
        "first": first,
        "last": last,
        "snapshot": st.snapshot(),
        "entries": st.entries(first, last + 1),
        "terms": [st.term(i) for i in range(first - 1, last + 1)],
    }


def entries(first: int, last: int, term: int = 2, tag: str = "e") -> list[Entry]:
    return [Entry(term, i, data=f"{tag}{i}".encode()) for i in range(first, last + 1)]


def segment_frames(path: Path) -> list[Frame]:
    frames, torn = read_frames(path.read_bytes(), path)
    assert torn is None
    return frames


def build(directory: Path, **kwargs: Any) -> DiskStorage:
    """A storage with a snapshot, a compacted prefix and entries of two terms."""
    st = DiskStorage.bootstrap(directory, KEY, ["a", "b", "c"])
    st.save(HardState(2, "a", 1), entries(2, 20))
    st.create_snapshot(10, ["a", "b", "c"], b"state@10")
    st.compact(8)
    st.save(HardState(3, "b", 15), entries(16, 25, term=3, tag="f"))
    return st
