"""`shoal swarm init --force-new-cluster` on a manager's running daemon: recover a swarm whose
managers lost their quorum, from this manager's state.

The daemon stops its manager role (its worker role, its tasks and its embedded broker go on),
its Raft log is rewritten into a group of this manager alone (`force_new_group`: every
service, task, secret, config, network, node and the CA kept; the other managers removed
from the store, their certificates revoked), and the manager role starts again on it, as the
leader of its own group, at once. The join tokens and certificates of every other node stay
valid, so workers carry on; new managers join with `shoal swarm join-token manager`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from agent.model.errors import ShoalError

if TYPE_CHECKING:
    from agent.daemon import Daemon

__all__ = ["force_new_cluster"]

log = logging.getLogger("shoal.daemon")

QUORUM_PROBE_S = 2.0  # how long a read barrier may take to show the group still has a quorum


async def _has_quorum(driver: Any) -> bool:
    """Whether the group answers a linearizable read (that needs a leader and a quorum)."""
    from agent.manager.raft import RaftError

    if driver is None or driver.failure is not None:
        return False
    try:
        await driver.read_barrier(timeout=QUORUM_PROBE_S)
        return True
    except (RaftError, TimeoutError):
        return False


async def force_new_cluster(daemon: Daemon, args: dict[str, Any]) -> dict[str, Any]:
    from agent.manager.keys import DataKeyError, DataKeyFile
    from agent.manager.logstore import force_new_group
    from agent.manager.raft import RaftError

    node = daemon.node
    if node.role != "manager":
        raise ShoalError(
            f"--force-new-cluster: this node ({node.node_id}) is a worker; run it on a manager"
            " (its data dir holds the swarm's state)"
        )
    if daemon.manager is None and daemon._manager_error is None:
        raise ShoalError("the manager role of this node is still starting; try again in a moment")
    if not node.embedded_broker and not daemon.session.connected:
        why = daemon.session.last_error or "not connected"
        raise ShoalError(
            f"--force-new-cluster: this node cannot reach the swarm's broker at"
            f" {node.broker_host}:{node.broker_port} ({why}):"
            " the recovered swarm would reach no node. Bring the broker back, or recover from"
            " the manager that hosts it (the swarm's first manager)"
        )
    warning = ""
    if await _has_quorum(daemon.driver):
        warning = (
            "the swarm still has a quorum of managers: forcing a new cluster removes the"
            f" other managers ({', '.join(v for v in daemon.driver.voters if v != node.node_id)})"
            " from it"
        )
        log.warning("--force-new-cluster: %s", warning)
    await daemon._halt_manager()
    try:
        data_key = DataKeyFile(daemon.data.manager / "data-key").load(daemon.lock.key)
        forced = await force_new_group(daemon.data.raft, data_key, node.node_id)
    except (DataKeyError, RaftError) as exc:
        await daemon._start_manager()  # the state is as it was: run on it again
        daemon._start_manager_tasks()
        raise ShoalError(f"--force-new-cluster: {exc}") from None
    log.info(
        "forced a new cluster from this manager's state: term %d, index %d, removed %s",
        forced.term,
        forced.index,
        ", ".join(forced.removed) or "no other manager",
    )
    daemon._manager_error = None
    await daemon._start_manager()
    daemon._start_manager_tasks()
    daemon.session.reconnect()  # subscribe to the manager topics again
    if daemon.driver is None:
        raise ShoalError(f"--force-new-cluster: {daemon._manager_error}")
    if not daemon.driver.is_leader:  # its run() campaigns at once, as the only voter
        await daemon.driver.leader_changed(10.0)
    await daemon.driver.wait_serving(timeout=10.0)
    return {
        "node_id": node.node_id,
        "removed": list(forced.removed),
        "term": forced.term,
        "warning": warning,
        "embedded_broker": node.embedded_broker,
        "broker": f"{node.broker_host}:{node.broker_port}",
    }
