"""Cluster events on a real cluster (one manager, the process driver): `shoal events` over a
time range, the leader's events on ``mon/events`` as a monitoring certificate reads them with
an ordinary MQTT client, and the broker keeping every node off that topic."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from agent.model.logs import stamp
from broker.topics import Topics
from tests.harness import Cluster, new_cluster, shoal, wait_for
from tests.integration.mqtt import Ident, as_client, enroll_identity

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with new_cluster(tmp_path_factory.mktemp("events"), "--driver", "process") as (c, _):
        yield c


def _monitor(c: Cluster, out: Path) -> Ident:
    ident = shoal("cert", "issue", "monitor", "--out", str(out), data=c.manager).stdout
    return Ident(ident.splitlines()[0], out / "cert.pem", out / "key.pem", out / "ca.pem")


async def _next_event(
    client: aiomqtt.Client, topic: str, want: dict[str, str], timeout: float = 15.0
) -> list[bytes]:
    """Every payload on `topic` until an event whose Type, Action and name are `want`."""
    got: list[bytes] = []

    async def read() -> None:
        async for m in client.messages:
            if m.topic.value != topic:
                continue
            got.append(bytes(m.payload))  # type: ignore[arg-type]
            try:
                doc = json.loads(got[-1])
                seen = {
                    "Type": doc["Type"],
                    "Action": doc["Action"],
                    "name": doc["Actor"]["Attributes"].get("name", ""),
                }
            except (ValueError, KeyError, TypeError):
                continue
            if seen == want:
                return

    await asyncio.wait_for(read(), timeout)
    return got


def _service_id(c: Cluster, name: str) -> str:
    out = shoal("service", "inspect", "--format", "{{.ID}}", name, data=c.manager).stdout
    return out.strip()


def _running(c: Cluster, name: str) -> bool:
    out = shoal("service", "ps", "--format", "json", name, data=c.manager).stdout
    rows: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines()]
    return any(r["state"] == "running" for r in rows)


async def test_service_create_is_an_event_on_the_topic_and_in_shoal_events(
    cluster: Cluster, tmp_path: Path
) -> None:
    c = cluster
    topic = Topics(c.info(c.manager)["cluster_id"]).mon("events")
    mon = await asyncio.to_thread(_monitor, c, tmp_path / "mon")
    start = time.time_ns()
    async with as_client(mon, c.port) as client:
        await client.subscribe(topic, qos=1)
        await asyncio.to_thread(
            shoal,
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "/bin/sleep",
            "300",
            data=c.manager,
        )
        got = await _next_event(
            client, topic, {"Type": "service", "Action": "create", "name": "web"}
        )
    doc = json.loads(got[-1])
    ident = await asyncio.to_thread(_service_id, c, "web")
    assert doc["Actor"]["ID"] == ident and doc["scope"] == "swarm"
    assert start <= doc["timeNano"] <= time.time_ns() and doc["time"] == doc["timeNano"] // 10**9

    await asyncio.to_thread(wait_for, lambda: _running(c, "web"), 30, "web running")
    until = stamp(time.time_ns())
    out = await asyncio.to_thread(
        shoal, "events", "--since", stamp(start), "--until", until, data=c.manager, timeout=20
    )
    lines = out.stdout.splitlines()
    assert f"{stamp(doc['timeNano'])} service create {ident} (name=web)" in lines, lines
    states = [ln for ln in lines if " task update " in ln and "service.name=web" in ln]
    assert any("state.new=running" in ln for ln in states), lines

    out = await asyncio.to_thread(
        shoal,
        *("events", "--since", stamp(start), "--until", until),
        *("--filter", "type=service", "--filter", "event=create"),
        *("--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"),
        data=c.manager,
        timeout=20,
    )
    assert out.stdout.splitlines() == ["service create web"], out.stdout
    info = await asyncio.to_thread(c.info, c.manager)
    assert info["events_published"] >= len(lines) and info["events_dropped"] == 0, info
    assert info["events_kept"] >= len(lines), info


async def test_a_worker_cannot_publish_on_the_events_topic(
    cluster: Cluster, tmp_path: Path
) -> None:
    c = cluster
    topic = Topics(c.info(c.manager)["cluster_id"]).mon("events")
    mon = await asyncio.to_thread(_monitor, c, tmp_path / "mon")
    worker = await enroll_identity(tmp_path / "w", c.enroll_port, c.token("worker"))
    async with as_client(mon, c.port) as client:
        await client.subscribe(topic, qos=1)
        async with as_client(worker, c.port) as w:
            forged = {"Type": "service", "Action": "create", "Actor": {"ID": "x"}, "forged": 1}
            for qos in (0, 1):  # the QoS 1 ack proves the broker read them
                await w.publish(topic, json.dumps(forged).encode(), qos=qos)
        # the positive control: the leader's next event does arrive
        await asyncio.to_thread(shoal, "network", "create", "probe", data=c.manager)
        got = await _next_event(
            client, topic, {"Type": "network", "Action": "create", "name": "probe"}
        )
    assert [p for p in got if b"forged" in p] == []
