"""Retained JSON for people and any MQTT client: ``mon/service/<id>`` for every service
(replicas running/desired, image, update status, its live tasks), cleared when it is removed."""

from __future__ import annotations

import json
import logging
import time

from agent.manager.control.views import service_row, task_row
from agent.manager.reconcile.allocator_loop import stored_allocation
from agent.manager.reconcile.orchestrator import live
from agent.manager.reconcile.reconciler import Reconciler
from agent.manager.store import Event, Node, Service, Store, Task
from broker.errors import BrokerError
from broker.session import Session
from broker.topics import Topics

__all__ = ["Monitor"]

log = logging.getLogger("shoal.monitor")


_TASK_KEYS = ("id", "name", "node", "desired_state", "state", "message", "error")


class Monitor:
    def __init__(
        self, store: Store, session: Session, topics: Topics, *, debounce: float = 0.2
    ) -> None:
        self.store = store
        self.session = session
        self.topics = topics
        # one publication per burst of changes; every service's at once when it starts
        self.shell: Reconciler[str] = Reconciler(
            store,
            ("service", "task"),
            self._publish,
            start=lambda view: [s.id for s in view.list(Service)],
            note=_services,
            debounce=debounce,
            first_at_once=True,
        )

    async def run(self) -> None:
        await self.shell.run()

    async def _publish(self, dirty: set[str]) -> bool:
        view = self.store.view()
        nodes = {n.id: n for n in view.list(Node)}
        tasks = [t for t in view.list(Task) if t.service_id in dirty]
        now = time.time()
        ports = stored_allocation(view).ports
        for service_id in sorted(dirty):
            service = view.get(Service, service_id)
            payload = b""
            if service is not None:
                mine = [t for t in tasks if t.service_id == service_id]
                doc = service_row(service, mine, nodes, ports.get(service_id, ()))
                doc["tasks"] = [
                    {
                        k: row[k]
                        for k in (
                            "id",
                            "name",
                            "node",
                            "desired_state",
                            "state",
                            "message",
                            "error",
                        )
                    }
                    for row in (task_row(t, service, nodes, now) for t in mine if live(t))
                ]
                payload = json.dumps(doc).encode()
            try:
                await self.session.publish(
                    self.topics.mon("service", service_id), payload, retain=True
                )
            except BrokerError as exc:
                log.warning("could not publish service %s: %s", service_id, exc)
                self.shell.mark((service_id,))  # again after the next change
        return True


def _services(ev: Event) -> set[str]:
    out = set()
    for obj in (ev.old, ev.new):
        if isinstance(obj, Service):
            out.add(obj.id)
        elif isinstance(obj, Task):
            out.add(obj.service_id)
    return out
