"""``mon/cluster``: the leader's retained summary of the swarm (who leads, Raft's indices, the
managers and their reachability, the broker), published at start and after changes, at most
once a ``debounce`` (1 s), and only when something other than its time changed."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.manager.reconcile.reconciler import Reconciler, everything
from agent.manager.store import Node, NodeRole, NodeStatus, Store, View
from broker.errors import BrokerError
from broker.session import Session
from broker.topics import Topics

__all__ = ["ClusterMonitor", "RaftState", "cluster_doc"]

log = logging.getLogger("shoal.monitor")


@dataclass(frozen=True, slots=True)
class RaftState:
    leader: str | None
    term: int
    commit_index: int
    applied_index: int
    voters: tuple[str, ...]


def reachability(node: Node, voters: Sequence[str], leader: str | None) -> str:
    """Docker's ManagerStatus.Reachability: ``reachable``, ``unreachable`` or ``unknown``."""
    if node.id == leader:
        return "reachable"
    if node.id not in voters:
        return "unknown"
    return "reachable" if node.status == NodeStatus.READY else "unreachable"


def cluster_doc(
    view: View, raft: RaftState, broker_addresses: Sequence[str], now: float
) -> dict[str, Any]:
    managers = sorted(
        (n for n in view.list(Node) if n.role == NodeRole.MANAGER), key=lambda n: n.id
    )
    return {
        "leader": raft.leader or "",
        "term": raft.term,
        "commit_index": raft.commit_index,
        "applied_index": raft.applied_index,
        "managers": [
            {
                "id": n.id,
                "hostname": n.hostname,
                "reachability": reachability(n, raft.voters, raft.leader),
            }
            for n in managers
        ],
        "broker": {"backend": "mosquitto", "addresses": list(broker_addresses)},
        "time": round(now, 1),
    }


class ClusterMonitor:
    def __init__(
        self,
        store: Store,
        session: Session,
        topics: Topics,
        raft: Callable[[], RaftState],
        *,
        broker_addresses: Sequence[str] = (),
        debounce: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.session = session
        self.topic = topics.mon("cluster")
        self.raft = raft
        self.broker_addresses = tuple(broker_addresses)
        self.clock = clock
        self.last: dict[str, Any] | None = None
        self.shell: Reconciler[str] = Reconciler(
            store,
            ("node", "cluster", "service", "task", "network", "secret", "config"),
            self._publish,
            start=everything,
            note=everything,
            debounce=debounce,
            first_at_once=True,
        )

    async def run(self) -> None:
        self.last = None  # a new leadership publishes once, whatever was there
        await self.shell.run()

    async def _publish(self, dirty: set[str]) -> bool:
        doc = cluster_doc(self.store.view(), self.raft(), self.broker_addresses, self.clock())
        same = self.last is not None and {**self.last, "time": 0} == {**doc, "time": 0}
        if same:
            return True
        try:
            await self.session.publish(self.topic, json.dumps(doc).encode(), retain=True)
        except BrokerError as exc:
            log.warning("could not publish the cluster summary: %s", exc)
            return False
        self.last = doc
        return True
