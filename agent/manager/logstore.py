"""Where a manager's Raft log lives: opening and bootstrapping it (see `agent.manager.wal`)."""

from __future__ import annotations

import os
from pathlib import Path

from agent.manager.raft import HardState, Snapshot, StorageError
from agent.manager.wal import SEGMENT_BYTES, DiskStorage, StorageLost
from agent.manager.wal.synced import commit_beyond_log

__all__ = ["SEGMENT_BYTES_ENV", "bootstrap_log", "open_log"]

# the size at which the log starts a new segment (default 8 MiB); small ones for tests
SEGMENT_BYTES_ENV = "SHOAL_WAL_SEGMENT_BYTES"


def _segment_bytes() -> int:
    value = os.environ.get(SEGMENT_BYTES_ENV, "")
    if not value:
        return SEGMENT_BYTES
    if not value.isdigit() or int(value) < 1024:
        raise StorageError(f"{SEGMENT_BYTES_ENV}={value!r}: give a size in bytes of at least 1024")
    return int(value)


def bootstrap_log(directory: Path, data_key: bytes, snapshot: Snapshot) -> None:
    """Write the log of a brand-new group whose first state is `snapshot`."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    storage = DiskStorage(directory, data_key)
    try:
        hs = HardState(term=snapshot.term, vote=None, commit=snapshot.index)
        storage.save(hs, (), snapshot)
    finally:
        storage.close()


def open_log(directory: Path, data_key: bytes) -> DiskStorage:
    """The manager's log; StorageCorrupt (StorageLost) when it is damaged or lost entries.

    Beyond what the storage checks, a manager refuses a log that ends before the commit index
    it recorded: a voter must never forget what it acknowledged.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    storage = DiskStorage(directory, data_key, segment_bytes=_segment_bytes())
    reason = commit_beyond_log(storage.last_index(), storage.hard_state.commit)
    if reason is not None:
        storage.close()
        raise StorageLost(directory / "wal", None, reason)
    return storage
