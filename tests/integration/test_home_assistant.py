"""Home Assistant discovery end to end: `swarm update --home-assistant on`, and a client with a
monitoring certificate (what Home Assistant would hold) subscribed to `homeassistant/#` sees
the manager node and a service as devices whose sensors read the right values; removing the
service, then turning discovery off, clears their entries. Against the real mosquitto."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import jinja2
import pytest

from broker.topics import Topics
from tests.harness import Cluster, shoal
from tests.integration.mqtt import Ident, as_client

pytestmark = pytest.mark.integration

Held = dict[str, dict[str, Any]]


def _monitor(c: Cluster, out: Path) -> Ident:
    ident = shoal("cert", "issue", "monitor", "--out", str(out), data=c.manager).stdout
    return Ident(ident.splitlines()[0], out / "cert.pem", out / "key.pem", out / "ca.pem")


class HomeAssistant:
    """What Home Assistant holds from one connection with a monitoring certificate: the
    discovery entries under `homeassistant/#` (a config adds or replaces one, an empty
    payload removes it) and the latest document on every monitoring topic."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.entries: Held = {}
        self.docs: dict[str, Any] = {}

    async def until(self, want: Callable[[HomeAssistant], bool], timeout: float = 30.0) -> None:
        if want(self):
            return
        try:
            async with asyncio.timeout(timeout):
                async for m in self.client.messages:
                    topic, body = m.topic.value, bytes(m.payload)  # type: ignore[arg-type]
                    held = self.entries if topic.startswith("homeassistant/") else self.docs
                    if body:
                        held[topic] = json.loads(body)
                    else:
                        held.pop(topic, None)
                    if want(self):
                        return
        except TimeoutError:
            pass
        raise AssertionError(f"timed out after {timeout} s; entries: {sorted(self.entries)}")

    def values(self, sensors: Held) -> dict[str, str]:
        """Every sensor's value as Home Assistant reads it: its state topic's document
        through its value_template."""
        return {
            key: _render(s["value_template"], self.docs[s["state_topic"]])
            for key, s in sensors.items()
            if s["state_topic"] in self.docs
        }


def _sensors(held: Held, kind: str, ident: str, cluster_id: str) -> Held:
    head = f"shoal_{cluster_id}_{kind}_{ident}_"
    return {
        d["unique_id"][len(head) :]: d for d in held.values() if d["unique_id"].startswith(head)
    }


def _render(template: str, doc: dict[str, Any]) -> str:
    return jinja2.Environment().from_string(template).render(value_json=doc)


def _percent(text: str) -> bool:
    try:
        return 0.0 <= float(text) <= 100.0
    except ValueError:
        return False


def _match(values: dict[str, str], expect: dict[str, Callable[[str], bool]]) -> bool:
    return values.keys() == expect.keys() and all(ok(values[k]) for k, ok in expect.items())


async def test_home_assistant_sees_the_nodes_and_services_and_loses_them_when_removed(
    sampled: Cluster, tmp_path: Path
) -> None:
    c = sampled  # usage every second: the node's usage sensors have a document soon
    info = await asyncio.to_thread(c.info, c.manager)
    cid, mgr = info["cluster_id"], info["node_id"]
    t = Topics(cid)
    mon = await asyncio.to_thread(_monitor, c, tmp_path / "mon")
    await asyncio.to_thread(shoal, "swarm", "update", "--home-assistant", "on", data=c.manager)
    text = (await asyncio.to_thread(shoal, "info", data=c.manager)).stdout
    assert "  Home Assistant Discovery: on (prefix homeassistant)" in text
    await asyncio.to_thread(
        shoal,
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "1",
        "/bin/sleep",
        "600",
        data=c.manager,
    )
    service_id = (
        await asyncio.to_thread(shoal, "service", "inspect", "-f", "{{.ID}}", "web", data=c.manager)
    ).stdout.strip()

    def both(held: Held) -> bool:
        return (
            len(_sensors(held, "node", mgr, cid)) == 7
            and len(_sensors(held, "service", service_id, cid)) == 4
        )

    node_expect: dict[str, Callable[[str], bool]] = {
        "status": lambda v: v == "ready",
        "availability": lambda v: v == "active",
        "role": lambda v: v == "manager",
        "cpu": _percent,  # "None" until the node's second sample
        "memory": _percent,
        "disk": _percent,
        "tasks": lambda v: v == "2",
    }

    def service_expect(replicas: int) -> dict[str, Callable[[str], bool]]:
        return {
            "running": lambda v: v == str(replicas),
            "desired": lambda v: v == str(replicas),
            "image": lambda v: v == "/bin/sleep",
            "update": lambda v: v == "none",
        }

    async with as_client(mon, c.port) as client:
        await client.subscribe("homeassistant/#", qos=1)
        await client.subscribe(t.base + "/mon/#", qos=1)
        ha = HomeAssistant(client)
        await ha.until(lambda ha: both(ha.entries))
        assert all(topic.startswith(f"homeassistant/sensor/shoal_{cid}/") for topic in ha.entries)
        node = _sensors(ha.entries, "node", mgr, cid)
        service = _sensors(ha.entries, "service", service_id, cid)
        assert node["status"]["device"]["name"] == "mgr"
        assert node["cpu"]["availability_topic"] == t.mon("node", mgr)
        assert service["running"]["device"]["name"] == "web"
        assert {s["state_topic"] for s in service.values()} == {t.mon("service", service_id)}
        online = {s["availability_template"] for s in node.values() if "availability_topic" in s}
        await ha.until(lambda ha: t.mon("node", mgr) in ha.docs)
        assert [_render(tmpl, ha.docs[t.mon("node", mgr)]) for tmpl in online] == ["online"]

        await ha.until(lambda ha: _match(ha.values(service), service_expect(1)))
        await asyncio.to_thread(shoal, "service", "scale", "--detach", "web=2", data=c.manager)
        await ha.until(lambda ha: _match(ha.values(service), service_expect(2)))
        await ha.until(lambda ha: _match(ha.values(node), node_expect))
        assert ha.values(service)["running"] == "2"
        assert ha.values(node)["tasks"] == "2"

        # the service goes: its device goes, the node stays
        await asyncio.to_thread(shoal, "service", "rm", "web", data=c.manager)
        await ha.until(lambda ha: not _sensors(ha.entries, "service", service_id, cid))
        assert set(_sensors(ha.entries, "node", mgr, cid)) == set(node)
        assert len(ha.entries) == 7

        # discovery off: every entry is cleared, and Home Assistant hears it
        await asyncio.to_thread(shoal, "swarm", "update", "--home-assistant", "off", data=c.manager)
        await ha.until(lambda ha: not ha.entries)
    # nothing is left retained either: a new subscriber gets no entry before the retained
    # document of the topic it subscribed to next
    async with as_client(mon, c.port) as client:
        await client.subscribe(t.discovery_configs("homeassistant"), qos=1)
        await client.subscribe(t.mon("node", mgr), qos=1)
        async with asyncio.timeout(10):
            async for m in client.messages:
                assert m.topic.value == t.mon("node", mgr), m.topic.value
                break
