"""The wire model's exceptions: one root, and every one is the sender's fault."""

from __future__ import annotations

from agent.errors import ShoalError

__all__ = ["AssignmentError", "ModelError", "StatusError"]


class ModelError(ShoalError, ValueError):
    """Root of everything the wire model raises: a message from outside is malformed."""


class AssignmentError(ModelError):
    """An assignment from the network is malformed (the sender's fault); ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"assignment {field}: {message}" if field else f"assignment: {message}")


class StatusError(ModelError):
    """A task status read from outside is malformed; ``field`` names the first bad key."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"task status {field}: {message}" if field else f"task status: {message}")
