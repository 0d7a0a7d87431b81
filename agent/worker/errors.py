"""The worker's exceptions: one root, and whose fault each one is."""

from __future__ import annotations

from agent.errors import ShoalError

__all__ = ["DriverError", "TaskRejected", "WorkerError"]


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
