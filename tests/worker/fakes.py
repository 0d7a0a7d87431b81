"""A tiny in-memory driver of our own Driver protocol, scripted per task by the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field

from agent.model import Assignment
from agent.worker import Observation, Owned, TaskRef, TaskRejected
from agent.worker.driver import owned_for
from agent.worker.taskfiles import NO_FILES, TaskFiles


@dataclass
class _Run:
    owned: Owned
    exit_code: int | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)


class FakeDriver:
    """``exits[task_id]`` lists the exit codes of successive runs; once empty, runs last forever.

    ``reject[task_id]`` makes ``prepare`` reject; ``gate`` (when set) holds every ``start``
    until the test opens it. Calls are counted so tests can assert what happened. ``prepare``
    opens the task's secrets as a real driver does and keeps them in ``files[task_id]``.
    """

    name = "fake"

    def __init__(self) -> None:
        self.exits: dict[str, list[int]] = {}
        self.reject: dict[str, str] = {}
        self.gate: asyncio.Event | None = None
        self.runs: dict[str, _Run] = {}
        self.starts: dict[str, int] = {}
        self.stops: list[str] = []
        self.removes: list[str] = []
        self.files: dict[str, tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]] = {}
        self.sweeps: list[tuple[str, set[str]]] = []
        self.starting = 0
        self.max_starting = 0
        self._serial = 0

    async def prepare(self, a: Assignment, files: TaskFiles = NO_FILES) -> None:
        if a.task_id in self.reject:
            raise TaskRejected(self.reject[a.task_id])
        configs = [(ref.target, data) for ref, data in files.config_data(a)]
        secrets = [(ref.target, data) for ref, data in files.open_secrets(a)]
        self.files[a.task_id] = (secrets, configs)

    async def start(self, a: Assignment) -> str:
        self.starting += 1
        self.max_starting = max(self.max_starting, self.starting)
        try:
            if self.gate is not None:
                await self.gate.wait()
        finally:
            self.starting -= 1
        self.starts[a.task_id] = self.starts.get(a.task_id, 0) + 1
        self._serial += 1
        run = _Run(owned_for(a, f"fake-{self._serial}"))
        self.runs[a.task_id] = run
        script = self.exits.get(a.task_id)
        if script:
            run.exit_code = script.pop(0)
            run.exited.set()
        return run.owned.runtime_id

    async def inspect(self, a: TaskRef) -> Observation:
        run = self.runs.get(a.task_id)
        if run is None:
            return Observation("missing")
        if run.exited.is_set():
            return Observation("exited", run.owned.runtime_id, run.exit_code)
        return Observation("running", run.owned.runtime_id)

    async def wait(self, a: TaskRef) -> Observation:
        run = self.runs.get(a.task_id)
        if run is None:
            return Observation("missing")
        await run.exited.wait()
        return Observation("exited", run.owned.runtime_id, run.exit_code)

    def exit(self, task_id: str, code: int) -> None:
        """The task's process exits now with ``code``."""
        run = self.runs[task_id]
        run.exit_code = code
        run.exited.set()

    async def stop(self, a: TaskRef, grace: float) -> None:
        self.stops.append(a.task_id)
        run = self.runs.get(a.task_id)
        if run is not None and not run.exited.is_set():
            self.exit(a.task_id, 143)

    async def remove(self, a: TaskRef) -> None:
        self.removes.append(a.task_id)
        self.runs.pop(a.task_id, None)

    async def adopt(self) -> list[Owned]:
        return [r.owned for r in self.runs.values()]

    async def sweep(self, node_id: str, keep: Collection[str]) -> None:
        self.sweeps.append((node_id, set(keep)))

    async def logs(
        self, a: TaskRef, *, tail: int | None = None, follow: bool = False, since: int = 0
    ) -> AsyncIterator[bytes]:
        yield f"log of {a.task_id}\n".encode()

    async def close(self) -> None:
        return None
