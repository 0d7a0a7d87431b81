"""Builders and waiters shared by the worker tests."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

from agent.model import Assignment, TaskState, TaskStatus
from agent.model.spec import SECOND, ContainerSpec, PortConfig, RestartPolicy, TaskSpec
from agent.worker import Executor

NODE = "node1"
CLUSTER = "cluster1"


def assignment(
    task_id: str = "task1",
    *,
    command: tuple[str, ...] | None = None,
    args: tuple[str, ...] | None = None,
    image: str = "shoal/busybox:latest",
    restart: RestartPolicy | None = None,
    grace: float | None = 1.0,
    node_id: str = NODE,
    cluster_id: str = CLUSTER,
    desired_state: Any = "running",
    version: int = 1,
    slot: int | None = 1,
    service: str = "web",
    ports: tuple[PortConfig, ...] = (),
    **container: Any,
) -> Assignment:
    spec = TaskSpec(
        container=ContainerSpec(
            image=image,
            command=command,
            args=args,
            stop_grace_period_ns=None if grace is None else int(grace * SECOND),
            **container,
        ),
        restart_policy=restart or RestartPolicy(condition="none"),
    )
    return Assignment(
        task_id=task_id,
        service_id=f"svc-{service}",
        service_name=service,
        slot=slot,
        node_id=node_id,
        spec=spec,
        desired_state=desired_state,
        version=version,
        cluster_id=cluster_id,
        ports=ports,
    )


def sh(script: str, **kwargs: Any) -> Assignment:
    """A task running ``/bin/sh -c script``."""
    return assignment(command=("/bin/sh", "-c", script), **kwargs)


class Recorder:
    """The executor's report callback: keeps every status and lets a test wait for one."""

    def __init__(self) -> None:
        self.statuses: list[TaskStatus] = []
        self._changed = asyncio.Event()

    async def __call__(self, status: TaskStatus) -> None:
        self.statuses.append(status)
        self._changed.set()

    def of(self, task_id: str) -> list[TaskStatus]:
        return [s for s in self.statuses if s.task_id == task_id]

    def states(self, task_id: str) -> list[TaskState]:
        return [s.state for s in self.of(task_id)]

    def last(self, task_id: str) -> TaskStatus | None:
        found = self.of(task_id)
        return found[-1] if found else None

    async def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "a report"
    ) -> Any:
        try:
            async with asyncio.timeout(timeout):
                while not (value := predicate()):
                    self._changed.clear()
                    await self._changed.wait()
                return value
        except TimeoutError:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}; reports so far:\n"
                + "\n".join(
                    f"  {s.task_id} {s.state.value} {s.message!r} {s.err!r}" for s in self.statuses
                )
            ) from None

    async def wait_state(
        self, task_id: str, state: TaskState, timeout: float = 15.0, count: int = 1
    ) -> TaskStatus:
        def seen() -> TaskStatus | None:
            found = [s for s in self.of(task_id) if s.state is state]
            return found[-1] if len(found) >= count else None

        result: TaskStatus = await self.wait_for(seen, timeout, f"task {task_id} {state.value}")
        return result


@contextlib.asynccontextmanager
async def running(executor: Executor) -> AsyncIterator[Executor]:
    """Run ``executor`` for the body of the block; cancelling leaves its tasks running."""
    task = asyncio.create_task(executor.run())
    try:
        yield executor
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Wait for a condition that no report announces (a process gone, a container removed)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                value = predicate()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return value
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None
