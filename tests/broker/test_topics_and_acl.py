"""The topic tree and the generated broker configuration, with no broker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from broker.acl import Access, Grant, cluster_users
from broker.errors import BrokerError
from broker.mosquitto_conf import (
    BrokerFiles,
    ListenSpec,
    render_cluster_acl,
    render_config,
    render_enroll_acl,
)
from broker.topics import Topics, check_id, enroll_req, enroll_resp


def test_topics_carry_ids_only() -> None:
    t = Topics("c1")
    assert t.node_state("n1") == "shoal/c1/node/n1/state"
    assert t.node_assign("n1") == "shoal/c1/node/n1/assign"
    assert t.node_net("n1") == "shoal/c1/node/n1/net"
    assert t.mgr_raft("m1") == "shoal/c1/mgr/m1/raft"
    assert t.mon("node", "n1") == "shoal/c1/mon/node/n1"
    assert enroll_req("j1") == "shoal/enroll/j1/req"
    assert enroll_resp("j1") == "shoal/enroll/j1/resp"
    assert Topics.node_of("shoal/c1/node/n1/state") == "n1"
    assert Topics.node_of("shoal/c1/mgr/n1/raft") is None


def test_followed_log_lines_go_on_a_topic_per_node_and_manager() -> None:
    t = Topics("c1")
    assert t.node_logs("n1", "m1") == "shoal/c1/node/n1/logs/m1"
    assert t.logs_for("m1") == "shoal/c1/node/+/logs/m1"
    assert Topics.logs_node_of("shoal/c1/node/n1/logs/m1") == "n1"
    assert Topics.logs_node_of("shoal/c1/node/n1/req") is None
    assert Topics.node_of("shoal/c1/node/n1/logs/m1") is None


def test_only_managers_read_log_lines_and_a_node_writes_only_its_own() -> None:
    acl = render_cluster_acl(
        Topics("c1"), managers=["m1"], nodes=["n1"], admins=["adm-x"], monitors=["mon-y"]
    )
    logs = [line for line in acl.splitlines() if "/logs/" in line]
    assert logs == ["topic write shoal/c1/node/n1/logs/+"]  # managers read all of shoal/c1/#
    assert _section(acl.splitlines(), "mon-y") == [
        "topic read shoal/c1/mon/#",
        "topic read homeassistant/+/shoal_c1/#",
    ]


@pytest.mark.parametrize("bad", ["", "a.b", "a b", "a/b", "+", "#", "A", "x" * 65, "-a"])
def test_ids_that_cannot_be_topic_levels_are_refused(bad: str) -> None:
    with pytest.raises(BrokerError):
        check_id(bad)
    with pytest.raises(BrokerError):
        Topics("c1").node_state(bad)


def _section(lines: list[str], user: str) -> list[str]:
    start = lines.index(f"user {user}") + 1
    rest = [*lines[start:], ""]
    return rest[: rest.index("")]


def test_cluster_acl_gives_nodes_only_their_own_topics() -> None:
    acl = render_cluster_acl(
        Topics("c1"), managers=["m1"], nodes=["n1", "m1"], admins=["adm-x"], monitors=["mon-y"]
    )
    lines = acl.splitlines()
    assert _section(lines, "n1") == [
        "topic write shoal/c1/node/n1/state",
        "topic write shoal/c1/node/n1/status",
        "topic write shoal/c1/node/n1/req",
        "topic write shoal/c1/node/n1/logs/+",
        "topic read shoal/c1/node/n1/resp",
        "topic read shoal/c1/node/n1/assign",
        "topic read shoal/c1/node/n1/net",
        "topic write shoal/c1/mon/node/n1/#",
    ]
    assert _section(lines, "m1") == [
        "topic readwrite shoal/c1/#",
        "topic readwrite shoal/enroll/#",
        "topic readwrite homeassistant/+/shoal_c1/#",
    ]
    assert lines.count("user m1") == 1
    assert _section(lines, "adm-x") == [
        "topic readwrite shoal/c1/ctl/adm-x/#",
        "topic read shoal/c1/mon/#",
    ]
    assert _section(lines, "mon-y") == [
        "topic read shoal/c1/mon/#",
        "topic read homeassistant/+/shoal_c1/#",
    ]


def test_cluster_acl_has_no_patterns_so_monitors_write_nothing() -> None:
    # mosquitto applies `pattern` lines to every user, monitors included
    acl = render_cluster_acl(Topics("c1"), managers=["m1"], nodes=["n1"], monitors=["mon-y"])
    assert not any(line.startswith("pattern") for line in acl.splitlines())
    assert "mon-y" not in acl.replace("user mon-y\ntopic read shoal/c1/mon/#", "")
    assert all(" read " in line for line in _section(acl.splitlines(), "mon-y"))


def test_cluster_acl_for_a_thousand_nodes_is_generated_fast() -> None:
    started = time.perf_counter()
    acl = render_cluster_acl(Topics("c1"), managers=["m1"], nodes=[f"n{i}" for i in range(1000)])
    assert time.perf_counter() - started < 0.5
    assert acl.count("\nuser n") == 1000


def test_cluster_acl_refuses_ids_that_would_inject_lines() -> None:
    with pytest.raises(BrokerError):
        render_cluster_acl(Topics("c1"), managers=["m1"], nodes=["n1\ntopic readwrite #"])


def test_enrollment_acl_allows_only_the_clients_own_request_and_reply() -> None:
    assert render_enroll_acl().splitlines()[1:] == [
        "pattern write shoal/enroll/%c/req",
        "pattern read shoal/enroll/%c/resp",
    ]


def test_config_has_a_mutual_tls_listener_and_an_anonymous_enrollment_listener() -> None:
    files = BrokerFiles(Path("/d"))
    conf = render_config(files, ListenSpec("127.0.0.1", 8883, 8884), user="mosquitto")
    cluster, enroll = conf.split("listener 8884 127.0.0.1")
    assert "listener 8883 127.0.0.1" in cluster
    for line in (
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        "allow_anonymous false",
        "crlfile /d/crl.pem",
        "acl_file /d/cluster.acl",
    ):
        assert line in cluster.splitlines()
    for line in ("require_certificate false", "allow_anonymous true", "acl_file /d/enroll.acl"):
        assert line in enroll.splitlines()
    assert cluster.count("tls_version tlsv1.2") == 1 and enroll.count("tls_version tlsv1.2") == 1
    assert "set_tcp_nodelay true" in conf and "per_listener_settings true" in conf


def test_config_refuses_paths_that_would_inject_lines() -> None:
    with pytest.raises(ValueError):
        render_config(
            BrokerFiles(Path("/d\nallow_anonymous true")), ListenSpec("h", 1, 2), user="u"
        )


def _may_write(grants: tuple[Grant, ...], topic: str) -> bool:
    import aiomqtt

    return any(g.access.writes and aiomqtt.Topic(topic).matches(g.topic_filter) for g in grants)


def test_a_node_may_write_its_own_usage_but_not_another_nodes_nor_the_cluster_summary() -> None:
    t = Topics("c1")
    users = {u.name: u for u in cluster_users(t, managers=["m1"], nodes=["n1", "n2"])}
    n1 = users["n1"].grants
    assert _may_write(n1, t.mon("node", "n1", "usage"))
    assert not _may_write(n1, t.mon("node", "n2", "usage"))
    assert not _may_write(n1, t.mon("cluster"))
    assert not _may_write(n1, "homeassistant/sensor/shoal_c1_n2_cpu/config")
    assert _may_write(users["m1"].grants, t.mon("cluster"))


def _may_read(grants: tuple[Grant, ...], topic: str) -> bool:
    import aiomqtt

    return any(g.access.reads and aiomqtt.Topic(topic).matches(g.topic_filter) for g in grants)


def test_home_assistant_discovery_is_written_by_managers_and_read_by_monitors_only() -> None:
    t = Topics("c1")
    entry = t.discovery_config("homeassistant", "sensor", "node_n1_cpu")
    assert entry == "homeassistant/sensor/shoal_c1/node_n1_cpu/config"
    users = {
        u.name: u.grants
        for u in cluster_users(
            t,
            managers=["m1"],
            nodes=["n1"],
            admins=["adm-x"],
            monitors=["mon-y"],
        )
    }
    # the configured prefix only (default homeassistant), whether discovery is on or off
    old = "old-prefix/sensor/shoal_c1/node_n1_cpu/config"
    assert _may_write(users["m1"], entry) and _may_read(users["m1"], entry)
    assert not _may_write(users["m1"], old)
    assert _may_read(users["mon-y"], entry) and not _may_read(users["mon-y"], old)
    assert not _may_write(users["mon-y"], entry)
    other_cluster = "homeassistant/sensor/shoal_c2/node_n1_cpu/config"
    assert not _may_write(users["m1"], other_cluster)
    assert not _may_read(users["mon-y"], other_cluster)
    for other in ("n1", "adm-x"):
        assert not _may_write(users[other], entry) and not _may_read(users[other], entry)
    (mon,) = cluster_users(t, managers=[], monitors=["mon-y"], discovery_prefix="ha-2")
    assert mon.grants == (
        Grant(Access.READ, "shoal/c1/mon/#"),
        Grant(Access.READ, "ha-2/+/shoal_c1/#"),
    )
    acl = render_cluster_acl(t, managers=["m1"], discovery_prefix="ha-2")
    assert "topic readwrite ha-2/+/shoal_c1/#" in _section(acl.splitlines(), "m1")
