"""The allocator's loop: on the leader, addresses, VIPs and published ports for what the store
holds, and every node's routing table published to it.

After every commit that touches what networking depends on (services, networks, nodes, tasks
of services that have networks or publish ports), :func:`agent.manager.reconcile.allocator.allocate`
runs on the previous allocation, kept in the store as one ``NetworkAllocation`` object so that
a new leader hands out nothing twice. Then :func:`agent.manager.reconcile.routes.tables_for`
computes each ready node's table, and the tables that changed are published, retained, on
``node/<id>/net`` (each node may read only its own). A node that is not ready gets its table
when it is again; a node that leaves the store has its retained table cleared.

The scheduler places a task that needs addresses only once this allocation holds them
(:func:`needs_addresses`), so a node always finds a task's addresses in its table by the time
it is told to start it.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.manager.reconcile.allocation import Allocation, AllocationError
from agent.manager.reconcile.allocator import allocate
from agent.manager.reconcile.reconciler import Reconciler, everything
from agent.manager.reconcile.routes import tables_for
from agent.manager.store import (
    WRITE_ERRORS,
    Event,
    Network,
    NetworkAllocation,
    Node,
    NodeStatus,
    Service,
    Store,
    Task,
    Tx,
    View,
)
from broker.errors import BrokerError
from broker.session import Session
from broker.topics import Topics

__all__ = ["ALLOCATION_ID", "AllocatorLoop", "needs_addresses", "stored_allocation"]

log = logging.getLogger("shoal.allocator")

ALLOCATION_ID = "cluster"


def needs_addresses(task: Task) -> bool:
    """Whether the task joins a network: its spec names one, or it publishes a port in ingress
    mode (its service joins the routing mesh's network)."""
    if task.spec.networks:
        return True
    return any(p.publish_mode == "ingress" for p in task.endpoint.ports)


def stored_allocation(view: View) -> Allocation:
    record = view.get(NetworkAllocation, ALLOCATION_ID)
    if record is None:
        return Allocation()
    try:
        return Allocation.from_dict(record.data)
    except AllocationError as exc:
        log.error("the stored allocation is malformed (%s); allocating afresh", exc)
        return Allocation()


def _networked(view: View) -> tuple[list[Service], list[Task]]:
    """The services that join a network or publish a port, and their tasks: all that
    networking depends on (the others, often nearly all of a fleet's, are left out)."""
    services = []
    for s in view.list(Service):
        if s.spec.task_template.networks or s.spec.endpoint_spec.ports:
            services.append(s)
    wanted = {s.id for s in services}
    return services, [t for t in view.list(Task) if t.service_id in wanted]


class AllocatorLoop:
    def __init__(
        self, store: Store, session: Session, topics: Topics, *, debounce: float = 0.02
    ) -> None:
        self.store = store
        self.session = session
        self.topics = topics
        self.passes = 0
        self.published = 0
        self._sent: dict[str, str] = {}  # node id -> version of the table it was sent
        self._errors: dict[str, tuple[str, ...]] = {}
        self.shell: Reconciler[str] = Reconciler(
            store,
            ("task", "service", "network", "node", "allocation"),
            lambda _dirty: self._pass(),
            start=everything,
            note=lambda event: everything(event) if _relevant(event) else (),
            debounce=debounce,
        )

    async def run(self) -> None:
        await self.shell.run()

    async def _pass(self) -> bool:
        self.passes += 1
        view = self.store.view()
        allocation = self._allocate(view)
        if allocation.to_dict() != stored_allocation(view).to_dict():
            try:
                await self.store.update(lambda tx: _write(tx, allocation))
            except WRITE_ERRORS as exc:
                log.warning("could not record the allocation (will retry): %s", exc)
                return False
            view = self.store.view()
            allocation = stored_allocation(view)
        for ident, problems in allocation.errors.items():
            if self._errors.get(ident) != problems:
                log.warning("allocation of %s: %s", ident, "; ".join(problems))
        self._errors = dict(allocation.errors)
        return await self._publish(view, allocation)

    def _allocate(self, view: View) -> Allocation:
        services, tasks = _networked(view)
        nodes = [n.id for n in view.list(Node)]
        return allocate(stored_allocation(view), view.list(Network), services, tasks, nodes)

    async def _publish(self, view: View, allocation: Allocation) -> bool:
        services, tasks = _networked(view)
        nodes = view.list(Node)
        ready = [
            n.id for n in nodes if n.status == NodeStatus.READY
        ]  # the others get theirs when back
        tables = tables_for(ready, allocation, view.list(Network), services, tasks, nodes)
        ok = True
        for node_id, table in tables.items():
            if self._sent.get(node_id) == table["version"]:
                continue
            ok = await self._send(node_id, table) and ok
        present = {n.id for n in nodes}
        for node_id in [n for n in self._sent if n not in present]:
            try:
                await self.session.publish(self.topics.node_net(node_id), b"", retain=True)
                del self._sent[node_id]
            except BrokerError as exc:
                log.warning("could not clear the routing table of node %s: %s", node_id, exc)
                ok = False
        return ok

    async def _send(self, node_id: str, table: dict[str, Any]) -> bool:
        try:
            await self.session.send(self.topics.node_net(node_id), "net", table, retain=True)
        except BrokerError as exc:
            log.warning("could not send node %s its routing table: %s", node_id, exc)
            return False
        self._sent[node_id] = table["version"]
        self.published += 1
        return True


def _relevant(event: Event) -> bool:
    if event.kind in ("service", "network", "allocation"):
        return True
    if event.kind == "task":
        return any(isinstance(t, Task) and (needs_addresses(t)) for t in (event.old, event.new))
    if event.kind == "node":
        old, new = event.old, event.new
        if not isinstance(old, Node) or not isinstance(new, Node):
            return True  # a node came or went
        return (old.status, old.description, old.hostname) != (
            new.status,
            new.description,
            new.hostname,
        )
    return False


def _write(tx: Tx, allocation: Allocation) -> None:
    tx.put(NetworkAllocation(id=ALLOCATION_ID, data=allocation.to_dict()))
