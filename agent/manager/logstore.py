"""Where a manager's Raft log lives: opening and bootstrapping it."""

from __future__ import annotations

from pathlib import Path

import msgpack

from agent.manager.raft import HardState, Snapshot
from agent.manager.raftdriver import LogStorage, MemoryLog

__all__ = ["bootstrap_log", "open_log"]


def _file(directory: Path) -> Path:
    return directory / "bootstrap.snap"


def bootstrap_log(directory: Path, data_key: bytes, snapshot: Snapshot) -> None:
    """Write the log of a brand-new group whose first state is `snapshot`."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _file(directory).write_bytes(
        msgpack.packb([snapshot.index, snapshot.term, list(snapshot.voters), snapshot.data])
    )


def open_log(directory: Path, data_key: bytes) -> LogStorage:
    log = MemoryLog()
    path = _file(directory)
    if path.exists():
        index, term, voters, data = msgpack.unpackb(path.read_bytes())
        snap = Snapshot(index=index, term=term, voters=tuple(voters), data=data)
        log.save(HardState(term=term, vote=None, commit=index), (), snap)
    return log
