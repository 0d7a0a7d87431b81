"""The worker's exceptions: one root, and whose fault each one is."""

from __future__ import annotations

from agent.errors import ShoalError

__all__ = ["AssignmentError", "DriverError", "StatusError", "TaskRejected", "WorkerError"]


class WorkerError(ShoalError):
    """Root of everything the node side of task execution raises."""


class AssignmentError(WorkerError, ValueError):
    """An assignment from the network is malformed (the sender's fault); ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"assignment {field}: {message}" if field else f"assignment: {message}")


class StatusError(WorkerError, ValueError):
    """A task status read from outside is malformed; ``field`` names the first bad key."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"task status {field}: {message}" if field else f"task status: {message}")


class TaskRejected(WorkerError):
    """This node cannot run the task as specified (missing image, bad mount source, ...).

    The task ends ``rejected`` with ``reason``; retrying here would not help.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class DriverError(WorkerError):
    """The runtime failed to do what was asked (start, stop, inspect); the task may fail."""
