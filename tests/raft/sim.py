"""Deterministic simulation of a whole shoal Raft group in one process, from one seed.

Everything random comes from one `random.Random(seed)`: the group's shape and settings, the
network (delay, reordering, loss, duplication, partitions), crashes and restarts, compaction,
leadership transfers, membership changes and the clients. Each node is driven exactly as the
driver contract says: persist a Ready, then (in a later step, so a crash can fall in between)
send its messages, apply its committed entries and advance. A crash loses everything not yet
persisted. The safety checkers run after every step; the clients' history of a key/value
register is checked for linearizability at the end.

`bug` deliberately breaks the driver or the core, to prove the checkers catch it:
- "skip-vote-persist": the driver does not persist the vote of its hard state;
- "ack-before-persist": the driver sends a Ready's messages before persisting it;
- "count-prior-term": the leader commits entries of earlier terms by counting replicas.
"""

from __future__ import annotations

import json
import random
import traceback
from dataclasses import dataclass

from agent.manager.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalError,
    RaftNode,
    Ready,
    StateType,
    describe_message,
)
from agent.manager.raft.log import RaftLog

from .checkers import SafetyChecker
from .linearizability import Operation, check_history
from .sim_clients import ClientOp, Clients, SimNode

BUGS = ("skip-vote-persist", "ack-before-persist", "count-prior-term")


class _CountPriorTermLog(RaftLog):
    """The Figure 8 bug: commit whatever a majority holds, whatever its term."""

    __slots__ = ()

    def maybe_commit(self, max_index: int, term: int) -> bool:
        if max_index > self.committed:
            self.commit_to(max_index)
            return True
        return False


def _digest(kv: dict[str, str]) -> int:
    return hash(tuple(sorted(kv.items())))


@dataclass
class SimResult:
    seed: int
    violations: list[str]
    steps: int
    commits: int
    history: list[Operation]
    trace: list[str]


