"""Listings from the CLI as Docker shows them: `--filter` on a real cluster, node ls's columns,
a job's REPLICAS and DESIRED STATE, and a bad filter refused. One cluster for the module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import Cluster, new_cluster, shoal, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with new_cluster(tmp_path_factory.mktemp("listings"), "--driver", "process") as (c, _):
        c.join("w1", driver="process")
        wait_for(lambda: len(c.node_ls()) == 2, 20, "the worker in node ls")
        yield c


def _lines(c: Cluster, *args: str) -> list[str]:
    return shoal(*args, data=c.manager).stdout.splitlines()


def _json(c: Cluster, *args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _lines(c, *args, "--format", "json") if line]


def test_node_ls_shows_docker_columns_sorted_by_hostname(cluster: Cluster) -> None:
    header, *rows = _lines(cluster, "node", "ls")
    assert header.split("   ")[-1].strip() == "ENGINE VERSION"
    assert "MANAGER STATUS" in header and "AVAILABILITY" in header
    assert [r.split()[1] if r.split()[1] != "*" else r.split()[2] for r in rows] == ["mgr", "w1"]
    assert "Ready" in rows[0] and "Active" in rows[0] and "Leader" in rows[0]
    nodes = _json(cluster, "node", "ls")
    assert all("engine_version" in n and n["status"] == "ready" for n in nodes)


def test_node_ls_filters_by_role_and_name_prefix(cluster: Cluster) -> None:
    c = cluster
    assert [n["hostname"] for n in _json(c, "node", "ls", "-f", "role=worker")] == ["w1"]
    assert [n["hostname"] for n in _json(c, "node", "ls", "--filter", "name=mg")] == ["mgr"]
    both = _json(c, "node", "ls", "-f", "name=mgr", "-f", "name=w1")
    assert [n["hostname"] for n in both] == ["mgr", "w1"]
    assert _json(c, "node", "ls", "-f", "role=worker", "-f", "name=mgr") == []


def test_a_bad_filter_is_one_line_naming_the_key_and_exit_1(cluster: Cluster) -> None:
    proc = shoal("node", "ls", "-f", "foo=bar", data=cluster.manager, check=False)
    assert proc.returncode == 1
    assert "Invalid filter 'foo'" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""
    proc = shoal("service", "ls", "-f", "mode=cron", data=cluster.manager, check=False)
    assert proc.returncode == 1 and "Invalid filter 'mode=cron'" in proc.stderr


def test_a_finished_job_lists_as_docker_lists_it_and_filters_by_mode_and_state(
    cluster: Cluster,
) -> None:
    c = cluster
    shoal(
        "service", "create", "--detach", "--name", "once", "--mode", "replicated-job",
        "--replicas", "2", "--label", "kind=batch", "/bin/true", data=c.manager,
    )  # fmt: skip
    shoal("service", "create", "--detach", "--name", "idle", "/bin/sleep", "600", data=c.manager)

    def job() -> dict[str, Any]:
        (row,) = _json(c, "service", "ls", "-f", "mode=replicated-job")
        return row

    wait_for(lambda: job()["completed"] == 2, 30, "two completions")
    assert job()["name"] == "once" and job()["replicas"] == "0/0 (2/2 completed)"
    assert [r["name"] for r in _json(c, "service", "ls")] == ["idle", "once"]
    assert [r["name"] for r in _json(c, "service", "ls", "-f", "label=kind=batch")] == ["once"]
    done = _json(c, "service", "ps", "once", "-f", "desired-state=complete")
    assert len(done) == 2 and all(t["desired"] == "Complete" for t in done)
    assert _json(c, "service", "ps", "once", "-f", "desired-state=running") == []
    table = _lines(c, "service", "ps", "once")
    assert all("Complete" in line for line in table[1:]), table
