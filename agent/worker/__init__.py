"""The node side of task execution: assignments in, containers or processes out, statuses back.

The executor reconciles a node's assignments with what runs locally through a driver:
``DockerDriver`` (Docker Engine or Podman's Docker-compatible socket), ``ProcessDriver``
(supervised local processes) or ``HollowDriver`` (no work at all, for benchmarks). The docker
driver's module imports aiodocker lazily; import it as ``agent.worker.docker``.
"""

from agent.model.errors import DriverError, TaskRejected, WorkerError
from agent.worker.driver import Driver, Observation, Owned, TaskRef
from agent.worker.executor import Executor, Report
from agent.worker.hollow import HollowDriver
from agent.worker.process import ProcessDriver
from agent.worker.taskfiles import KeyLoader, TaskFiles

__all__ = [
    "Driver",
    "DriverError",
    "Executor",
    "HollowDriver",
    "KeyLoader",
    "Observation",
    "Owned",
    "ProcessDriver",
    "Report",
    "TaskFiles",
    "TaskRef",
    "TaskRejected",
    "WorkerError",
    "docker_driver",
]


def docker_driver(url: str | None = None) -> Driver:
    """A :class:`~agent.worker.docker.DockerDriver` (imports aiodocker on first engine call)."""
    from agent.worker.docker import DockerDriver

    return DockerDriver(url)
