"""The leader's Home Assistant discovery publisher and the setting that turns it on, against
an in-memory store and a fake session that holds retained messages as a broker does."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest

from agent.manager.homeassistant_loop import DiscoveryPublisher
from agent.manager.store import Cluster, Node, NodeRole, Service, Store, Tx
from agent.manager.swarm import Swarm
from agent.model.errors import ShoalError
from broker.errors import BrokerError
from broker.topics import Topics
from tests.manager.test_system import Log
from tests.store.store_values import service_spec

T = Topics("c1")


class FakeBroker:
    """Retains what is published and hands every message to the subscribers, like mosquitto."""

    def __init__(self) -> None:
        self.retained: dict[str, bytes] = {}
        self.sent: list[tuple[str, bytes]] = []
        self.handlers: list[Any] = []
        self.fail = False
        self.changed = asyncio.Event()

    def on_raw(self, topic_filter: str, handler: Any, qos: int = 1) -> None:
        self.handlers.append(handler)

    def on_connect(self, callback: Any) -> None:
        pass

    def off(self, *filters: str) -> None:
        self.handlers.clear()

    async def subscribe_now(self, topic_filter: str, handler: Any, qos: int = 1) -> None:
        self.handlers.append(handler)

    async def unsubscribe_now(self, topic_filter: str) -> None:
        self.handlers.clear()

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if self.fail:
            raise BrokerError("not connected")
        self.sent.append((topic, payload))
        if payload:
            self.retained[topic] = payload
        else:
            self.retained.pop(topic, None)
        self.changed.set()
        for handler in self.handlers:
            await handler(topic, payload)


async def _store(*objs: Any) -> Store:
    s = Store()
    s.proposer = Log(s)  # type: ignore[assignment]

    def put(tx: Tx) -> None:
        for o in objs:
            tx.put(o)

    await s.update(put)
    return s


def _cluster(**kw: Any) -> Cluster:
    return Cluster(id="cluster", cluster_id="c1", **kw)


NODE = Node(id="n1", hostname="pi", role=NodeRole.MANAGER)
WEB = Service(id="s1", name="web", spec=service_spec("web"))


def _publisher(store: Store, broker: FakeBroker) -> DiscoveryPublisher:
    p = DiscoveryPublisher(store, broker, T, version="x")  # type: ignore[arg-type]
    p.subscribe()
    return p


async def test_with_discovery_on_every_node_and_service_gets_its_entries() -> None:
    store, broker = await _store(_cluster(home_assistant=True), NODE, WEB), FakeBroker()
    p = _publisher(store, broker)
    assert await p._reconcile(set())
    assert len(broker.retained) == 7 + 4
    assert all(t.startswith("homeassistant/sensor/shoal_c1/") for t in broker.retained)
    doc = json.loads(broker.retained["homeassistant/sensor/shoal_c1/service_s1_running/config"])
    assert doc["state_topic"] == "shoal/c1/mon/service/s1"


async def test_an_idle_cluster_publishes_nothing() -> None:
    store, broker = await _store(_cluster(home_assistant=True), NODE, WEB), FakeBroker()
    p = _publisher(store, broker)
    await p._reconcile(set())
    broker.sent.clear()
    assert await p._reconcile(set())
    assert broker.sent == []


async def test_discovery_off_publishes_nothing_and_clears_what_is_there() -> None:
    store, broker = await _store(_cluster(), NODE, WEB), FakeBroker()
    p = _publisher(store, broker)
    await p._reconcile(set())
    assert broker.sent == []
    await store.update(lambda tx: tx.put(_cluster(home_assistant=True)))
    await p._reconcile(set())
    assert broker.retained
    await store.update(lambda tx: tx.put(_cluster(home_assistant=False)))
    await p._reconcile(set())
    assert broker.retained == {}


async def test_a_new_leader_clears_what_an_old_one_left_for_objects_that_are_gone() -> None:
    store, broker = await _store(_cluster(home_assistant=True), NODE), FakeBroker()
    stale = {
        "homeassistant/sensor/shoal_c1/service_gone_running/config": b"{}",
        "homeassistant/sensor/shoal_c1/node_gone_cpu/config": b"{}",
    }
    broker.retained.update(stale)
    p = _publisher(store, broker)
    for topic, body in stale.items():  # the retained entries, as the subscription hears them
        await p.on_entry(topic, body)
    await p._reconcile(set())
    assert not set(stale) & set(broker.retained)
    assert len(broker.retained) == 7


async def test_a_removed_service_has_its_entries_cleared() -> None:
    store, broker = await _store(_cluster(home_assistant=True), NODE, WEB), FakeBroker()
    p = _publisher(store, broker)
    await p._reconcile(set())
    await store.update(lambda tx: tx.delete(Service, "s1"))
    await p._reconcile(set())
    assert not any("service_s1" in t for t in broker.retained)
    assert len(broker.retained) == 7


async def test_a_new_prefix_is_followed_and_what_the_old_one_held_is_forgotten() -> None:
    store, broker = await _store(_cluster(), NODE), FakeBroker()
    p = _publisher(store, broker)
    await p.on_entry("homeassistant/sensor/shoal_c1/node_n1_cpu/config", b"{}")
    await store.update(lambda tx: tx.put(_cluster(home_assistant_prefix="ha2")))
    await p.follow("ha2")
    assert p.filter == "ha2/+/shoal_c1/+/config" and p.held == {}
    await p.on_entry("homeassistant/sensor/shoal_c1/node_n1_cpu/config", b"{}")  # in flight
    assert p.held == {}
    await store.update(
        lambda tx: tx.put(_cluster(home_assistant=True, home_assistant_prefix="ha2"))
    )
    await p._reconcile(set())
    assert len(broker.retained) == 7 and all(t.startswith("ha2/") for t in broker.retained)


async def test_a_failed_publish_asks_for_the_pass_again() -> None:
    store, broker = await _store(_cluster(home_assistant=True), NODE), FakeBroker()
    p = _publisher(store, broker)
    broker.fail = True
    assert not await p._reconcile(set())
    broker.fail = False
    assert await p._reconcile(set())
    assert len(broker.retained) == 7


async def test_the_running_publisher_follows_the_store_after_each_burst() -> None:
    store, broker = await _store(_cluster(home_assistant=True), NODE), FakeBroker()
    p = DiscoveryPublisher(store, broker, T, version="x", debounce=0.01)  # type: ignore[arg-type]
    p.subscribe()
    task = asyncio.create_task(p.run())
    try:
        await _until(broker, lambda: len(broker.retained) == 7)
        await store.update(lambda tx: tx.put(WEB))
        await _until(broker, lambda: len(broker.retained) == 11)
        # an entry that differs from the store's (someone wrote it) is put right
        topic = "homeassistant/sensor/shoal_c1/node_n1_cpu/config"
        right = broker.retained[topic]
        await broker.publish(topic, b"forged", retain=True)
        await _until(broker, lambda: broker.retained[topic] == right)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(broker: FakeBroker, predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            broker.changed.clear()
            await broker.changed.wait()


# the setting ----------------------------------------------------------------------------
async def test_swarm_update_turns_discovery_on_and_off_and_sets_the_prefix() -> None:
    store = await _store(_cluster())
    swarm = Swarm(store=store, join_address="h:1")
    await swarm.update({"home_assistant": True})
    c = store.view().get(Cluster, "cluster")
    assert c is not None and (c.home_assistant, c.home_assistant_prefix) == (True, "homeassistant")
    with pytest.raises(ShoalError, match="turn it off first"):
        await swarm.update({"home_assistant_prefix": "ha-2"})
    await swarm.update({"home_assistant": False})
    with pytest.raises(ShoalError, match="set the new prefix first"):
        await swarm.update({"home_assistant": True, "home_assistant_prefix": "ha-2"})
    await swarm.update({"home_assistant_prefix": "ha-2"})
    c = store.view().get(Cluster, "cluster")
    assert c is not None and (c.home_assistant, c.home_assistant_prefix) == (False, "ha-2")
    await swarm.update({"home_assistant": True, "home_assistant_prefix": "ha-2"})  # the same
    c = store.view().get(Cluster, "cluster")
    assert c is not None and (c.home_assistant, c.home_assistant_prefix) == (True, "ha-2")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"home_assistant": "yes"}, "--home-assistant must be on or off"),
        ({"home_assistant_prefix": "home assistant"}, "--home-assistant-prefix: discovery prefix"),
        ({"home_assistant_prefix": "a/b"}, "one level of [A-Za-z0-9_-]"),
        ({}, "--home-assistant on|off"),
    ],
)
async def test_swarm_update_refuses_bad_discovery_settings(
    args: dict[str, Any], error: str
) -> None:
    store = await _store(_cluster())
    with pytest.raises(ShoalError) as exc:
        await Swarm(store=store, join_address="h:1").update(args)
    assert error in str(exc.value)
    assert store.view().get(Cluster, "cluster") == _cluster()
