"""mon/cluster: the leader's summary of the swarm, built from the store and Raft's state."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agent.manager.cluster_monitor import ClusterMonitor, RaftState, cluster_doc
from agent.manager.store import Node, NodeRole, NodeStatus, Store
from agent.manager.store.store import Tx
from broker.topics import Topics

MANAGERS = [
    Node(id="m2", hostname="pi-2", role=NodeRole.MANAGER, status=NodeStatus.DOWN),
    Node(id="m1", hostname="pi-1", role=NodeRole.MANAGER, status=NodeStatus.READY),
    Node(id="m3", hostname="pi-3", role=NodeRole.MANAGER, status=NodeStatus.READY),
    Node(id="w1", hostname="pi-9", role=NodeRole.WORKER, status=NodeStatus.READY),
]


def _store(nodes: list[Node]) -> Store:
    s = Store()
    index = 1

    async def commit(data: bytes) -> int:
        nonlocal index
        index += 1
        s.apply(index, data)
        return index

    s.proposer = commit

    def put(tx: Tx) -> None:
        for n in nodes:
            tx.put(n)

    asyncio.run(s.update(put))
    return s


def test_cluster_summary_names_the_leader_raft_indices_managers_and_broker() -> None:
    store = _store(MANAGERS)
    raft = RaftState(leader="m1", term=4, commit_index=812, applied_index=811, voters=("m1", "m2"))
    doc = cluster_doc(store.view(), raft, ["mqtts://pi-1:8883"], 1796300593.14)
    assert doc == {
        "leader": "m1",
        "term": 4,
        "commit_index": 812,
        "applied_index": 811,
        "managers": [
            {"id": "m1", "hostname": "pi-1", "reachability": "reachable"},
            {"id": "m2", "hostname": "pi-2", "reachability": "unreachable"},
            {"id": "m3", "hostname": "pi-3", "reachability": "unknown"},  # not a voter yet
        ],
        "broker": {"backend": "mosquitto", "addresses": ["mqtts://pi-1:8883"]},
        "time": 1796300593.1,
    }


class _Session:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], bool]] = []

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.sent.append((topic, json.loads(payload), retain))


def test_the_summary_is_published_retained_and_not_again_when_only_time_moved() -> None:
    store = _store(MANAGERS[:2])
    session = _Session()
    term = [4]
    now = [1000.0]
    mon = ClusterMonitor(
        store,
        session,  # type: ignore[arg-type]
        Topics("c1"),
        lambda: RaftState("m1", term[0], 2, 2, ("m1",)),
        clock=lambda: now[0],
    )

    async def go() -> None:
        await mon._publish({"*"})
        now[0] += 5
        await mon._publish({"*"})  # nothing changed but the time
        term[0] = 5
        await mon._publish({"*"})

    asyncio.run(go())
    assert [(t, d["term"], r) for t, d, r in session.sent] == [
        ("shoal/c1/mon/cluster", 4, True),
        ("shoal/c1/mon/cluster", 5, True),
    ]
