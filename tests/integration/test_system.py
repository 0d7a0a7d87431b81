"""`shoal system info`, `system df`, a global service's `create` and `service rollback` as a
user sees them, on one cluster of process nodes: a manager and a worker."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.harness import Cluster, new_cluster, shoal

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with new_cluster(tmp_path_factory.mktemp("system"), "--driver", "process") as (c, _):
        c.join("w1", driver="process")
        yield c


def test_info_prints_dockers_swarm_section_on_a_manager_and_on_a_worker(cluster: Cluster) -> None:
    out = shoal("system", "info", data=cluster.manager).stdout
    node_id = cluster.info(cluster.manager)["node_id"]
    for line in (
        " Swarm: active",
        f"  NodeID: {node_id}",
        "  Is Manager: true",
        "  Managers: 1",
        "  Nodes: 2",
        "   Task History Retention Limit: 5",
        "   Expiry Duration: 3 months",
        "  Autolock Managers: false",
        f"   127.0.0.1:{cluster.port}",
        " Task Driver: process",
    ):
        assert f"\n{line}\n" in out, (line, out)
    template = "{{.Swarm.NodeID}} {{.Swarm.Managers}} {{.Swarm.Cluster.SubnetSize}}"
    formatted = shoal("info", "--format", template, data=cluster.manager).stdout
    assert formatted.strip() == f"{node_id} 1 24"

    worker = shoal("system", "info", data=cluster.nodes[0]).stdout
    assert "  Is Manager: false\n" in worker and "ClusterID" not in worker


def test_a_global_service_created_without_detach_waits_for_a_task_on_every_node(
    cluster: Cluster,
) -> None:
    out = shoal(
        "service",
        "create",
        "--name",
        "agent",
        "--mode",
        "global",
        "/bin/sleep",
        "600",
        data=cluster.manager,
    ).stdout
    assert "0 out of 0" not in out
    assert "overall progress: 2 out of 2 tasks\n" in out and "verify: Service converged" in out
    ps = shoal("service", "ps", "--format", "json", "agent", data=cluster.manager).stdout
    running = [t for t in map(json.loads, ps.splitlines()) if t["state"] == "running"]
    assert sorted(t["node"] for t in running) == ["mgr", "w1"]  # at once: no waiting


def test_df_counts_services_tasks_and_this_managers_raft_files(cluster: Cluster) -> None:
    shoal(
        "service",
        "create",
        "--detach",
        "--name",
        "df-probe",
        "/bin/sleep",
        "600",
        data=cluster.manager,
    )

    def services_counted() -> int:
        out = shoal("system", "df", "--format", "json", data=cluster.manager).stdout
        return int(
            {r["Type"]: r for r in map(json.loads, out.splitlines())}["Services"]["TotalCount"]
        )

    before = services_counted()
    shoal(
        "service",
        "create",
        "--detach",
        "--name",
        "df-probe-2",
        "/bin/sleep",
        "600",
        data=cluster.manager,
    )
    assert services_counted() == before + 1
    out = shoal("system", "df", "--format", "json", data=cluster.manager).stdout
    rows = {r["Type"]: r for r in map(json.loads, out.splitlines())}
    assert int(rows["Raft log"]["TotalCount"]) >= 1 and rows["Raft log"]["Size"] != "0B"
    table = shoal("system", "df", data=cluster.manager).stdout.splitlines()
    assert table[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    verbose = shoal("system", "df", "-v", data=cluster.manager).stdout
    assert "\ndf-probe " in verbose and "\nwal/" in verbose

    refused = shoal("system", "df", data=cluster.nodes[0], check=False)
    assert refused.returncode == 1 and "not a swarm manager" in refused.stderr


def test_service_rollback_prints_what_docker_prints(cluster: Cluster) -> None:
    shoal("service", "create", "--name", "rb", "/bin/sleep", "600", data=cluster.manager)
    shoal("service", "update", "--replicas", "2", "rb", data=cluster.manager)
    out = shoal("service", "rollback", "rb", data=cluster.manager).stdout.splitlines()
    assert out[:3] == [
        "rb",
        "rollback: manually requested rollback",
        "overall progress: rolling back update: 1 out of 1 task",
    ], out
    assert out[-2:] == ["verify: Service converged", "rollback: rollback completed"], out
