"""shoal's exception root, the wire model's exceptions (every one is the sender's fault), and
the node's task-execution errors that the worker, its drivers and the node networking share."""

from __future__ import annotations

__all__ = [
    "AssignmentError",
    "DriverError",
    "ModelError",
    "ShoalError",
    "StatusError",
    "TaskRejected",
    "WorkerError",
]


class ShoalError(Exception):
    """A failure a user should see as one line: what is wrong and what to do."""


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


class WorkerError(ShoalError):
    """Root of everything the node side of task execution raises."""


class TaskRejected(WorkerError):
    """This node cannot run the task as specified (missing image, bad mount source, ...).

    The task ends ``rejected`` with ``reason``; retrying here would not help.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class DriverError(WorkerError):
    """The runtime failed to do what was asked (start, stop, inspect); the task may fail."""
