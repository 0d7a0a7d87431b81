"""A driver that does no work: for benchmarks that simulate thousands of nodes in one process.

Tasks go running at once and stay running until stopped; nothing is created anywhere. Like
Kubernetes' kubemark hollow nodes, it exercises everything above the runtime. Never a default.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field

from agent.model import Assignment
from agent.worker.driver import Observation, Owned, TaskRef, owned_for
from agent.worker.taskfiles import NO_FILES, TaskFiles

__all__ = ["HollowDriver"]


@dataclass(slots=True)
class _Hollow:
    owned: Owned
    exit_code: int | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)


class HollowDriver:
    """Keeps its "tasks" in memory; share one instance between executors to model re-adoption."""

    name = "hollow"

    def __init__(self) -> None:
        self._tasks: dict[str, _Hollow] = {}
        self._serial = 0

    async def prepare(self, a: Assignment, files: TaskFiles = NO_FILES) -> None:
        return None  # secrets and configs included: a hollow task reads nothing

    async def start(self, a: Assignment) -> str:
        current = self._tasks.get(a.task_id)
        if current is not None and not current.exited.is_set():
            return current.owned.runtime_id
        self._serial += 1
        runtime_id = f"hollow-{self._serial}-{a.task_id}"
        self._tasks[a.task_id] = _Hollow(owned_for(a, runtime_id))
        return runtime_id

    async def inspect(self, a: TaskRef) -> Observation:
        task = self._tasks.get(a.task_id)
        if task is None:
            return Observation("missing")
        if task.exited.is_set():
            return Observation("exited", task.owned.runtime_id, task.exit_code)
        return Observation("running", task.owned.runtime_id)

    async def wait(self, a: TaskRef) -> Observation:
        task = self._tasks.get(a.task_id)
        if task is None:
            return Observation("missing")
        await task.exited.wait()
        return Observation("exited", task.owned.runtime_id, task.exit_code)

    async def stop(self, a: TaskRef, grace: float) -> None:
        task = self._tasks.get(a.task_id)
        if task is not None and not task.exited.is_set():
            task.exit_code = 143
            task.exited.set()

    async def remove(self, a: TaskRef) -> None:
        await self.stop(a, 0)
        self._tasks.pop(a.task_id, None)

    async def adopt(self) -> list[Owned]:
        return [t.owned for t in self._tasks.values()]

    async def sweep(self, node_id: str, keep: Collection[str]) -> None:
        return None

    async def logs(
        self, a: TaskRef, *, tail: int | None = None, follow: bool = False, since: int = 0
    ) -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover - makes this an async generator

    async def close(self) -> None:
        return None
