"""A node started with --metrics-listen serves Prometheus metrics that match the cluster, and
publishes mon/cluster and its own mon/node/<id>/usage (process driver, one node)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker.topics import Topics
from tests.harness import Cluster, free_ports, new_cluster, shoal, wait_for
from tests.integration.mqtt import Ident, as_client, first

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, int]]:
    (port,) = free_ports(1)
    args = ("--driver", "process", "--metrics-listen", f"127.0.0.1:{port}")
    with new_cluster(tmp_path_factory.mktemp("metrics"), *args, "--usage-interval", "1") as (
        c,
        _,
    ):
        yield c, port


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _replicas(port: int, sid: str) -> tuple[float, float, float]:
    got = _scrape(port)
    labels = (("service", "web"), ("service_id", sid))
    return (
        got.get(("shoal_service_replicas_desired", labels), -1),
        got.get(("shoal_service_replicas_running", labels), -1),
        got.get(("shoal_tasks", (("state", "running"),)), -1),
    )


def test_metrics_follow_a_service_created_and_scaled(cluster: tuple[Cluster, int]) -> None:
    c, port = cluster
    shoal(
        "service", "create", "--detach", "--name", "web", "--replicas", "2",
        "/bin/sleep", "300", data=c.manager,
    )  # fmt: skip
    sid = shoal("service", "inspect", "--format", "{{.ID}}", "web", data=c.manager).stdout.strip()
    wait_for(lambda: _replicas(port, sid) == (2, 2, 2), 30, "2 of 2 in the metrics")
    shoal("service", "scale", "--detach", "web=3", data=c.manager)
    wait_for(lambda: _replicas(port, sid) == (3, 3, 3), 30, "3 of 3 in the metrics")

    got = _scrape(port)
    assert got[("shoal_raft_is_leader", ())] == 1
    assert got[("shoal_raft_term", ())] >= 1
    assert got[("shoal_raft_applied_index", ())] <= got[("shoal_raft_commit_index", ())]
    assert got[("shoal_nodes", (("status", "ready"),))] == 1
    assert got[("shoal_scheduler_latency_seconds_count", ())] >= 3
    assert got[("shoal_dispatcher_latency_seconds_count", ())] >= 3
    assert got[("shoal_mqtt_messages_received_total", ())] > 0
    assert got[("shoal_mqtt_bytes_sent_total", ())] > 0
    assert got[("process_resident_memory_bytes", ())] > 0
    ps = shoal("service", "ps", "--format", "json", "web", data=c.manager).stdout.splitlines()
    assert sum(json.loads(row)["state"] == "running" for row in ps) == 3


async def test_the_leader_and_the_node_publish_cluster_and_usage_documents(
    cluster: tuple[Cluster, int], tmp_path: Path
) -> None:
    c, _ = cluster
    info = await asyncio.to_thread(c.info, c.manager)
    out = tmp_path / "mon"
    ident = shoal("cert", "issue", "monitor", "--out", str(out), data=c.manager).stdout
    mon = Ident(ident.splitlines()[0], out / "cert.pem", out / "key.pem", out / "ca.pem")
    t = Topics(info["cluster_id"])
    async with as_client(mon, c.port) as client:
        await client.subscribe(t.mon("cluster"), qos=1)
        summary = json.loads(await first(client, t.mon("cluster"), timeout=10))
        usage_topic = t.mon("node", info["node_id"], "usage")
        await client.subscribe(usage_topic, qos=1)
        usage = json.loads(await first(client, usage_topic, timeout=10))
    assert summary["leader"] == info["node_id"]
    assert summary["managers"] == [
        {"id": info["node_id"], "hostname": "mgr", "reachability": "reachable"}
    ]
    assert summary["broker"]["backend"] == "mosquitto"
    assert summary["broker"]["addresses"] == [f"mqtts://127.0.0.1:{c.port}"]
    assert 0 < usage["memory_used"] < usage["memory_total"]
    assert 0 < usage["disk_used"] < usage["disk_total"]
