"""A small in-memory group of RaftNodes for the unit tests: a driver that follows the
contract (persist, send, apply, advance) and a network that can cut nodes off."""

from __future__ import annotations

import random
from typing import Any

from agent.manager.raft import (
    ConfChange,
    Config,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    RaftNode,
    ReadState,
    StateType,
)


class Group:
    def __init__(self, n: int = 3, **config: Any) -> None:
        self.config = config
        self.ids = [str(i) for i in range(1, n + 1)]
        self.storages: dict[str, MemoryStorage] = {}
        self.nodes: dict[str, RaftNode] = {}
        self.applied: dict[str, list[Entry]] = {}
        self.read_states: dict[str, list[ReadState]] = {}
        self.sent: list[Message] = []
        self.cut: set[str] = set()
        self.inbox: list[Message] = []
        #: how the driver reports snapshots it sent, and whether the network loses them
        self.snapshot_ok = True
        self.lose_snapshots = False
        for nid in self.ids:
            self.add(nid, MemoryStorage.bootstrap(self.ids))

    def add(self, nid: str, storage: MemoryStorage, applied: int | None = None) -> RaftNode:
        cfg = {"election_tick": 10, "heartbeat_tick": 1, **self.config}
        node = RaftNode(
            Config(
                id=nid,
                storage=storage,
                rng=random.Random(f"group-{nid}"),
                applied=storage.snapshot().index if applied is None else applied,
                **cfg,
            )
        )
        self.storages[nid], self.nodes[nid] = storage, node
        self.applied.setdefault(nid, [])
        self.read_states.setdefault(nid, [])
        return node

    def __getitem__(self, nid: str) -> RaftNode:
        return self.nodes[nid]

    def restart(self, nid: str) -> RaftNode:
        """A crash and restart: only what the storage holds survives."""
        self.inbox = [m for m in self.inbox if m.to != nid]
        return self.add(nid, self.storages[nid])

    def handle_ready(self, nid: str) -> None:
        node, st = self.nodes[nid], self.storages[nid]
        rd = node.ready()
        if rd.snapshot is not None:
            st.apply_snapshot(rd.snapshot)
        st.append(rd.entries)
        if rd.hard_state is not None:
            st.set_hardstate(rd.hard_state)
        self.sent.extend(rd.messages)
        self.inbox.extend(
            m
            for m in rd.messages
            if m.frm not in self.cut
            and m.to not in self.cut
            and not (self.lose_snapshots and m.type is MessageType.Snap)
        )
        for e in rd.committed_entries:
            if e.type is EntryType.ConfChange:
                node.apply_conf_change(ConfChange.decode(e.data))
            self.applied[nid].append(e)
        self.read_states[nid].extend(rd.read_states)
        node.advance(rd)
        for m in rd.messages:
            if m.type is MessageType.Snap:
                node.report_snapshot(m.to, ok=self.snapshot_ok)

    def stabilize(self, max_rounds: int = 1000) -> None:
        for _ in range(max_rounds):
            busy = False
            for nid in sorted(self.nodes):
                if self.nodes[nid].has_ready():
                    self.handle_ready(nid)
                    busy = True
            inbox, self.inbox = self.inbox, []
            for m in inbox:
                if m.to in self.nodes and m.to not in self.cut and m.frm not in self.cut:
                    self.nodes[m.to].step(m)
                    busy = True
            if not busy:
                return
        raise AssertionError("the group did not settle")

    def tick(self, nid: str, n: int = 1) -> None:
        for _ in range(n):
            self.nodes[nid].tick()

    def elect(self, nid: str) -> RaftNode:
        self.nodes[nid].campaign()
        self.stabilize()
        assert self.nodes[nid].state is StateType.Leader
        return self.nodes[nid]

    def take_sent(self) -> list[Message]:
        sent, self.sent = self.sent, []
        return sent

    def data_applied(self, nid: str) -> list[bytes]:
        return [e.data for e in self.applied[nid] if e.type is EntryType.Normal and e.data]
