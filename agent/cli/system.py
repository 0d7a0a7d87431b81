"""`shoal system info` (also `shoal info`) and `shoal system df`, in Docker's words.

:func:`info_text` and :func:`df_text` are pure: from what the daemon answers (see
agent/nodeinfo.py) to what `docker info` and `docker system df` would print.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from agent import control
from agent.cli.output import human_duration, render, table
from agent.cli.template import Template
from agent.paths import DataDir

__all__ = ["df_text", "human_duration", "human_size", "info_text", "register"]

DF_COLUMNS = [
    ("TYPE", "Type"),
    ("TOTAL", "TotalCount"),
    ("ACTIVE", "Active"),
    ("SIZE", "Size"),
    ("RECLAIMABLE", "Reclaimable"),
]
_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(n: float) -> str:
    """Bytes as Docker prints them: four significant digits, powers of 1000 (``16.43MB``)."""
    size, unit = float(n), 0
    while size >= 1000 and unit < len(_UNITS) - 1:
        size /= 1000
        unit += 1
    return f"{size:.4g}{_UNITS[unit]}"


# info ----------------------------------------------------------------------------------------
def info_text(info: dict[str, Any]) -> str:
    lines = [
        "Server:",
        f" Containers: {info.get('Containers', 0)}",
        f"  Running: {info.get('ContainersRunning', 0)}",
        f"  Paused: {info.get('ContainersPaused', 0)}",
        f"  Stopped: {info.get('ContainersStopped', 0)}",
        f" Server Version: {info.get('ServerVersion', '')}",
        f" Task Driver: {info.get('Driver', info.get('driver', ''))}",
        f" Broker: {info.get('Broker', '')} ({_connection(info)})",
        *_broker_servers(info),
        *_swarm_lines(info.get("Swarm") or {}),
        f" Name: {info.get('Name', info.get('hostname', ''))}",
        f" ID: {info.get('ID', info.get('node_id', ''))}",
        " Node:",
        f"  Connects: {info.get('connects', 0)}",
        f"  Rejected Messages: {info.get('rejected', 0)}{_reasons(info)}",
        f"  Rejected Assignments: {info.get('rejected_assignments', 0)}",
        f"  Log Streams: {info.get('log_streams', 0)}",
        f"  Log Lines Sent: {info.get('log_lines_sent', 0)}",
        f"  Certificate Expires: {info.get('cert_not_after', '')}",
    ]
    if info.get("manager"):
        leader = info.get("leader") or "none"
        lines.append(f"  Raft: term {info.get('raft_term')}, applied {info.get('applied')}")
        lines.append(f"  Leader: {leader}{' (this node)' if info.get('is_leader') else ''}")
    if info.get("removed"):
        lines.append(f"  Removed: {info['removed']}")
    if info.get("last_error"):
        lines.append(f"  Last Error: {info['last_error']}")
    return "\n".join(lines)


def _broker_servers(info: dict[str, Any]) -> list[str]:
    """The servers a node fails over among, when the broker has more than one."""
    servers = info.get("BrokerAddresses") or []
    return [f"  Servers: {', '.join(str(s) for s in servers)}"] if len(servers) > 1 else []


def _reasons(info: dict[str, Any]) -> str:
    counts = info.get("rejected_reasons") or {}
    return f" ({', '.join(f'{why}: {n}' for why, n in sorted(counts.items()))})" if counts else ""


def _connection(info: dict[str, Any]) -> str:
    return "connected" if info.get("connected") else "not connected"


def _swarm_lines(swarm: dict[str, Any]) -> list[str]:
    state = swarm.get("LocalNodeState", "inactive")
    lines = [f" Swarm: {state}"]
    if state in ("inactive", "locked"):
        return lines
    lines.append(f"  NodeID: {swarm.get('NodeID', '')}")
    if swarm.get("Error"):
        lines.append(f"  Error: {swarm['Error']}")
    manager = bool(swarm.get("ControlAvailable"))
    lines.append(f"  Is Manager: {str(manager).lower()}")
    cluster = swarm.get("Cluster")
    if manager and cluster:
        lines += _cluster_lines(swarm, cluster)
    lines.append(f"  Node Address: {swarm.get('NodeAddr', '')}")
    remote = sorted(str(m.get("Addr", "")) for m in swarm.get("RemoteManagers") or [])
    if remote:
        lines.append("  Manager Addresses:")
        lines += [f"   {addr}" for addr in remote]
    return lines


def _cluster_lines(swarm: dict[str, Any], cluster: dict[str, Any]) -> list[str]:
    spec = cluster.get("Spec") or {}
    raft = spec.get("Raft") or {}
    heartbeat_ns = (spec.get("Dispatcher") or {}).get("HeartbeatPeriod", 0)
    expiry_ns = (spec.get("CAConfig") or {}).get("NodeCertExpiry", 0)
    autolock = bool((spec.get("EncryptionConfig") or {}).get("AutoLockManagers"))
    retention = (spec.get("Orchestration") or {}).get("TaskHistoryRetentionLimit", 0)
    ha = spec.get("HomeAssistant") or {}
    discovery = f"on (prefix {ha.get('Prefix', '')})" if ha.get("Discovery") else "off"
    return [
        f"  ClusterID: {cluster.get('ID', '')}",
        f"  Managers: {swarm.get('Managers', 0)}",
        f"  Nodes: {swarm.get('Nodes', 0)}",
        f"  Default Address Pool: {' '.join(cluster.get('DefaultAddrPool') or [])}",
        f"  SubnetSize: {cluster.get('SubnetSize', 0)}",
        "  Orchestration:",
        f"   Task History Retention Limit: {retention}",
        "  Raft:",
        f"   Snapshot Interval: {raft.get('SnapshotInterval', 0)}",
        f"   Heartbeat Tick: {raft.get('HeartbeatTick', 0)}",
        f"   Election Tick: {raft.get('ElectionTick', 0)}",
        "  Dispatcher:",
        f"   Heartbeat Period: {human_duration(heartbeat_ns / 1e9)}",
        "  CA Configuration:",
        f"   Expiry Duration: {human_duration(expiry_ns / 1e9)}",
        f"  Autolock Managers: {str(autolock).lower()}",
        f"  Home Assistant Discovery: {discovery}",
        f"  Root Rotation In Progress: {str(bool(cluster.get('RootRotationInProgress'))).lower()}",
    ]


def cmd_info(a: argparse.Namespace, data: DataDir) -> int:
    info = control.call(data.socket, "info")
    fmt = a.format
    if fmt is None or fmt.strip() in ("", "table"):
        print(info_text(info))
    elif fmt.strip() == "json":
        print(json.dumps(info))
    else:
        print(Template(fmt).render_all([info]))
    return 0


# df ------------------------------------------------------------------------------------------
def _reclaimable(row: dict[str, Any]) -> str:
    size, free = int(row["size"]), int(row["reclaimable"])
    return f"{human_size(free)} ({free * 100 // size}%)" if size else human_size(free)


def df_rows(usage: dict[str, Any]) -> list[dict[str, str]]:
    """The summary rows, with Docker's field names and texts (``{{.Size}}`` is ``1.2kB``)."""
    return [
        {
            "Type": row["type"],
            "TotalCount": str(row["total"]),
            "Active": str(row["active"]),
            "Size": human_size(row["size"]),
            "Reclaimable": _reclaimable(row),
        }
        for row in usage["types"]
    ]


