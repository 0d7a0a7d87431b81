"""Retained JSON for people and any MQTT client: ``mon/service/<id>`` for every service
(replicas running/desired, image, update status, its live tasks), cleared when it is removed."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from agent.manager.control.views import service_row, task_row
from agent.manager.orchestrator import live
from agent.manager.store import Commit, Event, Node, Service, Store, Task
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
        self.debounce = debounce
        self._dirty: set[str] = set()

    async def run(self) -> None:
        self._dirty.update(s.id for s in self.store.view().list(Service))
        async with self.store.watch("service", "task") as q:
            while True:
                if self._dirty:
                    await self._publish()
                self._note(await q.get())
                await asyncio.sleep(self.debounce)  # one publication per burst of changes
                while not q.empty():
                    self._note(q.get_nowait())

    def _note(self, ev: Event | Commit) -> None:
        if isinstance(ev, Commit):
            return
        for obj in (ev.old, ev.new):
            if isinstance(obj, Service):
                self._dirty.add(obj.id)
            elif isinstance(obj, Task):
                self._dirty.add(obj.service_id)

    async def _publish(self) -> None:
        dirty, self._dirty = self._dirty, set()
        view = self.store.view()
        nodes = {n.id: n for n in view.list(Node)}
        tasks = [t for t in view.list(Task) if t.service_id in dirty]
        now = time.time()
        for service_id in sorted(dirty):
            service = view.get(Service, service_id)
            payload = b""
            if service is not None:
                mine = [t for t in tasks if t.service_id == service_id]
                doc = service_row(service, mine, nodes)
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
                self._dirty.add(service_id)
