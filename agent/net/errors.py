"""The error of the routing mesh: a malformed routing table, or a port that cannot be published."""

from __future__ import annotations

from agent.model.errors import WorkerError

__all__ = ["MeshError"]


class MeshError(WorkerError, ValueError):
    """A routing table is malformed (the sender's fault), or a port could not be published."""