def df_text(usage: dict[str, Any], *, verbose: bool = False, fmt: str | None = None) -> str:
    if verbose:
        if fmt:
            return Template(fmt).render_all([usage]) if fmt.strip() != "json" else _json(usage)
        return _df_verbose(usage)
    return render(df_rows(usage), DF_COLUMNS, fmt)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _df_verbose(usage: dict[str, Any]) -> str:
    services = [
        [s["name"], s["mode"], str(s["tasks"]), str(s["running"]), human_size(s["size"])]
        for s in usage["services"]
    ]
    states = [[state, str(n)] for state, n in usage["tasks_by_state"].items()]
    raft = usage.get("raft") or {}
    files = [[f"wal/{f['name']}", human_size(f["bytes"])] for f in raft.get("wal", [])]
    files += [[f"snap/{f['name']}", human_size(f["bytes"])] for f in raft.get("snapshots", [])]
    return "\n".join(
        [
            "Services space usage:",
            "",
            table([["NAME", "MODE", "TASKS", "RUNNING", "SIZE"], *services]),
            "",
            "Tasks by state:",
            "",
            table([["STATE", "COUNT"], *states]),
            "",
            "Raft files on this manager:",
            "",
            table([["FILE", "SIZE"], *files]),
        ]
    )


def cmd_df(a: argparse.Namespace, data: DataDir) -> int:
    usage = control.call(data.socket, "system-df", {})
    print(df_text(usage, verbose=a.verbose, fmt=a.format))
    return 0


# parser --------------------------------------------------------------------------------------
def register(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    info_help = "display system-wide information"
    fmt_help = "format output: 'json', or a Go template such as '{{.Swarm.NodeID}}'"
    sp = cmd(sub, "info", cmd_info, info_help)
    sp.add_argument("-f", "--format", default=None, help=fmt_help)
    system = sub.add_parser("system", help="manage shoal").add_subparsers(
        dest="sub", metavar="COMMAND", required=True
    )
    sp = cmd(system, "info", cmd_info, info_help)
    sp.add_argument("-f", "--format", default=None, help=fmt_help)
    sp = cmd(system, "df", cmd_df, "show what the swarm's state takes (on this manager)")
    sp.add_argument("-v", "--verbose", action="store_true", help="show detailed information")
    sp.add_argument(
        "--format", default=None, help="format output: 'table', 'json', or a Go template"
    )
