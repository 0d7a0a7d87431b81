"""The executor: makes what runs on this node match the node's assignments, through a driver.

How it works:

- :meth:`Executor.set_assignments` takes the node's *full* desired set, with the secrets (sealed
  to this node's key) and configs its tasks use, saves it to ``<state dir>/assignments.msgpack``
  (atomically, before acting on it) and wakes the reconciler. Assignments for another node or
  cluster are rejected, counted and never acted upon.
- A task's driver gets the blobs its references point at when the task is prepared, with
  ``key_loader`` to open the secrets; nothing else ever opens them.
- :meth:`Executor.run` first adopts what the driver finds running with this node's and
  cluster's labels (healthy tasks are re-attached, never recreated), then reconciles on every
  wake-up. Each task is driven by one coroutine that waits on the driver, never polls.
- Without a ``set_assignments`` call (an agent restarting while the broker is unreachable) the
  saved set is used: the node brings its tasks back by itself.
- Every observed-state change is reported exactly once, in order, through ``report``.
- With ``local_restarts`` (True, or a function asked at each exit) an exited task runs again by
  its restart policy, which keeps the node autonomous while the managers are unreachable. The
  node agent restarts locally only while it is cut off from the broker; when connected, the
  executor reports and the managers replace failed tasks with new ones, as Swarm does.
- Cancelling :meth:`run` leaves tasks running; a new executor on the same state dir adopts them,
  and has the driver sweep away what it kept on the host for tasks the node no longer has.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agent.model import (
    Assignment,
    ConfigBlob,
    Health,
    SecretBlob,
    TaskState,
    TaskStatus,
    restart_delay,
    restarts_left,
    should_restart,
)
from agent.model.errors import TaskRejected, WorkerError
from agent.model.spec import SECOND
from agent.worker.driver import Driver, Observation, Owned
from agent.worker.saved import load_saved, save_assignments
from agent.worker.taskfiles import NO_FILES, KeyLoader, TaskFiles

__all__ = ["START_CONCURRENCY", "Executor", "Report"]

log = logging.getLogger("shoal.worker.executor")

Report = Callable[[TaskStatus], Awaitable[None] | None]
Goal = Literal["run", "shutdown", "remove", "forget"]
_GOALS: dict[str, Goal] = {"running": "run", "shutdown": "shutdown", "remove": "remove"}
START_CONCURRENCY = 8  # tasks being created and started on the runtime at once


@dataclass(slots=True, eq=False)
class _Task:
    ref: Assignment | Owned
    goal: Goal = "run"
    status: TaskStatus | None = None
    runner: asyncio.Task[None] | None = None
    adopted: bool = False
    restarts: list[float] = field(default_factory=list)


class Executor:
    def __init__(
        self,
        driver: Driver,
        state_dir: Path,
        report: Report,
        *,
        node_id: str,
        cluster_id: str,
        local_restarts: bool | Callable[[], bool] = True,
        key_loader: KeyLoader | None = None,
        start_concurrency: int = START_CONCURRENCY,
        default_grace: float = 10.0,
        before_stop: Callable[[str], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.driver = driver
        self.state_dir = Path(state_dir)
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.local_restarts = local_restarts
        self.key_loader = key_loader
        self.default_grace = default_grace
        # Awaited with a task's id before it is stopped for good (the node takes it out of
        # its networks' rotation first, so no new connection reaches a stopping task).
        self.before_stop = before_stop
        self.rejected_assignments = 0
        self._report = report
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._starts = asyncio.Semaphore(start_concurrency)
        self._desired: dict[str, Assignment] | None = None
        self._secrets: dict[str, SecretBlob] = {}
        self._configs: dict[str, ConfigBlob] = {}
        self._adopted: dict[str, Owned] = {}
        self.adopted = asyncio.Event()  # set once what already runs here has been adopted
        self._tasks: dict[str, _Task] = {}
        self._forgotten = asyncio.Event()  # set whenever a task is adopted or forgotten
        self._wake = asyncio.Event()
        self._set_lock = asyncio.Lock()
        self._reports: asyncio.Queue[TaskStatus] = asyncio.Queue()
        self._running = False

    # -- public ---------------------------------------------------------------------------

    async def set_assignments(
        self,
        assignments: Iterable[Assignment],
        *,
        secrets: Iterable[SecretBlob] = (),
        configs: Iterable[ConfigBlob] = (),
    ) -> None:
        """Replace the desired set. Saved to disk before anything acts on it.

        ``secrets`` and ``configs`` are those the set's running tasks refer to; only those are
        kept (an id a task refers to that is missing here rejects the task when it starts).
        """
        async with self._set_lock:
            accepted: dict[str, Assignment] = {}
            for a in assignments:
                if a.node_id != self.node_id or a.cluster_id != self.cluster_id:
                    self.rejected_assignments += 1
                    log.warning(
                        "rejected assignment of task %s for node %s of cluster %s: this is node "
                        "%s of cluster %s",
                        a.task_id,
                        a.node_id,
                        a.cluster_id,
                        self.node_id,
                        self.cluster_id,
                    )
                    continue
                known = accepted.get(a.task_id) or (self._desired or {}).get(a.task_id)
                if known is not None and known.version > a.version:
                    a = known  # an older copy arrived late; keep the newer one
                accepted[a.task_id] = a
            kept_secrets, kept_configs = self._kept(accepted.values(), secrets, configs)
            await asyncio.to_thread(
                save_assignments,
                self.state_dir,
                accepted.values(),
                secrets=kept_secrets.values(),
                configs=kept_configs.values(),
            )
            self._desired = accepted
            self._secrets, self._configs = kept_secrets, kept_configs
            self._wake.set()

    def _kept(
        self,
        assignments: Iterable[Assignment],
        secrets: Iterable[SecretBlob],
        configs: Iterable[ConfigBlob],
    ) -> tuple[dict[str, SecretBlob], dict[str, ConfigBlob]]:
        """The blobs the running tasks refer to: new ones first, else those held before (a
        newer copy of a task kept over a late older one may refer to what the set lacks)."""
        new_secrets = {s.id: s for s in secrets}
        new_configs = {c.id: c for c in configs}
        kept_secrets: dict[str, SecretBlob] = {}
        kept_configs: dict[str, ConfigBlob] = {}
        for a in assignments:
            if a.desired_state != "running":
                continue
            for ref in a.spec.container.secrets:
                blob = new_secrets.get(ref.secret_id) or self._secrets.get(ref.secret_id)
                if blob is not None:
                    kept_secrets[blob.id] = blob
            for cref in a.spec.container.configs:
                config = new_configs.get(cref.config_id) or self._configs.get(cref.config_id)
                if config is not None:
                    kept_configs[config.id] = config
        return kept_secrets, kept_configs

    def status(self) -> dict[str, TaskStatus]:
        """The current observed status of every task this executor knows, by task id."""
        return {tid: t.status for tid, t in self._tasks.items() if t.status is not None}

    def running(self) -> list[Assignment | Owned]:
        """The tasks whose process or container runs now."""
        return [
            t.ref
            for t in self._tasks.values()
            if t.status is not None and t.status.state is TaskState.RUNNING
        ]

    def known(self) -> set[str]:
        """The ids of every task this executor holds, adopted ones included."""
        return {*self._tasks, *self._adopted}

    async def wait_empty(self, timeout: float) -> bool:
        """Wait until what ran here has been adopted and no task is left (after
        ``set_assignments([])``: every task stopped and removed). False if some remain after
        ``timeout`` seconds (a task the runtime cannot stop, say: it is retried)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.adopted.is_set() or self._tasks or self._adopted:
            self._forgotten.clear()
            left = deadline - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._forgotten.wait(), left)
        return True

    def logs(
        self, task_id: str, *, tail: int | None = None, follow: bool = False, since: int = 0
    ) -> AsyncIterator[bytes]:
        """See :meth:`Driver.logs`."""
        task = self._tasks.get(task_id)
        if task is None:
            raise WorkerError(f"task {task_id} is not known on this node")
        return self.driver.logs(task.ref, tail=tail, follow=follow, since=since)

    async def run(self) -> None:
        """Adopt, then reconcile until cancelled (tasks keep running after cancellation)."""
        if self._running:
            raise WorkerError("this executor is already running")
        self._running = True
        reporter = asyncio.create_task(self._report_loop(), name="shoal-worker-report")
        try:
            async with self._set_lock:  # a set_assignments call meanwhile must win
                if self._desired is None:
                    saved = await asyncio.to_thread(load_saved, self.state_dir)
                    self._desired = {
                        a.task_id: a
                        for a in saved.assignments
                        if a.node_id == self.node_id and a.cluster_id == self.cluster_id
                    }
                    self._secrets, self._configs = self._kept(
                        self._desired.values(), saved.secrets, saved.configs
                    )
                    log.info("restored %d saved assignments", len(self._desired))
            await self._adopt()
            self.adopted.set()
            self._forgotten.set()
            try:
                await self.driver.sweep(self.node_id, {*(self._desired or {}), *self._adopted})
            except Exception:  # leftovers stay until the next start; the tasks matter more
                log.exception("cannot sweep the files of tasks this node no longer has")
            while True:
                self._wake.clear()
                self._reconcile()
                await self._wake.wait()
        finally:
            runners = [t.runner for t in self._tasks.values() if t.runner is not None]
            for runner in runners:
                runner.cancel()
            reporter.cancel()
            await asyncio.wait([*runners, reporter])
            self._running = False

    # -- reconcile ------------------------------------------------------------------------

    async def _adopt(self) -> None:
        attempt = 0
        while True:
            try:
                found = await self.driver.adopt()
                break
            except WorkerError as exc:
                attempt += 1
                delay = self._backoff(attempt)
                log.error("cannot list this node's tasks (%s); retrying in %.1f s", exc, delay)
                await self._sleep(delay)
        for owned in found:
            if owned.cluster_id != self.cluster_id or owned.node_id != self.node_id:
                log.info(
                    "leaving %s (task %s) alone: it belongs to node %s of cluster %s",
                    owned.runtime_id,
                    owned.task_id,
                    owned.node_id,
                    owned.cluster_id,
                )
                continue
            self._adopted[owned.task_id] = owned

    def _reconcile(self) -> None:
        desired = self._desired or {}
        for tid, a in desired.items():
            goal = _GOALS[a.desired_state]
            task = self._tasks.get(tid)
            if task is None:
                adopted = self._adopted.pop(tid, None) is not None
                task = self._tasks[tid] = _Task(ref=a, adopted=adopted)
                self._spawn(task, goal)
            else:
                task.ref = a
                if task.goal != goal:
                    self._spawn(task, goal)
        for tid, owned in list(self._adopted.items()):
            if tid not in desired:
                del self._adopted[tid]
                self._tasks[tid] = task = _Task(ref=owned, adopted=True)
                self._spawn(task, "forget")
        for tid, task in list(self._tasks.items()):
            if tid not in desired and task.goal != "forget":
                self._spawn(task, "forget")

    def _spawn(self, task: _Task, goal: Goal) -> None:
        previous = task.runner
        task.goal = goal
        task.runner = asyncio.create_task(
            self._drive(task, goal, previous), name=f"shoal-task-{task.ref.task_id}-{goal}"
        )

    async def _drive(self, task: _Task, goal: Goal, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            previous.cancel()
            await asyncio.wait([previous])
        try:
            if goal == "run":
                await self._run(task)
            else:
                await self._shutdown(task, remove=goal != "shutdown")
                if goal == "forget" and self._tasks.get(task.ref.task_id) is task:
                    del self._tasks[task.ref.task_id]
                    self._forgotten.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not silently stop a task's supervision
            log.exception("task %s: unexpected error", task.ref.task_id)
            self._set(task, TaskState.FAILED, message="internal error", err=f"shoal: {exc}")

    # -- one task -------------------------------------------------------------------------

    async def _run(self, task: _Task) -> None:
        a = task.ref
        assert isinstance(a, Assignment)
        obs: Observation | None = None
        if task.adopted:
            task.adopted = False
            try:
                obs = await self.driver.inspect(a)
            except WorkerError as exc:
                log.warning("task %s: cannot inspect adopted task: %s", a.task_id, exc)
        while True:
            if obs is None or obs.state == "missing":
                obs = await self._launch(task, a)
                if obs is None:
                    return  # rejected: this node cannot run it, retrying would not help
            if obs.state == "running":
                obs = await self._supervise(task, a, obs)
            ok = obs.exit_code == 0 and not obs.error
            ended = TaskState.COMPLETE if ok else TaskState.FAILED
            policy = a.spec.restart_policy
            now = self._clock()
            local = self._autonomous()
            again = local and should_restart(policy, ended, task.restarts, now)
            self._set(
                task,
                ended,
                message=_ended_message(obs, again, restart_delay(policy)),
                err="" if ended is TaskState.COMPLETE else _failure(obs),
                exit_code=obs.exit_code,
                container_id=obs.runtime_id or None,
                health=obs.health,
            )
            if not again:
                if local or not should_restart(policy, ended, task.restarts, self._clock()):
                    return
                # the managers decide (a new task, elsewhere maybe); should they fall silent
                # before they do, the node restarts the task itself after all
                while not self._autonomous():
                    await self._sleep(1.0)
                log.info("task %s: no word from the managers; restarting it here", a.task_id)
            await self._sleep(restart_delay(policy))
            task.restarts.append(self._clock())
            left = restarts_left(policy, task.restarts, self._clock())
            log.info("task %s: restarting (%s restarts left)", a.task_id, left)
            obs = None

    def _autonomous(self) -> bool:
        if callable(self.local_restarts):
            return self.local_restarts()
        return self.local_restarts

    async def _launch(self, task: _Task, a: Assignment) -> Observation | None:
        """Prepare and start; the started task's observation, or None once it is rejected."""
        self._set(task, TaskState.PREPARING, message="preparing", container_id="")
        try:
            await self.driver.prepare(a, self._files(a))
            async with self._starts:
                self._set(task, TaskState.STARTING, message="starting")
                runtime_id = await self.driver.start(a)
        except TaskRejected as exc:
            self._set(task, TaskState.REJECTED, message="rejected", err=exc.reason)
            return None
        except WorkerError as exc:
            return Observation("exited", error=str(exc))
        try:
            obs = await self.driver.inspect(a)
        except WorkerError as exc:
            return Observation("exited", runtime_id, error=str(exc))
        if obs.state == "missing":
            return Observation("exited", runtime_id, error="the task vanished right after start")
        return obs

    def _files(self, a: Assignment) -> TaskFiles:
        c = a.spec.container
        if not c.secrets and not c.configs:
            return NO_FILES
        secret_ids = {r.secret_id for r in c.secrets}
        config_ids = {r.config_id for r in c.configs}
        return TaskFiles(
            secrets={i: b for i, b in self._secrets.items() if i in secret_ids},
            configs={i: b for i, b in self._configs.items() if i in config_ids},
            key_loader=self.key_loader,
        )

    async def _supervise(self, task: _Task, a: Assignment, obs: Observation) -> Observation:
        """Follow a running task until it exits; with a healthcheck, gate ``running`` on it."""
        self._observe_health(task, obs)
        waiter = asyncio.ensure_future(self.driver.wait(a))
        try:
            while True:
                timeout = self._health_poll(a) if obs.health is not None else None
                done, _ = await asyncio.wait([waiter], timeout=timeout)
                if done:
                    try:
                        return waiter.result()
                    except WorkerError as exc:
                        # The runtime stopped answering: look again before concluding anything.
                        log.warning("task %s: lost track (%s); looking again", a.task_id, exc)
                        obs = await self._inspect(a)
                        if obs.state != "running":
                            return obs
                        waiter = asyncio.ensure_future(self.driver.wait(a))
                        continue
                obs = await self._inspect(a)
                if obs.state != "running":
                    continue  # the waiter returns at once
                if obs.health == "unhealthy":
                    await self.driver.stop(a, self._grace(task))
                    after = await waiter
                    return Observation(
                        "exited",
                        obs.runtime_id,
                        after.exit_code,
                        "unhealthy",
                        error="task: container is unhealthy",
                    )
                self._observe_health(task, obs)
        finally:
            if not waiter.done():
                waiter.cancel()
                await asyncio.wait([waiter])

    async def _inspect(self, a: Assignment) -> Observation:
        """Inspect, waiting out a runtime that does not answer (a restarting engine)."""
        attempt = 0
        while True:
            try:
                return await self.driver.inspect(a)
            except WorkerError as exc:
                attempt += 1
                delay = self._backoff(attempt)
                log.warning(
                    "task %s: cannot inspect (%s); retrying in %.1f s", a.task_id, exc, delay
                )
                await self._sleep(delay)

    def _observe_health(self, task: _Task, obs: Observation) -> None:
        if obs.health in (None, "healthy"):
            self._set(
                task,
                TaskState.RUNNING,
                message="started",
                container_id=obs.runtime_id,
                health=obs.health,
            )
        else:
            self._set(
                task,
                TaskState.STARTING,
                message="waiting for the healthcheck",
                container_id=obs.runtime_id,
                health=obs.health,
            )

    async def _shutdown(self, task: _Task, *, remove: bool) -> None:
        if self.before_stop is not None:
            try:
                await self.before_stop(task.ref.task_id)
            except Exception:  # stopping matters more than draining
                log.exception("task %s: draining before the stop failed", task.ref.task_id)
        attempt = 0
        while True:
            try:
                await self.driver.stop(task.ref, self._grace(task))
                if remove:
                    await self.driver.remove(task.ref)
                break
            except WorkerError as exc:
                attempt += 1
                delay = self._backoff(attempt)
                log.error(
                    "task %s: cannot stop (%s); retrying in %.1f s", task.ref.task_id, exc, delay
                )
                await self._sleep(delay)
        if task.status is None or not task.status.state.is_terminal:
            self._set(task, TaskState.SHUTDOWN, message="shutdown")

    # -- helpers --------------------------------------------------------------------------

    def _set(
        self,
        task: _Task,
        state: TaskState,
        *,
        message: str = "",
        err: str = "",
        exit_code: int | None = None,
        container_id: str | None = None,
        health: Health | None = None,
    ) -> None:
        """Record an observed state; queue a report only when state or health changed.

        ``container_id`` None keeps the one already known; "" clears it.
        """
        previous = task.status
        if previous is not None and (previous.state, previous.health) == (state, health):
            return
        task.status = TaskStatus(
            task_id=task.ref.task_id,
            state=state,
            message=message,
            err=err,
            exit_code=exit_code,
            container_id=(
                container_id
                if container_id is not None
                else (previous.container_id if previous else "")
            ),
            timestamp=self._clock(),
            health=health,
            restarts=len(task.restarts),
        )
        self._reports.put_nowait(task.status)

    async def _report_loop(self) -> None:
        while True:
            status = await self._reports.get()
            try:
                result = self._report(status)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reporting the status of task %s failed", status.task_id)

    def _grace(self, task: _Task) -> float:
        ref = task.ref
        if isinstance(ref, Assignment) and ref.spec.container.stop_grace_period_ns is not None:
            return ref.spec.container.stop_grace_period_ns / SECOND
        return self.default_grace

    def _health_poll(self, a: Assignment) -> float:
        """How often to look at a task's health: half its healthcheck interval, 0.2 s to 5 s."""
        check = a.spec.container.healthcheck
        interval = check.interval_ns / SECOND if check and check.interval_ns else 30.0
        if check and check.start_interval_ns:
            interval = min(interval, check.start_interval_ns / SECOND)
        return min(max(interval / 2, 0.2), 5.0)

    def _backoff(self, attempt: int) -> float:
        return min(30.0, 0.5 * 2 ** min(attempt, 6)) * (0.5 + self._rng.random())


def _ended_message(obs: Observation, again: bool, delay: float) -> str:
    if obs.exit_code == 0 and not obs.error:
        text = "finished"
    elif obs.exit_code is not None:
        text = f"exited with code {obs.exit_code}"
    else:
        text = "failed"
    return f"{text}; restarting in {delay:g} s" if again else text


def _failure(obs: Observation) -> str:
    if obs.error:
        return obs.error
    if obs.exit_code is not None:
        return f"task: non-zero exit ({obs.exit_code})"
    return "task: exited"
