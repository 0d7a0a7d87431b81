"""The orchestrator's loop: on the leader, every service whose service, tasks or nodes changed
is planned again by :func:`agent.manager.reconcile.orchestrator.plan_service` after each commit,
and again when a plan asks to be woken; the plans are written to the store.

A plan that says ``more`` (its batch of new tasks was full) is planned again on the next pass;
a plan that could not be written is tried again shortly. A change in the leader's view of the
fleet (its session to the broker, its leadership) plans every service again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Callable

from agent.manager.reconcile.orchestrator import Plan, plan_service
from agent.manager.reconcile.outage import FleetWatch, OutageRule
from agent.manager.reconcile.reconciler import Reconciler
from agent.manager.store import (
    WRITE_ERRORS,
    Cluster,
    Event,
    Node,
    Service,
    Store,
    Task,
    Tx,
    View,
)

__all__ = ["OrchestratorLoop"]

log = logging.getLogger("shoal.orchestrator")


def _with_tasks(view: View) -> set[str]:
    """Every service, and every service that still has tasks (a removed one's are cleaned up)."""
    return {s.id for s in view.list(Service)} | {t.service_id for t in view.list(Task)}


class OrchestratorLoop:
    """Runs on the leader: reconciles every service whose service, tasks or nodes changed,
    after each commit, and again when a plan asks to be woken."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float],
        fleet: FleetWatch | None = None,
        leader_id: str = "",
    ) -> None:
        self.store = store
        self.clock = clock
        self.fleet = fleet
        self.leader_id = leader_id
        self.shell: Reconciler[str] = Reconciler(
            store,
            ("service", "task", "node"),
            self._reconcile,
            start=_with_tasks,
            note=self._note,
            clock=clock,
        )

    async def run(self) -> None:
        if self.fleet is not None:
            self.fleet.listener = self._everything_dirty
        try:
            await self.shell.run()
        finally:
            if self.fleet is not None:
                self.fleet.listener = None

    def _note(self, ev: Event) -> set[str]:
        if ev.kind == "service":
            return {ev.id}
        if ev.kind == "task":
            return {obj.service_id for obj in (ev.old, ev.new) if isinstance(obj, Task)}
        if ev.kind == "node":
            old, new = ev.old, ev.new
            if (
                not isinstance(old, Node)
                or not isinstance(new, Node)
                or (old.status, old.availability, old.labels, old.role, old.description)
                != (new.status, new.availability, new.labels, new.role, new.description)
            ):
                return _with_tasks(self.store.view())
        return set()

    def _everything_dirty(self) -> None:
        """The leader's view of the fleet changed (its session, its leadership): look again."""
        self.shell.mark(_with_tasks(self.store.view()))
        self.shell.wake()

    async def _reconcile(self, dirty: set[str]) -> bool:
        view = self.store.view()
        cluster = view.get(Cluster, "cluster")
        history = cluster.task_history_limit if cluster is not None else 5
        nodes = {n.id: n for n in view.list(Node)}
        rule = OutageRule(grace=float(cluster.node_grace_s if cluster is not None else 30))
        hold = self.fleet.hold(self.leader_id, rule) if self.fleet is not None else None
        tasks: dict[str, list[Task]] = defaultdict(list)
        for t in view.list(Task):
            if t.service_id in dirty:
                tasks[t.service_id].append(t)
        for service_id in sorted(dirty):
            service = view.get(Service, service_id)
            plan = plan_service(
                service, tasks.get(service_id, []), nodes, self.clock(), history=history, hold=hold
            )
            if plan.wake_at is not None:
                self.shell.wake_at(service_id, plan.wake_at)
            if (plan.put or plan.delete) and not await self._apply(plan):
                self.shell.wake_at(service_id, self.clock() + 0.5)  # try again shortly
            elif plan.more:
                self.shell.mark((service_id,))  # the next pass creates the next batch
                self.shell.wake()
        return True

    async def _apply(self, plan: Plan) -> bool:
        def write(tx: Tx) -> None:
            for t in plan.put:
                current = tx.get(Task, t.id)
                if current is None:
                    tx.put(t)
                elif current.desired_state != t.desired_state:
                    tx.put(
                        dataclasses.replace(
                            current, desired_state=t.desired_state, updated=t.updated
                        )
                    )
            for ident in plan.delete:
                if tx.get(Task, ident) is not None:
                    tx.delete(Task, ident)

        try:
            await self.store.update(write)
        except WRITE_ERRORS as exc:
            log.warning("could not write the orchestrator's changes: %s", exc)
            return False
        return True
