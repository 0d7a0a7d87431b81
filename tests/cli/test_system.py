"""What `shoal system info` and `shoal system df` print, from what the daemon answers."""

from __future__ import annotations

import json
from typing import Any

from agent.cli.main import build_parser
from agent.cli.system import df_rows, df_text, human_duration, human_size, info_text

MANAGER: dict[str, Any] = {
    "node_id": "n1",
    "hostname": "mgr",
    "connected": True,
    "connects": 1,
    "manager": True,
    "leader": "n1",
    "is_leader": True,
    "raft_term": 2,
    "applied": 40,
    "last_error": None,
    "removed": None,
    "ID": "n1",
    "Name": "mgr",
    "Containers": 3,
    "ContainersRunning": 2,
    "ContainersPaused": 0,
    "ContainersStopped": 1,
    "ServerVersion": "0.1.0",
    "Driver": "process",
    "Broker": "10.0.0.1:8883",
    "Swarm": {
        "NodeID": "n1",
        "NodeAddr": "10.0.0.1",
        "LocalNodeState": "active",
        "ControlAvailable": True,
        "Error": "",
        "RemoteManagers": [{"NodeID": "", "Addr": "10.0.0.1:8883"}],
        "Managers": 1,
        "Nodes": 3,
        "Cluster": {
            "ID": "c1",
            "Spec": {
                "Orchestration": {"TaskHistoryRetentionLimit": 5},
                "Raft": {"SnapshotInterval": 2000, "HeartbeatTick": 1, "ElectionTick": 10},
                "Dispatcher": {"HeartbeatPeriod": 5 * 10**9},
                "CAConfig": {"NodeCertExpiry": 90 * 86400 * 10**9},
                "EncryptionConfig": {"AutoLockManagers": True},
            },
            "RootRotationInProgress": False,
            "DefaultAddrPool": ["10.0.0.0/8"],
            "SubnetSize": 24,
        },
    },
}


def test_info_on_a_manager_prints_dockers_server_and_swarm_sections() -> None:
    lines = info_text(MANAGER).splitlines()
    start = lines.index(" Swarm: active")
    assert lines[:start] == [
        "Server:",
        " Containers: 3",
        "  Running: 2",
        "  Paused: 0",
        "  Stopped: 1",
        " Server Version: 0.1.0",
        " Task Driver: process",
        " Broker: 10.0.0.1:8883 (connected)",
    ]
    assert lines[start : start + 26] == [
        " Swarm: active",
        "  NodeID: n1",
        "  Is Manager: true",
        "  ClusterID: c1",
        "  Managers: 1",
        "  Nodes: 3",
        "  Default Address Pool: 10.0.0.0/8",
        "  SubnetSize: 24",
        "  Orchestration:",
        "   Task History Retention Limit: 5",
        "  Raft:",
        "   Snapshot Interval: 2000",
        "   Heartbeat Tick: 1",
        "   Election Tick: 10",
        "  Dispatcher:",
        "   Heartbeat Period: 5 seconds",
        "  CA Configuration:",
        "   Expiry Duration: 3 months",
        "  Autolock Managers: true",
        "  Home Assistant Discovery: off",
        "  Root Rotation In Progress: false",
        "  Node Address: 10.0.0.1",
        "  Manager Addresses:",
        "   10.0.0.1:8883",
        " Name: mgr",
        " ID: n1",
    ]
    assert "  Leader: n1 (this node)" in lines


def test_info_lists_the_reasons_of_rejected_messages() -> None:
    rejecting = {**MANAGER, "rejected": 3, "rejected_reasons": {"empty message": 1, "x": 2}}
    assert "  Rejected Messages: 3 (empty message: 1, x: 2)" in info_text(rejecting)


def test_info_on_a_worker_says_only_what_a_worker_knows() -> None:
    swarm = {
        "NodeID": "w1",
        "NodeAddr": "10.0.0.7",
        "LocalNodeState": "active",
        "ControlAvailable": False,
        "RemoteManagers": [{"NodeID": "", "Addr": "10.0.0.1:8883"}],
    }
    worker = {**MANAGER, "manager": False, "connected": False, "Swarm": swarm}
    text = info_text(worker)
    assert " Broker: 10.0.0.1:8883 (not connected)" in text
    assert "  Is Manager: false\n  Node Address: 10.0.0.7\n  Manager Addresses:\n" in text
    for absent in ("ClusterID", "Managers:", "Raft:", "Leader:"):
        assert absent not in text


