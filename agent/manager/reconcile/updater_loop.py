"""The updater's loop: on the leader, after each commit that touches services or tasks and
when a step asks to be woken, every service whose update (or rollback) is under way takes its
next step by :func:`agent.manager.reconcile.updater.plan_update`, and the step is written to the
store.

It keeps, per service, when the last batch started and, per service and spec version, the new
tasks that failed within their monitor period and those seen through it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from agent.manager.reconcile.reconciler import EVERYTHING, Reconciler, everything
from agent.manager.reconcile.updater import UPDATING, UpdatePlan, plan_update, start_update
from agent.manager.store import WRITE_ERRORS, Node, Service, Store, Task, Tx
from agent.model import DesiredState

__all__ = ["UpdaterLoop"]

log = logging.getLogger("shoal.updater")


class UpdaterLoop:
    """Runs on the leader: drives every service whose update is under way."""

    def __init__(self, store: Store, *, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self._last_batch: dict[str, float] = {}
        self._failures: dict[tuple[str, int], set[str]] = {}
        self._passed: dict[tuple[str, int], set[str]] = {}
        self.shell: Reconciler[str] = Reconciler(
            store,
            ("service", "task"),
            self._step,
            start=everything,
            note=everything,
            clock=clock,
        )

    async def run(self) -> None:
        await self.shell.run()

    def _wake_at(self, when: float) -> None:
        self.shell.wake_at(EVERYTHING, when)  # one timer: a later time replaces an earlier one

    async def _step(self, _dirty: set[str]) -> bool:
        view = self.store.view()
        services = [
            s
            for s in view.list(Service)
            if s.update_status is not None and s.update_status.state in UPDATING
        ]
        if not services:
            return True
        ids = {s.id for s in services}
        tasks = [t for t in view.list(Task) if t.service_id in ids]
        nodes = {n.id: n for n in view.list(Node)}
        now = self.clock()
        wake: float | None = None
        for service in services:
            key = (service.id, service.spec_version)
            failures = self._failures.setdefault(key, set())
            plan = plan_update(
                service,
                tasks,
                nodes,
                now,
                last_batch_at=self._last_batch.get(service.id, 0.0),
                failures=failures,
                passed=self._passed.setdefault(key, set()),
            )
            if plan.wake_at is not None:
                wake = plan.wake_at if wake is None else min(wake, plan.wake_at)
            if not (plan.put or plan.status or plan.rollback):
                continue
            if await self._apply(service, plan, now) and plan.batch_started:
                self._last_batch[service.id] = now
        if wake is not None:
            self._wake_at(wake)
        return True

    async def _apply(self, service: Service, plan: UpdatePlan, now: float) -> bool:
        def write(tx: Tx) -> None:
            current = tx.get(Service, service.id)
            if current is None or current.spec_version != service.spec_version:
                return  # changed meanwhile: the next step sees the new state
            if plan.rollback:
                if current.previous_spec is None:
                    return  # nothing to go back to (plan_update asks only when there is)
                back = start_update(current, current.previous_spec, now, rollback=True)
                status = back.update_status
                assert status is not None
                back = dataclasses.replace(
                    back,
                    update_status=dataclasses.replace(
                        status, message=plan.reason, reason=plan.reason
                    ),
                )
                tx.put(back)
                log.info("service %s: update failed, rolling back", current.name)
                return
            if plan.status is not None:
                tx.put(dataclasses.replace(current, update_status=plan.status))
                log.info("service %s: %s", current.name, plan.status.message)
            for t in plan.put:
                existing = tx.get(Task, t.id)
                if existing is None:
                    tx.put(t)
                elif existing.desired_state == DesiredState.RUNNING:
                    tx.put(
                        dataclasses.replace(
                            existing, desired_state=t.desired_state, updated=t.updated
                        )
                    )

        try:
            await self.store.update(write)
        except WRITE_ERRORS as exc:
            log.warning("could not write the update of service %s: %s", service.name, exc)
            self._wake_at(self.clock() + 0.5)
            return False
        return True
