"""What `shoal system info` and `shoal system df` read from a manager's own copy of the store.

:func:`swarm_info` is the part of `docker info` that only a manager knows (counts of nodes and
managers, the cluster's settings), in the shape of Docker's ``Swarm`` object. :func:`disk_usage`
is `system df`: what the store holds, by type, and what the Raft state takes on this
manager's disk. Both are pure functions of a view (and, for the disk, a directory).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from agent.manager.control.networks import users_of as network_users
from agent.manager.control.secrets import users_of
from agent.manager.reconcile.allocator import DEFAULT_ADDR_POOL, INGRESS_ID
from agent.manager.reconcile.orchestrator import live, observed
from agent.manager.store import (
    Cluster,
    Config,
    Network,
    Node,
    NodeRole,
    Secret,
    Service,
    StoreObject,
    Task,
    View,
)
from agent.model import TaskState

__all__ = ["RaftSettings", "disk_usage", "swarm_info"]

SUBNET_SIZE = 24  # each network without a subnet of its own gets a /24 of the pool
_NS = 10**9


@dataclass(frozen=True, slots=True)
class RaftSettings:
    snapshot_interval: int  # applied entries between snapshots
    heartbeat_tick: int  # ticks between a leader's heartbeats
    election_tick: int  # ticks without a leader before an election
    tick_s: float  # one tick


def swarm_info(view: View, raft: RaftSettings, *, heartbeat_s: float) -> dict[str, Any]:
    """Docker's ``Swarm`` fields that a manager adds: ``Managers``, ``Nodes``, ``Cluster``.
    ``heartbeat_s`` is this node's heartbeat (shoal has no cluster-wide one)."""
    cluster = view.get(Cluster, "cluster") or Cluster(id="cluster")
    nodes = view.list(Node)
    return {
        "ControlAvailable": True,
        "Managers": sum(1 for n in nodes if n.role == NodeRole.MANAGER),
        "Nodes": len(nodes),
        "Cluster": {
            "ID": cluster.cluster_id,
            "Spec": {
                "Orchestration": {"TaskHistoryRetentionLimit": cluster.task_history_limit},
                "Raft": {
                    "SnapshotInterval": raft.snapshot_interval,
                    "HeartbeatTick": raft.heartbeat_tick,
                    "ElectionTick": raft.election_tick,
                    "TickIntervalMs": round(raft.tick_s * 1000),
                },
                "Dispatcher": {"HeartbeatPeriod": round(heartbeat_s * _NS)},
                "CAConfig": {"NodeCertExpiry": cluster.cert_lifetime_s * _NS},
                "EncryptionConfig": {"AutoLockManagers": bool(cluster.unlock_key)},
                # shoal's own: `swarm update --home-assistant on|off --home-assistant-prefix`
                "HomeAssistant": {
                    "Discovery": cluster.home_assistant,
                    "Prefix": cluster.home_assistant_prefix,
                },
            },
            "RootRotationInProgress": False,
            "DefaultAddrPool": [str(DEFAULT_ADDR_POOL)],
            "SubnetSize": SUBNET_SIZE,
        },
    }


def _size(obj: StoreObject) -> int:
    """The bytes the object takes in the store (its msgpack form, as the log holds it)."""
    return len(msgpack.packb(obj.to_dict(), use_bin_type=True))


def _row(
    kind: str,
    objs: list[Any],
    used: Callable[[Any], bool],
    size_of: Callable[[Any], int] = _size,
) -> dict[str, Any]:
    size = reclaimable = 0
    active = 0
    for o in objs:
        n = size_of(o)
        size += n
        if used(o):
            active += 1
        else:
            reclaimable += n
    return {
        "type": kind,
        "total": len(objs),
        "active": active,
        "size": size,
        "reclaimable": reclaimable,
    }


def _files(directory: Path, pattern: str) -> list[dict[str, Any]]:
    if not directory.is_dir():
        return []
    out = []
    for path in sorted(directory.glob(pattern)):
        try:
            out.append({"name": path.name, "bytes": path.stat().st_size})
        except OSError:
            continue  # compacted away as we looked
    return out


def disk_usage(view: View, raft_dir: Path | None) -> dict[str, Any]:
    """`system df`: one row per type (total, active, bytes in the store, bytes that removing
    what is unused would free), the services and the tasks by state, and this manager's Raft
    files (``raft_dir``: the log's segments in wal/, the snapshots in snap/)."""
    services = view.list(Service)
    tasks = view.list(Task)
    running = [t for t in tasks if live(t) and observed(t) is TaskState.RUNNING]
    busy = {t.service_id for t in running}
    task_size = {t.id: _size(t) for t in tasks}  # the bulk of the store: encoded once
    publishing = any(
        p.publish_mode == "ingress" for s in services for p in s.spec.endpoint_spec.ports
    )
    rows = [
        _row("Services", services, lambda s: s.id in busy),
        _row("Tasks", tasks, live, lambda t: task_size[t.id]),
        _row("Secrets", view.list(Secret), lambda o: bool(users_of(view, Secret, o))),
        _row("Configs", view.list(Config), lambda o: bool(users_of(view, Config, o))),
        _row(
            "Networks",
            view.list(Network),
            lambda n: bool(network_users(view, n)) or (n.id == INGRESS_ID and publishing),
        ),
    ]
    wal = _files(raft_dir / "wal", "*.seg") if raft_dir else []
    snaps = _files(raft_dir / "snap", "*.snap") if raft_dir else []
    rows += _raft_rows(wal, snaps)
    return {
        "types": rows,
        "services": _services(services, tasks, running, task_size),
        "tasks_by_state": dict(sorted(Counter(observed(t).value for t in tasks).items())),
        "raft": {"wal": wal, "snapshots": snaps},
    }


def _raft_rows(wal: list[dict[str, Any]], snaps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # a manager restores from its newest snapshot: older ones are kept only as fallbacks
    return [
        {
            "type": "Raft log",
            "total": len(wal),
            "active": len(wal),
            "size": sum(f["bytes"] for f in wal),
            "reclaimable": 0,
        },
        {
            "type": "Raft snapshots",
            "total": len(snaps),
            "active": min(len(snaps), 1),
            "size": sum(f["bytes"] for f in snaps),
            "reclaimable": sum(f["bytes"] for f in snaps[:-1]),
        },
    ]


def _services(
    services: list[Service], tasks: list[Task], running: list[Task], task_size: dict[str, int]
) -> list[dict[str, Any]]:
    count: Counter[str] = Counter()
    size: Counter[str] = Counter()
    for t in tasks:
        count[t.service_id] += 1
        size[t.service_id] += task_size[t.id]
    up = Counter(t.service_id for t in running)
    return [
        {
            "id": s.id,
            "name": s.name,
            "mode": s.spec.mode.kind,
            "tasks": count[s.id],
            "running": up[s.id],
            "size": _size(s) + size[s.id],
        }
        for s in services
    ]