class Simulation(Clients):
    def __init__(
        self, seed: int, steps: int = 400, bug: str | None = None, trace: bool = False
    ) -> None:
        if bug is not None and bug not in BUGS:
            raise ValueError(f"unknown bug {bug!r}; one of {BUGS}")
        self.seed, self.steps, self.bug, self.tracing = seed, steps, bug, trace
        self.rng = rng = random.Random(seed)
        self.n_voters = rng.choice((3, 3, 5))
        n_spares = rng.choice((0, 0, 2))
        self.pre_vote = rng.random() < 0.8
        self.check_quorum = rng.random() < 0.8
        self.election_tick = rng.randint(4, 10)
        self.p_drop = rng.choice((0.0, 0.02, 0.1))
        self.p_dup = rng.choice((0.0, 0.02, 0.05))
        self.p_deliver = rng.choice((0.5, 0.8, 1.0))
        self.p_fault = rng.choice((0.01, 0.03, 0.06))
        self.p_client = rng.choice((0.2, 0.5))
        self.max_delay = rng.choice((0, 1, 3))
        self.compact_every = rng.choice((0, 5, 20))  # 0: only as a fault
        self.max_entries = rng.choice((1, 8))
        if bug is not None:  # hunting: crash more often, in the windows bugs hide in
            self.p_fault = 0.1
        self.checker = SafetyChecker()
        self.trace: list[str] = []
        self.now = 0
        self.net: list[tuple[int, Message]] = []
        self.group: dict[str, int] = {}
        self.removed: set[str] = set()
        self.added: set[str] = set()
        self.spares = [str(i) for i in range(self.n_voters + 1, self.n_voters + n_spares + 1)]
        voters = [str(i) for i in range(1, self.n_voters + 1)]
        self.nodes: dict[str, SimNode] = {}
        for nid in voters + self.spares:
            storage = MemoryStorage.bootstrap(voters) if nid in voters else MemoryStorage()
            node = SimNode(nid, storage)
            snap = storage.snapshot()
            node.chain_base = snap.index
            node.chain = [self.checker.chain_base(snap.index, snap.term)]
            self.nodes[nid] = node
            self._start(node)
        self.clients: list[ClientOp | None] = [None] * rng.randint(2, 4)
        self.preferred: list[str] = [rng.choice(voters) for _ in self.clients]
        self.history: dict[int, Operation] = {}
        self.events = 0
        self.next_op = 0
        self.commits = 0

    # ------------------------------------------------------------------ running

    def run(self) -> SimResult:
        try:
            for _ in range(self.steps):
                self.step(faults=True)
                if self.checker.violations:
                    break
            if not self.checker.violations:
                self.settle()
        except Exception:
            self.checker.fail("exception:\n" + traceback.format_exc())
        history = self.close_history()
        if not self.checker.violations:
            bad = check_history(history)
            if bad:
                self.checker.fail(f"linearizability: the history of keys {bad} is not linearizable")
        return SimResult(
            self.seed, self.checker.violations, self.steps, self.commits, history, self.trace
        )

    def note(self, what: str) -> None:
        if self.tracing:
            self.trace.append(f"[t={self.now}] {what}")

    def step(self, faults: bool) -> None:
        if faults and self.rng.random() < self.p_fault:
            self.fault()
        if faults and self.rng.random() < self.p_client:
            self.client_start()
        self.deliver()
        if self.rng.random() < 0.3:
            self.tick()
        for node in self.running():
            self.process(node)
        self.check()

    def running(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.raft is not None]

    def _start(self, node: SimNode) -> None:
        snap = node.storage.snapshot()
        node.raft = RaftNode(
            Config(
                id=node.id,
                storage=node.storage,
                rng=random.Random(self.rng.getrandbits(64)),
                election_tick=self.election_tick,
                pre_vote=self.pre_vote,
                check_quorum=self.check_quorum,
                max_entries_per_msg=self.max_entries,
                max_inflight_msgs=4,
                applied=snap.index,
            )
        )
        if self.bug == "count-prior-term":
            node.raft.log.__class__ = _CountPriorTermLog
        node.kv = dict(json.loads(snap.data)) if snap.data else {}
        node.applied = snap.index
        node.last_commit = node.raft.commit
        node.pending = None

    # ------------------------------------------------------------------ the driver

    def process(self, node: SimNode) -> None:
        raft = node.raft
        assert raft is not None
        if node.pending is not None:
            self.flush(node)
        if raft.has_ready():
            rd = raft.ready()
            if self.bug == "ack-before-persist":
                self.send(rd.messages)
            else:
                self.persist(node, rd)
            node.pending = rd

    def persist(self, node: SimNode, rd: Ready) -> None:
        st = node.storage
        if rd.snapshot is not None:
            st.apply_snapshot(rd.snapshot)
            node.chain_base = rd.snapshot.index
            node.chain = [self.checker.chain_base(rd.snapshot.index, rd.snapshot.term)]
        if rd.entries:
            st.append(rd.entries)
            self.checker.chain_append(node.id, node.chain, node.chain_base, rd.entries)
        if rd.hard_state is not None:
            hs = rd.hard_state
            if self.bug == "skip-vote-persist":
                hs = HardState(
                    hs.term,
                    st.hard_state.vote if st.hard_state.term == hs.term else None,
                    hs.commit,
                )
            st.set_hardstate(hs)

    def flush(self, node: SimNode) -> None:
        raft, rd = node.raft, node.pending
        assert raft is not None and rd is not None
        node.pending = None
        if self.bug == "ack-before-persist":
            self.persist(node, rd)
        else:
            self.send(rd.messages)
        for m in rd.messages:
            if m.type is MessageType.Snap:
                raft.report_snapshot(m.to, ok=True)  # sent; whether it arrives, we never know
        if rd.snapshot is not None:
            node.kv = dict(json.loads(rd.snapshot.data)) if rd.snapshot.data else {}
            node.applied = rd.snapshot.index
            self.checker.observe_state(node.id, node.applied, _digest(node.kv))
        for e in rd.committed_entries:
            if e.type is EntryType.ConfChange:
                cc = ConfChange.decode(e.data)
                raft.apply_conf_change(cc)
                if cc.kind is ConfChangeType.RemoveNode:
                    self.removed.add(cc.node_id)
                self.note(f"{node.id} applied {cc}")
            elif e.data:
                key, _, value = e.data.decode().partition("=")
                node.kv[key] = value
            node.applied = e.index
            self.checker.observe_apply(node.id, e, _digest(node.kv))
            self.client_applied(node, e.index, e.term)
        for rs in rd.read_states:
            for op in self.clients:
                if op is not None and op.ctx == rs.ctx and op.node == node.id:
                    op.read_index = rs.index
        raft.advance(rd)
        self.client_reads_ready(node)
        if self.compact_every and node.applied - node.storage.snapshot().index > self.compact_every:
            self.compact(node)

    def send(self, msgs: tuple[Message, ...]) -> None:
        for m in msgs:
            if self.rng.random() < self.p_drop:
                continue
            copies = 2 if self.rng.random() < self.p_dup else 1
            for _ in range(copies):
                self.net.append((self.now + self.rng.randint(0, self.max_delay), m))

    def reachable(self, a: str, b: str) -> bool:
        return self.group.get(a, 0) == self.group.get(b, 0)

    def deliver(self) -> None:
        due = [x for x in self.net if x[0] <= self.now]
        if not due:
            return
        self.net = [x for x in self.net if x[0] > self.now]
        self.rng.shuffle(due)
        for when, m in due:
            if self.rng.random() >= self.p_deliver:
                self.net.append((when, m))  # later, maybe after others: reordering
                continue
            node = self.nodes.get(m.to)
            if node is None or node.raft is None or not self.reachable(m.frm, m.to):
                continue
            node.raft.step(m)

    def tick(self) -> None:
        self.now += 1
        for node in self.running():
            assert node.raft is not None
            node.raft.tick()
        self.client_deadlines()

    def check(self) -> None:
        for node in self.running():
            assert node.raft is not None
            if self.tracing and node.raft.state is StateType.Leader:
                if self.checker.leaders.get(node.raft.term) is None:
                    self.note(f"{node.id} leads term {node.raft.term}")
            self.checker.observe_node(node.raft, node.last_commit)
            if node.raft.commit > node.last_commit and node.raft.state is StateType.Leader:
                self.commits += node.raft.commit - node.last_commit
            node.last_commit = node.raft.commit

    # ------------------------------------------------------------------ faults

    def leader(self) -> SimNode | None:
        leaders = [
            n for n in self.running() if n.raft is not None and n.raft.state is StateType.Leader
        ]
        return max(leaders, key=lambda n: n.raft.term if n.raft else 0, default=None)

    def fault(self) -> None:
        rng = self.rng
        kinds: tuple[str, ...] = (
            "crash",
            "restart",
            "restart",
            "partition",
            "heal",
            "compact",
            "transfer",
            "member",
        )
        if self.bug is not None:  # hunting: crash and restart more than anything else
            kinds = ("crash", "crash", "restart", "restart", "restart", "partition", "heal")
        kind = rng.choice(kinds)
        running = self.running()
        down = [n for n in self.nodes.values() if n.raft is None and n.id not in self.removed]
        if kind == "crash" and running:
            node = rng.choice(running)
            node.raft, node.pending = None, None
            node.incarnation += 1
            node.kv = {}
            self.note(f"crash {node.id}")
        elif kind == "restart" and down:
            node = rng.choice(down)
            node.incarnation += 1
            self._start(node)
            self.note(f"restart {node.id}")
        elif kind == "partition":
            self.group = {nid: rng.randint(0, 1) for nid in self.nodes}
            self.note(f"partition {sorted(self.group.items())}")
        elif kind == "heal":
            self.group = {}
            self.note("heal")
        elif kind == "compact" and running:
            self.compact(rng.choice(running))
        elif kind == "transfer":
            lead = self.leader()
            if lead is not None and lead.raft is not None:
                others = [v for v in lead.raft.voters if v != lead.id]
                if others:
                    to = rng.choice(others)
                    self.note(f"transfer {lead.id} -> {to}")
                    lead.raft.transfer_leadership(to)
        elif kind == "member":
            self.change_membership()

    def compact(self, node: SimNode) -> None:
        st, raft = node.storage, node.raft
        assert raft is not None
        if node.applied <= st.snapshot().index:
            return
        st.create_snapshot(node.applied, raft.voters, json.dumps(sorted(node.kv.items())).encode())
        upto = node.applied - self.rng.randint(0, 2)
        if upto >= st.first_index():
            st.compact(upto)
        self.note(f"compact {node.id} up to {upto} (snapshot at {node.applied})")

    def change_membership(self) -> None:
        lead = self.leader()
        if lead is None or lead.raft is None:
            return
        spares = [s for s in self.spares if s not in self.added]
        voters = lead.raft.voters
        if spares and self.rng.random() < 0.6:
            cc = ConfChange(ConfChangeType.AddNode, spares[0])
        elif len(voters) > 3:
            cc = ConfChange(ConfChangeType.RemoveNode, self.rng.choice(voters))
        else:
            return
        try:
            lead.raft.propose_conf_change(cc)
        except ProposalError:
            return
        if cc.kind is ConfChangeType.AddNode:
            self.added.add(cc.node_id)
        self.note(f"{lead.id} proposes {cc}")

    # ------------------------------------------------------------------ the end

    def settle(self, max_steps: int = 3000) -> None:
        """Heal everything, restart every member, and require the group to converge."""
        self.group = {}
        self.p_drop = self.p_dup = 0.0
        self.p_deliver = 1.0
        for node in self.nodes.values():
            if node.id in self.removed:
                node.raft = None
            elif node.raft is None:
                node.incarnation += 1
                self._start(node)
        for _ in range(max_steps):
            self.step(faults=False)
            if self.checker.violations or self.converged():
                return
        states = {
            n.id: (n.raft.state.value, n.raft.term, n.raft.commit) for n in self.running() if n.raft
        }
        self.checker.fail(f"liveness: the group did not converge after healing: {states}")

    def converged(self) -> bool:
        lead = self.leader()
        if lead is None or lead.raft is None:
            return False
        raft = lead.raft
        if raft.log.term(raft.commit) != raft.term:
            return False
        for v in raft.voters:
            node = self.nodes[v]
            if node.raft is None or node.applied != raft.commit or node.raft.leader_id != lead.id:
                return False
        return True


def describe_net(sim: Simulation) -> list[str]:
    return [f"@{when} {describe_message(m)}" for when, m in sim.net]
