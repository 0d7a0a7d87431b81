"""The errors the write-ahead log adds to the Raft storage errors."""

from __future__ import annotations

from pathlib import Path

from agent.manager.raft.errors import StorageError

__all__ = ["REJOIN", "StorageCorrupt", "StorageLost"]

REJOIN = (
    "restore this manager's state from a backup, or make it a new member: `shoal swarm leave"
    " --force` on it, `shoal node rm --force NODE` on a healthy manager, then `shoal swarm join"
    ' --token MANAGER-TOKEN` (see "Recovering a manager" in docs/operations.md)'
)


class StorageCorrupt(StorageError):
    """The raft state on disk is damaged where a crash cannot have damaged it.

    `path` is the damaged file and `offset` the byte where the damage starts (None when the
    whole file is affected). shoal never repairs this by itself: the manager's state is restored
    from a backup, or the manager is removed from the swarm and joins again with empty state.
    """

    what = "raft state is corrupt"

    def __init__(self, path: Path, offset: int | None, reason: str) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        where = f"{path}" if offset is None else f"{path} at byte {offset}"
        super().__init__(f"{self.what}: {where}: {reason}; {REJOIN}")


class StorageLost(StorageCorrupt):
    """The log lacks records it is known to have synced: entries it may have acknowledged.

    A voter that forgot what it acknowledged could elect a leader without them, so the manager
    must not start on this log: it refuses, and the operator makes it a new member.
    """

    what = (
        "the raft log lost entries this manager may have acknowledged, so it must not vote or"
        " serve with it"
    )
