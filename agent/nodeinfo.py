"""`shoal info` (`shoal system info`) and `shoal system df` as the node daemon answers them.

`info` is one JSON object with two sets of keys: the node's own diagnostics in snake_case
(``node_id``, ``connected``, ``last_error``, ...: scripts and the tests read these), and
Docker's ``docker info`` fields in CamelCase (``Containers``, ``ServerVersion``, ``Swarm``,
...), so ``--format '{{.Swarm.NodeID}}'`` works as it does with Docker. A manager adds what
only the store knows (agent/manager/control/system.py); a worker says what a worker knows.
"""

from __future__ import annotations

from typing import Any

from agent.model import TaskState
from certs.certinfo import read_cert_info

__all__ = ["disk_usage", "node_info", "server_version"]


def server_version() -> str:
    from agent import __version__

    return __version__


def node_info(d: Any) -> dict[str, Any]:
    """Everything `shoal info` prints, from the daemon ``d``."""
    ident = read_cert_info(d.data.node_cert)
    status = d.agent.executor.status()
    driver = d.driver
    info: dict[str, Any] = {
        "locked": d._locked(),
        "node_id": d.node.node_id,
        "cluster_id": d.node.cluster_id,
        "role": d.node.role,
        "hostname": d.node.hostname,
        "connected": d.session.connected,
        "last_error": d._manager_error or d.session.last_error,
        "manager_error": d._manager_error,
        "connects": d.session.connects,
        "rejected": d.session.rejections.total,
        "rejected_reasons": dict(d.session.rejections.counts),
        "driver": d.agent.driver.name,
        "tasks": {t: st.state.value for t, st in status.items()},
        "rejected_assignments": d.agent.executor.rejected_assignments,
        "log_streams": len(d.logs.streams),
        "log_lines_sent": d.logs.lines_sent,
        "restarts": {t: st.restarts for t, st in status.items()},
        "cert_serial": str(ident.serial),
        "cert_not_after": ident.not_after.isoformat(),
        "broker_pid": d.broker.pid if d.broker else None,
        "manager": d.manager is not None,
        "removed": d.removed.describe() if d.removed else None,
        "leader": driver.leader_id if driver else None,
        "is_leader": bool(driver and driver.is_leader),
        "raft_term": driver.core.term if driver else None,
        "applied": driver.store.applied if driver else None,
        **d._event_counts(),
    }
    running = sum(1 for st in status.values() if st.state is TaskState.RUNNING)
    info.update(
        {
            "ID": d.node.node_id,
            "Name": d.node.hostname,
            "Containers": len(status),
            "ContainersRunning": running,
            "ContainersPaused": 0,
            "ContainersStopped": len(status) - running,
            "ServerVersion": server_version(),
            "Driver": d.agent.driver.name,
            "Broker": str(d.session.connected_to or d.session.rotation.current),
            "BrokerAddresses": [str(a) for a in d.session.rotation.addresses],
            "Swarm": _swarm(d, info),
        }
    )
    return info


def _swarm(d: Any, info: dict[str, Any]) -> dict[str, Any]:
    if info["removed"]:
        state, error = "error", f"this node was removed from the swarm: {info['removed']}"
    elif info["locked"]:
        state, error = "locked", ""
    else:
        state, error = "active", info["last_error"] or ""
    swarm: dict[str, Any] = {
        "NodeID": d.node.node_id,
        "NodeAddr": d.agent.underlay() or "",
        "LocalNodeState": state,
        "ControlAvailable": d.manager is not None,
        "Error": error,
        # nodes reach the managers through the broker only: it is their one address
        "RemoteManagers": [{"NodeID": "", "Addr": str(a)} for a in d.session.rotation.addresses],
    }
    if d.manager is not None and d.driver is not None:
        from agent.manager.control.system import RaftSettings, swarm_info

        raft = RaftSettings(
            snapshot_interval=d.driver.snapshot_every,
            heartbeat_tick=d.driver.config.heartbeat_tick,
            election_tick=d.driver.config.election_tick,
            tick_s=d.driver.tick_interval,
        )
        swarm.update(swarm_info(d.manager.store.view(), raft, heartbeat_s=d.node.heartbeat))
    return swarm


def disk_usage(d: Any) -> dict[str, Any]:
    """`system df` from this manager's store and Raft directory."""
    from agent.manager.control.system import disk_usage as usage

    manager = d._need_manager()
    return usage(manager.store.view(), d.data.raft)
