"""The dashboard's HTTP rules: GET only, the token, /api/state and /metrics."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from agent.cli.main import main
from agent.dashboard.server import Hub, is_loopback, make_app
from agent.dashboard.state import ClusterState

P = "shoal/c1abc/mon/"


def state() -> ClusterState:
    s = ClusterState("c1abc")
    s.apply(
        P + "node/n1",
        json.dumps(
            {"hostname": "pi", "status": "ready", "role": "manager", "availability": "active"}
        ).encode(),
    )
    s.apply(
        P + "node/n1/usage",
        json.dumps({"cpu": 0.25, "memory_used": 100, "memory_total": 400}).encode(),
    )
    s.apply(
        P + "service/s1",
        json.dumps(
            {
                "name": "web",
                "desired": 3,
                "running": 2,
                "tasks": [{"state": "running"}, {"state": "running"}, {"state": "preparing"}],
            }
        ).encode(),
    )
    s.apply(P + "service/s2", b"garbage")
    return s


async def client(token: str | None = None) -> TestClient:  # type: ignore[type-arg]
    c = TestClient(TestServer(make_app(state(), Hub(), token)))
    await c.start_server()
    return c


async def test_only_get_is_served() -> None:
    c = await client()
    try:
        for path in ("/", "/api/state", "/metrics", "/nowhere"):
            assert (await c.post(path)).status == 405
        assert (await c.delete("/api/state")).status == 405
        assert (await c.get("/")).status == 200
    finally:
        await c.close()


async def test_with_a_token_every_request_carries_it() -> None:
    c = await client("s3cret")
    try:
        assert (await c.get("/api/state")).status == 401
        assert (await c.get("/api/state?token=wrong")).status == 401
        bearer = await c.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert bearer.status == 200
        assert (await c.get("/api/state")).status == 401  # a header sets no cookie
        assert (await c.get("/?token=s3cret")).status == 200
        assert (await c.get("/api/state")).status == 200  # the cookie it set
    finally:
        await c.close()


async def test_api_state_is_all_it_knows() -> None:
    c = await client()
    try:
        doc = await (await c.get("/api/state")).json()
        assert doc["nodes"]["n1"]["usage"]["cpu"] == 0.25
        assert doc["services"]["s1"]["name"] == "web"
        assert doc["bad_messages"] == 1
    finally:
        await c.close()


async def test_metrics_count_nodes_tasks_replicas_and_usage() -> None:
    c = await client()
    try:
        text = await (await c.get("/metrics")).text()
    finally:
        await c.close()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    node = (("availability", "active"), ("role", "manager"), ("status", "ready"))
    assert samples[("shoal_nodes", node)] == 1
    assert samples[("shoal_tasks", (("state", "running"),))] == 2
    assert samples[("shoal_tasks", (("state", "preparing"),))] == 1
    assert samples[("shoal_service_replicas_desired", (("service", "web"),))] == 3
    assert samples[("shoal_service_replicas_running", (("service", "web"),))] == 2
    pi = (("hostname", "pi"), ("node", "n1"))
    assert samples[("shoal_node_cpu_ratio", pi)] == 0.25
    assert samples[("shoal_node_memory_total_bytes", pi)] == 400
    assert samples[("shoal_dashboard_bad_messages_total", ())] == 1


def test_loopback_addresses() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "::1", "[::1]", "localhost", "127.9.9.9"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.4", "example.org"]))


def test_listening_off_loopback_without_a_token_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["dashboard", "--listen", "0.0.0.0:8080"]) == 2
    assert "--token" in capsys.readouterr().err
