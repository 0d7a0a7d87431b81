"""Exceptions of shoal's Raft package; `RaftError` is the root of all of them.

Whose fault it is shows in the class: `RaftWireError` is remote misbehaviour (bytes from the
network that are not a valid Raft message); `ProposalError` and its subclasses are the normal,
expected refusals of a proposal; `StorageError` comes from a `Storage` implementation; any other
`RaftError` is local misuse of the API (for example calling `ready()` twice without `advance()`).
"""

from __future__ import annotations

from agent.model.errors import ShoalError

__all__ = [
    "Compacted",
    "InvalidConfChange",
    "NotLeader",
    "ProposalDropped",
    "ProposalError",
    "RaftError",
    "RaftWireError",
    "SnapshotOutOfDate",
    "StorageError",
    "Unavailable",
]


class RaftError(ShoalError):
    """Root of every exception raised by shoal's Raft package (a :class:`ShoalError`, as every
    error of the manager is: one ``except ShoalError`` answers a user with its message)."""


class RaftWireError(RaftError):
    """A message decoded from the network is malformed (the sender's fault)."""


class ProposalError(RaftError):
    """A proposal, read or leadership transfer was refused; nothing was appended."""


class NotLeader(ProposalError):
    """This node is not the leader. `leader_id` is the leader it knows of, or None."""

    def __init__(self, leader_id: str | None) -> None:
        self.leader_id = leader_id
        known = f"the leader is {leader_id}" if leader_id is not None else "no leader is known"
        super().__init__(f"not the leader; {known}")


class ProposalDropped(ProposalError):
    """The leader refused the proposal for now (transfer under way, conf change pending...)."""


class InvalidConfChange(ProposalError):
    """The configuration change makes no sense for the current configuration."""


class StorageError(RaftError):
    """Root of the errors a `Storage` raises."""


class Compacted(StorageError):
    """The requested index is older than the storage's first index (compacted away)."""


class Unavailable(StorageError):
    """The requested index is newer than the storage's last index."""


class SnapshotOutOfDate(StorageError):
    """The snapshot being applied is older than the one the storage already holds."""
