"""The broker's files kept in step with the store: the broker host rewrites its ACL and CRL
from the nodes, clients and revocations and announces the store index it has applied on
``mon/broker``; every manager follows that announcement, so the leader can wait for it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from agent.manager.broker_host import BrokerHost
from agent.manager.cluster import cluster_ca
from agent.manager.nats_host import NatsHost
from agent.manager.store import Client, ClientRole, Cluster, Node, NodeRole, Store
from broker.errors import BrokerError
from broker.session import Session
from broker.topics import Topics

__all__ = ["BrokerSync"]

log = logging.getLogger("shoal.manager")


class BrokerSync:
    def __init__(
        self,
        *,
        node_id: str,
        store: Store,
        session: Session,
        topics: Topics,
        broker_host: BrokerHost | NatsHost | None,
        reload_broker: Callable[[], None] | None,
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.session = session
        self.topics = topics
        self.broker_host = broker_host
        self.reload_broker = reload_broker
        self.relogin: Callable[[str], Awaitable[None]] | None = None
        """Makes an identity's live session log in again (Revocation.take_over)."""
        self._relogins: set[asyncio.Task[None]] = set()
        self.synced = 0  # the store index the broker host last said it applied
        self.host_id: str | None = None  # the broker host, as it last said
        self._synced = asyncio.Event()

    def sync(self) -> None:
        """Rewrite the broker's ACL and CRL from the store and reload it (broker host only)."""
        if self.broker_host is None:
            return
        view = self.store.view()
        cluster = view.get(Cluster, "cluster")
        if cluster is None:
            return
        nodes = view.list(Node)
        managers = [n.id for n in nodes if n.role == NodeRole.MANAGER]
        clients = view.list(Client)
        revoked = [(int(s), datetime.fromisoformat(t)) for s, t in sorted(cluster.revoked.items())]
        identities = [n.id for n in nodes] + [c.id for c in clients]
        changed = self.broker_host.sync_from(
            cluster_ca(self.store),
            managers=managers,
            nodes=[n.id for n in nodes if n.role != NodeRole.MANAGER],
            admins=[c.id for c in clients if c.role == ClientRole.ADMIN],
            monitors=[c.id for c in clients if c.role == ClientRole.MONITOR],
            revoked=revoked,
            discovery_prefix=cluster.home_assistant_prefix,
        )
        if self.reload_broker is not None and changed is not False:
            self.reload_broker()
            if getattr(self.broker_host, "reload_stops_deliveries", False):
                task = asyncio.get_running_loop().create_task(self._log_in_again(identities))
                self._relogins.add(task)
                task.add_done_callback(self._relogins.discard)
        self.synced = self.store.applied
        asyncio.get_running_loop().create_task(self._announce(self.store.applied))

    async def _log_in_again(self, identities: list[str]) -> None:
        """After a reload that stops deliveries to the sessions it keeps: this node's own
        session reconnects, every other identity's is taken over (it then reconnects)."""
        before = self.session.connects
        self.session.reconnect()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while self.session.connects == before and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        others = [i for i in identities if i != self.node_id]
        if self.relogin is not None and others:
            await asyncio.gather(*(self.relogin(i) for i in others), return_exceptions=True)

    async def settled(self) -> None:
        """Wait until this node's session has logged in again after a reload (if one ran):
        an answer sent before would be lost to a session that no longer receives."""
        for task in list(self._relogins):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), 15)

    async def _announce(self, index: int) -> None:
        doc = json.dumps({"host": self.node_id, "synced_index": index}).encode()
        with contextlib.suppress(BrokerError):
            await self.session.publish(self.topics.mon("broker"), doc, retain=True)

    async def on_announced(self, topic: str, payload: bytes) -> None:
        try:
            doc = json.loads(payload)
            index = int(doc["synced_index"])
            self.host_id = str(doc["host"])
        except (ValueError, KeyError, TypeError, OverflowError):
            return
        self.synced = max(self.synced, index)
        self._synced.set()

    async def wait(self, index: int, timeout: float = 5.0) -> None:
        """Wait until the broker host has applied the store up to `index` to its ACL/CRL."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.synced < index:
            self._synced.clear()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.warning("the broker host has not reloaded its CRL within %g s", timeout)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._synced.wait(), left)
