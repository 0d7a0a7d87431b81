"""The scheduler's loop: on the leader, pending tasks get a node as soon as one fits.

After every commit that touches tasks or nodes, every pending task goes through the pure
:func:`agent.manager.reconcile.scheduler.schedule`; placed tasks are written as assigned to their
node (their message names any node avoided for the service's recent rejections), and tasks that
fit nowhere keep pending with the scheduler's explanation as their message.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from agent.manager.reconcile.allocator_loop import needs_addresses, stored_allocation
from agent.manager.reconcile.reconciler import Reconciler, everything
from agent.manager.reconcile.scheduler import schedule
from agent.manager.store import WRITE_ERRORS, Node, Store, Task, Tx, set_by_manager
from agent.model import DesiredState, TaskState
from agent.model.stamps import stamp_of

__all__ = ["SchedulerLoop"]

log = logging.getLogger("shoal.scheduler")


class SchedulerLoop:
    def __init__(
        self, store: Store, *, clock: Callable[[], float] = time.time, chunk: int = 2000
    ) -> None:
        self.store = store
        self.clock = clock
        self.chunk = chunk
        self.placed = 0
        self.shell: Reconciler[str] = Reconciler(
            store,
            ("task", "node", "allocation"),
            lambda _dirty: self._pass(),
            start=everything,
            note=everything,
            clock=clock,
        )

    async def run(self) -> None:
        await self.shell.run()

    async def _pass(self) -> bool:
        view = self.store.view()
        tasks = view.list(Task)
        pending = [
            t
            for t in tasks
            if not t.node_id
            and t.desired_state == DesiredState.RUNNING
            and (t.status is None or t.status.state in _UNPLACED)
        ]
        if not pending:
            return True
        waiting: dict[str, str] = {}  # placed once the allocator gave them their addresses
        if any(needs_addresses(t) for t in pending):
            allocation = stored_allocation(view)
            for t in pending:
                if needs_addresses(t) and t.id not in allocation.addresses:
                    problems = allocation.errors.get(t.service_id)
                    waiting[t.id] = (
                        "network allocation failed: " + "; ".join(problems)
                        if problems
                        else "waiting for network addresses"
                    )
            pending = [t for t in pending if t.id not in waiting]
        now = self.clock()
        decisions = schedule(pending, view.list(Node), tasks, now)
        by_id = {t.id: t for t in pending}
        changes: list[tuple[str, str, str]] = []  # task id, node id, message
        for t in tasks:
            why = waiting.get(t.id)
            if why is not None and _message(t) != why:
                changes.append((t.id, "", why))
        for task_id, node_id in decisions.assigned.items():
            note = decisions.notes.get(task_id)
            changes.append((task_id, node_id, f"assigned; {note}" if note else "assigned"))
        for task_id, why in decisions.unplaced.items():
            if _message(by_id[task_id]) != why:
                changes.append((task_id, "", why))
        for i in range(0, len(changes), self.chunk):
            part = changes[i : i + self.chunk]

            def write(tx: Tx, part: list[tuple[str, str, str]] = part) -> None:
                _write(tx, part, now)

            try:
                await self.store.update(write)
            except WRITE_ERRORS as exc:
                log.warning("could not record placements (will retry): %s", exc)
                return False
        placed = len(decisions.assigned)
        self.placed += placed
        if placed:
            log.debug("placed %d tasks", placed)
        return True


def _write(tx: Tx, changes: list[tuple[str, str, str]], now: float) -> None:
    stamp = stamp_of(now)
    for task_id, node_id, message in changes:
        t = tx.get(Task, task_id)
        if t is None or t.node_id or t.desired_state != DesiredState.RUNNING:
            continue
        state = TaskState.ASSIGNED if node_id else TaskState.PENDING
        status = set_by_manager(state, message, now)
        tx.put(dataclasses.replace(t, node_id=node_id, status=status, updated=stamp))


_UNPLACED = (TaskState.NEW, TaskState.PENDING)


def _message(task: Task) -> str | None:
    return None if task.status is None else task.status.message