def test_info_of_a_locked_manager_stops_at_the_swarm_state() -> None:
    locked = {**MANAGER, "Swarm": {"LocalNodeState": "locked", "NodeID": "n1"}}
    text = info_text(locked)
    assert " Swarm: locked\n Name: mgr" in text and "NodeID" not in text


def test_info_shows_the_swarm_error_and_the_nodes_last_error() -> None:
    failing = {
        **MANAGER,
        "last_error": "the manager role is stopped: damaged log",
        "Swarm": {**MANAGER["Swarm"], "Error": "the manager role is stopped: damaged log"},
    }
    text = info_text(failing)
    assert "  Error: the manager role is stopped: damaged log" in text
    assert "  Last Error: the manager role is stopped: damaged log" in text


def test_durations_and_sizes_read_as_dockers() -> None:
    assert [human_duration(s) for s in (0.5, 1, 5, 60, 600, 3600, 86400, 90 * 86400)] == [
        "Less than a second",
        "1 second",
        "5 seconds",
        "About a minute",
        "10 minutes",
        "About an hour",
        "24 hours",
        "3 months",
    ]
    assert [human_size(n) for n in (0, 212, 1000, 16_430_000, 2.5e9)] == [
        "0B",
        "212B",
        "1kB",
        "16.43MB",
        "2.5GB",
    ]


USAGE: dict[str, Any] = {
    "types": [
        {"type": "Services", "total": 2, "active": 1, "size": 2000, "reclaimable": 0},
        {"type": "Secrets", "total": 2, "active": 1, "size": 400, "reclaimable": 100},
        {"type": "Configs", "total": 0, "active": 0, "size": 0, "reclaimable": 0},
    ],
    "services": [
        {"name": "web", "mode": "replicated", "tasks": 4, "running": 3, "size": 1500},
    ],
    "tasks_by_state": {"failed": 1, "running": 3},
    "raft": {
        "wal": [{"name": "0001.seg", "bytes": 54_840}],
        "snapshots": [{"name": "0001.snap", "bytes": 2630}],
    },
}


def test_df_prints_dockers_summary_table() -> None:
    assert df_text(USAGE).splitlines() == [
        "TYPE       TOTAL     ACTIVE    SIZE      RECLAIMABLE",
        "Services   2         1         2kB       0B (0%)",
        "Secrets    2         1         400B      100B (25%)",
        "Configs    0         0         0B        0B",
    ]


def test_df_formats_rows_with_dockers_field_names() -> None:
    out = df_text(USAGE, fmt="json").splitlines()
    assert json.loads(out[1]) == {
        "Type": "Secrets",
        "TotalCount": "2",
        "Active": "1",
        "Size": "400B",
        "Reclaimable": "100B (25%)",
    }
    assert df_text(USAGE, fmt="{{.Type}}={{.Reclaimable}}").splitlines()[1] == (
        "Secrets=100B (25%)"
    )
    assert df_rows(USAGE)[0]["Size"] == "2kB"


def test_df_verbose_lists_services_tasks_by_state_and_raft_files() -> None:
    text = df_text(USAGE, verbose=True)
    assert "Services space usage:\n\nNAME      MODE         TASKS     RUNNING   SIZE\n" in text
    assert "web       replicated   4         3         1.5kB" in text
    assert "STATE     COUNT\nfailed    1\nrunning   3" in text
    assert "wal/0001.seg     54.84kB\nsnap/0001.snap   2.63kB" in text
    assert json.loads(df_text(USAGE, verbose=True, fmt="json")) == USAGE


def test_system_info_and_df_parse_dockers_flags() -> None:
    p = build_parser()
    a = p.parse_args(["system", "info", "--format", "{{.Swarm.NodeID}}"])
    assert a.format == "{{.Swarm.NodeID}}"
    a = p.parse_args(["info", "-f", "json"])
    assert a.format == "json"
    a = p.parse_args(["system", "df", "-v"])
    assert a.verbose and a.format is None


def test_info_lists_the_broker_servers_a_node_fails_over_among() -> None:
    servers = ["10.0.0.1:8883", "10.0.0.2:8883", "10.0.0.3:8883"]
    lines = info_text({**MANAGER, "connected": True, "BrokerAddresses": servers}).splitlines()
    at = lines.index(" Broker: 10.0.0.1:8883 (connected)")
    assert lines[at + 1] == "  Servers: 10.0.0.1:8883, 10.0.0.2:8883, 10.0.0.3:8883"
    alone = info_text({**MANAGER, "BrokerAddresses": servers[:1]})
    assert "Servers:" not in alone
