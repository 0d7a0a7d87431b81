"""The leader's Home Assistant discovery publisher (opt-in: `swarm update --home-assistant on`).

It keeps the broker's retained discovery entries equal to :func:`homeassistant.documents` of
the store: after a burst of node, service or cluster changes it publishes what differs,
and clears (empty retained payload) every entry of the cluster that should not be there: a
removed node or service, everything when the setting is off, the old prefix's after a change.

What the broker holds is learned, not assumed: every manager subscribes to the cluster's
discovery entries under the configured prefix (`<prefix>/+/shoal_<cluster>/+/config`, moved
by :meth:`DiscoveryPublisher.follow` when the prefix changes), so a new leader knows the
ones an earlier leader left and clears those of objects that are gone. Each message
that arrives wakes the publisher (an entry that differs from the store's is put right), so
nothing waits for "all retained messages have arrived". An idle cluster publishes nothing.
"""

from __future__ import annotations

import logging

from agent.manager.homeassistant import changes, documents
from agent.manager.reconcile.reconciler import EVERYTHING, Reconciler, everything
from agent.manager.store import Cluster, Node, Service, Store
from broker.errors import BrokerError
from broker.session import Session
from broker.topics import DISCOVERY_PREFIX, Topics

__all__ = ["DiscoveryPublisher"]

log = logging.getLogger("shoal.homeassistant")


class DiscoveryPublisher:
    def __init__(
        self,
        store: Store,
        session: Session,
        topics: Topics,
        *,
        debounce: float = 0.5,
        version: str = "",
    ) -> None:
        self.store = store
        self.session = session
        self.topics = topics
        self.version = version
        self.prefix = DISCOVERY_PREFIX  # the one whose entries this manager follows
        self.held: dict[str, bytes] = {}  # what the broker holds, as last heard or published
        self.published = 0  # entries published or cleared by this manager
        # the first pass waits `debounce` too: the retained entries arrive meanwhile
        self.shell: Reconciler[str] = Reconciler(
            store,
            ("node", "service", "cluster"),
            self._reconcile,
            start=everything,
            note=everything,
            debounce=debounce,
        )
        self._running = False

    @property
    def filter(self) -> str:
        return self.topics.discovery_configs(self.prefix)

    def subscribe(self) -> None:
        """On every manager, leader or not: hear the retained entries as they are."""
        self.session.on_raw(self.filter, self.on_entry)
        self.session.on_connect(self._reconnected)

    async def follow(self, prefix: str) -> None:
        """Follow the entries under `prefix` from now on (the cluster's setting changed, or
        the store said which it is). The broker's ACL grants the configured prefix only, so
        what was heard under the old one is forgotten: `swarm update` changes the prefix
        only while discovery is off, when the leader has cleared them."""
        if prefix == self.prefix:
            return
        await self.session.unsubscribe_now(self.filter)
        self.prefix = prefix
        self.held = {t: body for t, body in self.held.items() if t.startswith(f"{prefix}/")}
        await self.session.subscribe_now(self.filter, self.on_entry)
        self._poke()

    def unsubscribe(self) -> None:
        self.session.off(self.filter)

    async def _reconnected(self) -> None:
        # the broker sends every retained entry again after the subscription
        self.held.clear()
        self._poke()

    async def on_entry(self, topic: str, payload: bytes) -> None:
        if not topic.startswith(f"{self.prefix}/"):
            return  # in flight from the prefix followed before
        if payload:
            self.held[topic] = payload
        else:
            self.held.pop(topic, None)
        self._poke()

    def _poke(self) -> None:
        if self._running:
            self.shell.mark((EVERYTHING,))
            self.shell.wake()

    async def run(self) -> None:
        self._running = True
        try:
            await self.shell.run()
        finally:
            self._running = False

    def wanted(self) -> dict[str, bytes]:
        view = self.store.view()
        cluster = view.get(Cluster, "cluster")
        if cluster is None or not cluster.home_assistant:
            return {}
        return documents(
            self.topics,
            cluster.home_assistant_prefix,
            view.list(Node),
            view.list(Service),
            version=self.version,
        )

    async def _reconcile(self, dirty: set[str]) -> bool:
        ok = True
        for topic, payload in changes(self.held, self.wanted()).items():
            try:
                await self.session.publish(topic, payload, retain=True)
            except BrokerError as exc:
                log.warning("could not publish discovery entry %s: %s", topic, exc)
                ok = False  # the whole pass again, after the shell's retry delay
                continue
            self.published += 1
            if payload:
                self.held[topic] = payload
            else:
                self.held.pop(topic, None)
        return ok
