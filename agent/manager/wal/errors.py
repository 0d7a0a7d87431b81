"""The error the write-ahead log adds to the Raft storage errors."""

from __future__ import annotations

from pathlib import Path

from agent.manager.raft.errors import StorageError

__all__ = ["StorageCorrupt"]


class StorageCorrupt(StorageError):
    """The raft state on disk is damaged where a crash cannot have damaged it.

    `path` is the damaged file and `offset` the byte where the damage starts (None when the
    whole file is affected). shoal never repairs this by itself: the manager's state is restored
    from a backup, or the manager is removed from the swarm and joins again with empty state.
    """

    def __init__(self, path: Path, offset: int | None, reason: str) -> None:
        self.path = path
        self.offset = offset
        where = f"{path}" if offset is None else f"{path} at byte {offset}"
        super().__init__(
            f"raft state is corrupt: {where}: {reason}; restore this manager's state from a "
            "backup, or remove the manager from the swarm and join it again"
        )
