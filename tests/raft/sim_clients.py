"""The clients of the simulation: they put and get keys of a register through whichever
node they reach, and record what they saw (invocations and completions, or an unknown outcome)
for the linearizability checker."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from agent.manager.raft import MemoryStorage, ProposalError, RaftNode, Ready

from .linearizability import Operation


@dataclass
class SimNode:
    """A simulated manager: durable storage (survives crashes), its RaftNode while it runs,
    its key/value state machine, and the Ready persisted but not yet sent and applied."""

    id: str
    storage: MemoryStorage
    raft: RaftNode | None = None
    incarnation: int = 0
    kv: dict[str, str] = field(default_factory=dict)
    applied: int = 0
    pending: Ready | None = None
    chain: list[int] = field(default_factory=list)
    chain_base: int = 0
    last_commit: int = 0


@dataclass
class ClientOp:
    """An operation a client has invoked and is waiting for."""

    op_id: int
    key: str
    kind: Literal["put", "get"]
    value: str | None
    call: int
    node: str
    incarnation: int
    deadline: int
    entry: tuple[int, int] | None = None  # (term, index) of a put
    ctx: bytes = b""
    read_index: int | None = None


class Clients:
    """Mixed into `Simulation`, which provides the attributes declared here."""

    rng: random.Random
    now: int
    election_tick: int
    nodes: dict[str, SimNode]
    clients: list[ClientOp | None]
    preferred: list[str]
    history: dict[int, Operation]
    events: int
    next_op: int

    def note(self, what: str) -> None:
        raise NotImplementedError

    def event(self) -> int:
        self.events += 1
        return self.events

    def client_start(self) -> None:
        idle = [i for i, op in enumerate(self.clients) if op is None]
        if not idle:
            return
        c = self.rng.choice(idle)
        node = self.nodes[self.preferred[c]]
        if node.raft is None or self.rng.random() < 0.2:
            node = self.rng.choice(list(self.nodes.values()))
        if node.raft is None:
            return
        key = self.rng.choice("abc")
        self.next_op += 1
        deadline = self.now + 4 * self.election_tick
        try:
            if self.rng.random() < 0.5:
                value = f"v{self.next_op}"
                entry = node.raft.propose(f"{key}={value}".encode())
                op = ClientOp(
                    self.next_op,
                    key,
                    "put",
                    value,
                    self.event(),
                    node.id,
                    node.incarnation,
                    deadline,
                    entry=(entry.term, entry.index),
                )
            else:
                ctx = f"read-{self.next_op}".encode()
                node.raft.read_index(ctx)
                op = ClientOp(
                    self.next_op,
                    key,
                    "get",
                    None,
                    self.event(),
                    node.id,
                    node.incarnation,
                    deadline,
                    ctx=ctx,
                )
        except ProposalError as exc:
            leader_id = getattr(exc, "leader_id", None)
            if leader_id is not None:
                self.preferred[c] = leader_id
            return
        self.clients[c] = op
        self.note(f"client {c} invokes {op.kind} {op.key} {op.value or ''} at {node.id}")

    def _finish(self, c: int, op: ClientOp, value: str | None, ok: bool) -> None:
        self.clients[c] = None
        ret = self.event() if ok else None
        if op.kind == "put" or ok:
            self.history[op.op_id] = Operation(op.key, op.kind, value, op.call, ret)
        self.note(f"client {c} {op.kind} {op.key} -> {value if ok else 'unknown'}")

    def client_applied(self, node: SimNode, index: int, term: int) -> None:
        for c, op in enumerate(self.clients):
            if (
                op is not None
                and op.kind == "put"
                and op.node == node.id
                and op.incarnation == node.incarnation
                and op.entry is not None
                and op.entry[1] == index
            ):
                if op.entry[0] == term:
                    self._finish(c, op, op.value, ok=True)
                else:  # another entry took its place: it never took effect
                    self.clients[c] = None

    def client_reads_ready(self, node: SimNode) -> None:
        for c, op in enumerate(self.clients):
            if (
                op is not None
                and op.kind == "get"
                and op.node == node.id
                and op.incarnation == node.incarnation
                and op.read_index is not None
                and node.applied >= op.read_index
            ):
                self._finish(c, op, node.kv.get(op.key), ok=True)

    def client_deadlines(self) -> None:
        for c, op in enumerate(self.clients):
            if op is not None and (
                self.now >= op.deadline or self.nodes[op.node].incarnation != op.incarnation
            ):
                self._finish(c, op, op.value, ok=False)

    def close_history(self) -> list[Operation]:
        for c, op in enumerate(self.clients):
            if op is not None:
                self._finish(c, op, op.value, ok=False)
        return [self.history[k] for k in sorted(self.history)]
