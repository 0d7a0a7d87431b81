"""The narrow interface between the executor and a runtime (Docker Engine, processes, nothing).

Contract every driver keeps:

- ``prepare`` makes sure the task *can* run here (image present, mount sources exist, its
  secrets open) and raises :class:`TaskRejected` with a sentence a user can act on when it
  cannot. ``files`` carries what the task's secret and config references point at.
- ``start`` creates and starts the task's runtime object and returns its id. It is idempotent:
  when the task already runs it returns the running id; a stale, stopped leftover of the same
  task is replaced. A failure to start raises :class:`DriverError` (or ``TaskRejected``).
- ``inspect``, ``wait``, ``stop``, ``remove`` and ``logs`` need only the task's identity, so they
  take either an :class:`~agent.model.Assignment` or an :class:`Owned` found by
  ``adopt``. They tolerate a task that is already gone (``stop``/``remove`` do nothing,
  ``inspect``/``wait`` observe ``missing``).
- ``adopt`` lists what runs (or ran) here carrying shoal's labels — for *any* cluster and node;
  the executor decides what is its own.
- ``sweep`` forgets what the driver keeps on the host for tasks of a node that are neither
  assigned nor adopted any more (a restarted agent's leftovers); ``remove`` does it for one.
- Runtime exceptions never leak: they are translated to :class:`WorkerError` subclasses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from agent.model import Assignment, Health
from agent.model.errors import DriverError, TaskRejected
from agent.worker.taskfiles import NO_FILES, TaskFiles

__all__ = [
    "LABEL_CLUSTER",
    "LABEL_NODE",
    "LABEL_SERVICE_ID",
    "LABEL_SERVICE_NAME",
    "LABEL_TASK_ID",
    "LABEL_TASK_SLOT",
    "LABEL_TASK_VERSION",
    "Driver",
    "DriverError",
    "Observation",
    "Owned",
    "TaskRef",
    "TaskRejected",
    "labels_for",
    "owned_from_labels",
    "swarm_labels",
]

LABEL_CLUSTER = "com.shoal.cluster"
LABEL_NODE = "com.shoal.node"
LABEL_SERVICE_ID = "com.shoal.service.id"
LABEL_SERVICE_NAME = "com.shoal.service.name"
LABEL_TASK_ID = "com.shoal.task.id"
LABEL_TASK_SLOT = "com.shoal.task.slot"
LABEL_TASK_VERSION = "com.shoal.task.version"

RuntimeState = Literal["running", "exited", "missing"]


@dataclass(frozen=True, slots=True)
class Observation:
    """What the runtime says about one task right now.

    ``missing``: nothing of the task runs and nothing ran to completion (``start`` creates it);
    ``exit_code`` is None when the runtime cannot know it (a process that exited while the
    agent was down). ``health`` is None when the task has no healthcheck.
    """

    state: RuntimeState
    runtime_id: str = ""
    exit_code: int | None = None
    health: Health | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class Owned:
    """A runtime object carrying shoal's labels, as ``adopt`` found it."""

    task_id: str
    cluster_id: str
    node_id: str
    service_id: str
    service_name: str
    slot: int | None
    version: int
    runtime_id: str


class TaskRef(Protocol):
    """The identity a driver needs to find a task's runtime object."""

    @property
    def task_id(self) -> str: ...

    @property
    def cluster_id(self) -> str: ...

    @property
    def node_id(self) -> str: ...


@runtime_checkable
class Driver(Protocol):
    name: str

    async def prepare(self, a: Assignment, files: TaskFiles = NO_FILES) -> None: ...

    async def start(self, a: Assignment) -> str: ...

    async def inspect(self, a: TaskRef) -> Observation: ...

    async def wait(self, a: TaskRef) -> Observation:
        """Return once the task's process has exited (at once when it is not running)."""
        ...

    async def stop(self, a: TaskRef, grace: float) -> None:
        """Send the stop signal, wait up to ``grace`` seconds, then kill."""
        ...

    async def remove(self, a: TaskRef) -> None: ...

    async def adopt(self) -> list[Owned]: ...

    async def sweep(self, node_id: str, keep: Collection[str]) -> None:
        """Remove what is kept on the host for tasks of ``node_id`` whose ids are not in
        ``keep``; problems are logged, never raised."""
        ...

    def logs(
        self, a: TaskRef, *, tail: int | None = None, follow: bool = False, since: int = 0
    ) -> AsyncIterator[bytes]:
        """The task's output, each line as ``<RFC 3339 nanosecond timestamp> <text>``: the last
        `tail` lines (None: all), none written before `since` (nanoseconds since the epoch;
        lines of its second may come too), and with `follow` new lines until the task ends."""
        ...

    async def close(self) -> None: ...


def labels_for(a: Assignment) -> dict[str, str]:
    """The labels that let a restarted agent recognise its tasks."""
    return {
        LABEL_CLUSTER: a.cluster_id,
        LABEL_NODE: a.node_id,
        LABEL_SERVICE_ID: a.service_id,
        LABEL_SERVICE_NAME: a.service_name,
        LABEL_TASK_ID: a.task_id,
        LABEL_TASK_SLOT: "" if a.slot is None else str(a.slot),
        LABEL_TASK_VERSION: str(a.version),
    }


def swarm_labels(a: Assignment) -> dict[str, str]:
    """Docker Swarm's labels on a task's container, so tools that filter on them (log shippers,
    dashboards) see shoal's tasks as Swarm's. A stack's service also carries
    ``com.docker.stack.namespace`` among its container labels (stacks/services.py)."""
    return {
        "com.docker.swarm.node.id": a.node_id,
        "com.docker.swarm.service.id": a.service_id,
        "com.docker.swarm.service.name": a.service_name,
        "com.docker.swarm.task": "",
        "com.docker.swarm.task.id": a.task_id,
        "com.docker.swarm.task.name": a.container_name,
    }


def owned_for(a: Assignment, runtime_id: str) -> Owned:
    """What a driver records for the runtime object it started for assignment `a`."""
    return Owned(
        task_id=a.task_id,
        cluster_id=a.cluster_id,
        node_id=a.node_id,
        service_id=a.service_id,
        service_name=a.service_name,
        slot=a.slot,
        version=a.version,
        runtime_id=runtime_id,
    )


def owned_from_labels(labels: dict[str, str], runtime_id: str) -> Owned | None:
    """Read :func:`labels_for`'s labels back; None when any is absent or malformed."""
    try:
        slot_text = labels.get(LABEL_TASK_SLOT, "")
        owned = Owned(
            task_id=labels[LABEL_TASK_ID],
            cluster_id=labels[LABEL_CLUSTER],
            node_id=labels[LABEL_NODE],
            service_id=labels[LABEL_SERVICE_ID],
            service_name=labels[LABEL_SERVICE_NAME],
            slot=int(slot_text) if slot_text else None,
            version=int(labels.get(LABEL_TASK_VERSION, "0")),
            runtime_id=runtime_id,
        )
    except (KeyError, ValueError, TypeError):
        return None
    if not (owned.task_id and owned.cluster_id and owned.node_id):
        return None
    return owned
