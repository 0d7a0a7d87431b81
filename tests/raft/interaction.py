"""The interpreter behind the transcript tests (testdata/*.txt), after etcd-io/raft's
interaction environment: a group of RaftNodes driven by explicit commands, printing what
they do in a compact, deterministic form.

Commands (ids are node ids; `k=v` arguments are optional):

    add-nodes N [voters=1,2,3] [joining] [election-tick=3] [pre-vote=true] [check-quorum=true]
    campaign ID                 tick ID [N]        tick-heartbeat ID       tick-election ID
    propose ID DATA             propose-conf-change ID add=X|remove=X
    transfer-leadership from=ID to=ID              read-index ID CTX
    process-ready ID...         deliver-msgs ID... [drop] [type=MsgApp]
    stabilize [ID...]           partition ID...    heal
    compact ID INDEX            report-unreachable ID TO
    status ID                   raft-log ID        raft-state

`stabilize` handles Readies and delivers messages until nothing is left to do. A Ready is
handled as the driver contract says: persist, send, apply (conf changes too), advance; a
MsgSnap is reported as sent right after. `partition` cuts the listed nodes off from the rest
(messages across the cut are dropped as they are sent); `heal` removes the cut.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from agent.manager.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    ProposalError,
    RaftError,
    RaftNode,
    describe_entry,
    describe_message,
    describe_ready,
)


@dataclass
class Node:
    raft: RaftNode
    storage: MemoryStorage
    #: (index, data) of the normal entries applied (restored from snapshot data as well)
    applied: list[tuple[int, str]] = field(default_factory=list)


class InteractionEnv:
    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.mailbox: list[Message] = []
        self.cut: set[str] = set()
        self.out: list[str] = []

    # ------------------------------------------------------------------ entry point

    def run(self, command: str) -> str:
        self.out = []
        words = command.split()
        name, args = words[0], words[1:]
        before = {nid: self._soft(n.raft) for nid, n in self.nodes.items()}
        handler = getattr(self, "cmd_" + name.replace("-", "_"), None)
        if handler is None:
            raise ValueError(f"unknown command {name!r}")
        try:
            handler(args)
        except (ProposalError, RaftError) as exc:
            self.out.append(f"error: {type(exc).__name__}: {exc}")
        if name not in ("stabilize", "process-ready", "add-nodes"):
            for nid, node in sorted(self.nodes.items()):
                soft = self._soft(node.raft)
                if nid in before and before[nid] != soft:
                    self.out.append(f"INFO {nid} is {soft}")
        return "\n".join(self.out) if self.out else "ok"

    @staticmethod
    def _soft(r: RaftNode) -> str:
        return f"{r.state.value} at term {r.term}, leader {r.leader_id or '-'}"

    @staticmethod
    def _kv(args: list[str]) -> tuple[list[str], dict[str, str]]:
        pos = [a for a in args if "=" not in a]
        kv = dict(a.split("=", 1) for a in args if "=" in a)
        return pos, kv

    def _node(self, nid: str) -> Node:
        if nid not in self.nodes:
            raise ValueError(f"no node {nid}")
        return self.nodes[nid]

    # ------------------------------------------------------------------ commands

    def cmd_add_nodes(self, args: list[str]) -> None:
        pos, kv = self._kv(args)
        first = len(self.nodes) + 1
        ids = [str(i) for i in range(first, first + int(pos[0]))]
        voters = kv["voters"].split(",") if "voters" in kv else ids
        for nid in ids:
            if "joining" in pos:
                storage = MemoryStorage()
            else:
                storage = MemoryStorage.bootstrap(voters)
            raft = RaftNode(
                Config(
                    id=nid,
                    storage=storage,
                    rng=random.Random(f"transcript-{nid}"),
                    election_tick=int(kv.get("election-tick", 3)),
                    heartbeat_tick=1,
                    pre_vote=kv.get("pre-vote", "true") == "true",
                    check_quorum=kv.get("check-quorum", "true") == "true",
                    max_entries_per_msg=int(kv.get("max-entries", 64)),
                    applied=storage.snapshot().index,
                )
            )
            self.nodes[nid] = Node(raft, storage)
            self.out.append(self._state_line(nid))

    def cmd_campaign(self, args: list[str]) -> None:
        self._node(args[0]).raft.campaign()

    def cmd_tick(self, args: list[str]) -> None:
        raft = self._node(args[0]).raft
        for _ in range(int(args[1]) if len(args) > 1 else 1):
            raft.tick()

    def cmd_tick_heartbeat(self, args: list[str]) -> None:
        raft = self._node(args[0]).raft
        for _ in range(raft.config.heartbeat_tick):
            raft.tick()

    def cmd_tick_election(self, args: list[str]) -> None:
        """Tick until the election timer fires: a follower or candidate campaigns, a leader
        checks its quorum (and gives up a pending transfer)."""
        raft = self._node(args[0]).raft
        if raft.state.value == "StateLeader":
            timeout = raft.config.election_tick
        else:
            timeout = raft.randomized_election_timeout
        for _ in range(max(1, timeout - raft.election_elapsed)):
            raft.tick()

    def cmd_propose(self, args: list[str]) -> None:
        e = self._node(args[0]).raft.propose(args[1].encode())
        self.out.append(f"proposed {describe_entry(e)}")

    def cmd_propose_conf_change(self, args: list[str]) -> None:
        pos, kv = self._kv(args)
        if "add" in kv:
            cc = ConfChange(ConfChangeType.AddNode, kv["add"])
        else:
            cc = ConfChange(ConfChangeType.RemoveNode, kv["remove"])
        e = self._node(pos[0]).raft.propose_conf_change(cc)
        self.out.append(f"proposed {describe_entry(e)}")

    def cmd_transfer_leadership(self, args: list[str]) -> None:
        _, kv = self._kv(args)
        self._node(kv["from"]).raft.transfer_leadership(kv["to"])

    def cmd_read_index(self, args: list[str]) -> None:
        self._node(args[0]).raft.read_index(args[1].encode())

    def cmd_partition(self, args: list[str]) -> None:
        self.cut = set(args)
        self._drop_cut()

    def cmd_heal(self, args: list[str]) -> None:
        self.cut = set()

    def cmd_report_unreachable(self, args: list[str]) -> None:
        self._node(args[0]).raft.report_unreachable(args[1])

    def cmd_compact(self, args: list[str]) -> None:
        node, index = self._node(args[0]), int(args[1])
        if index > node.raft.applied:
            raise ValueError(f"cannot compact {args[0]} beyond its applied index")
        data = "|".join(d for i, d in node.applied if i <= index)
        node.storage.create_snapshot(index, node.raft.voters, data.encode())
        node.storage.compact(index)
        self.out.extend(self._log_lines(args[0]))

    def cmd_status(self, args: list[str]) -> None:
        st = self._node(args[0]).raft.status()
        self.out.append(self._state_line(args[0]))
        for nid, p in st.progress.items():
            flags = (" paused" if p.paused else "") + (" inactive" if not p.recent_active else "")
            self.out.append(f"  {nid}: {p.state.value} match={p.match} next={p.next}{flags}")

    def cmd_raft_log(self, args: list[str]) -> None:
        self.out.extend(self._log_lines(args[0]))

    def cmd_raft_state(self, args: list[str]) -> None:
        self.out.extend(self._state_line(nid) for nid in sorted(self.nodes))

    def cmd_process_ready(self, args: list[str]) -> None:
        for nid in args:
            self._process_ready(nid)

    def cmd_deliver_msgs(self, args: list[str]) -> None:
        pos, kv = self._kv(args)
        for nid in pos:
            self._deliver(nid, drop="drop" in pos, mtype=kv.get("type"))

    def cmd_stabilize(self, args: list[str]) -> None:
        ids = args or sorted(self.nodes)
        while True:
            busy = False
            for nid in ids:
                if self.nodes[nid].raft.has_ready():
                    self._process_ready(nid)
                    busy = True
            for nid in ids:
                if any(m.to == nid for m in self.mailbox):
                    self._deliver(nid)
                    busy = True
            if not busy:
                return

    # ------------------------------------------------------------------ the driver

    def _process_ready(self, nid: str) -> None:
        node = self.nodes[nid]
        if not node.raft.has_ready():
            return
        rd = node.raft.ready()
        self.out.append(f"> {nid} handling Ready")
        self.out.extend("  " + line for line in describe_ready(rd))
        if rd.snapshot is not None:
            node.storage.apply_snapshot(rd.snapshot)
            parts = rd.snapshot.data.decode().split("|") if rd.snapshot.data else []
            node.applied = [(rd.snapshot.index, d) for d in parts]
        node.storage.append(rd.entries)
        if rd.hard_state is not None:
            node.storage.set_hardstate(rd.hard_state)
        self.mailbox.extend(rd.messages)
        self._drop_cut()
        for e in rd.committed_entries:
            if e.type is EntryType.ConfChange:
                voters = node.raft.apply_conf_change(ConfChange.decode(e.data))
                self.out.append(f"  INFO {nid} voters are now ({' '.join(voters)})")
            elif e.data:
                node.applied.append((e.index, e.data.decode()))
        node.raft.advance(rd)
        for m in rd.messages:
            if m.type is MessageType.Snap:
                node.raft.report_snapshot(m.to, ok=True)
                self.out.append(f"  INFO {nid} reports the snapshot to {m.to} as sent")

    def _drop_cut(self) -> None:
        cut = [m for m in self.mailbox if (m.frm in self.cut) != (m.to in self.cut)]
        if cut:
            self.mailbox = [m for m in self.mailbox if not any(m is x for x in cut)]
            self.out.append("  dropped (partition):")
            self.out.extend(f"  {describe_message(m)}" for m in cut)

    def _deliver(self, nid: str, drop: bool = False, mtype: str | None = None) -> None:
        mine = [m for m in self.mailbox if m.to == nid and (mtype is None or m.type.value == mtype)]
        if not mine:
            return
        self.mailbox = [m for m in self.mailbox if not any(m is x for x in mine)]
        if drop:
            self.out.append(f"> {nid} dropping messages")
            self.out.extend(f"  {describe_message(m)}" for m in mine)
            return
        self.out.append(f"> {nid} receiving messages")
        for m in mine:
            self.out.append(f"  {describe_message(m)}")
            try:
                self.nodes[nid].raft.step(m)
            except RaftError as exc:
                self.out.append(f"  error: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ formatting

    def _state_line(self, nid: str) -> str:
        r = self.nodes[nid].raft
        return (
            f"{nid}: {r.state.value} Term:{r.term} Lead:{r.leader_id or '-'} "
            f"Vote:{r.vote or '-'} Commit:{r.commit} Applied:{r.applied} "
            f"Voters:({' '.join(r.voters)})"
        )

    def _log_lines(self, nid: str) -> list[str]:
        node = self.nodes[nid]
        log = node.raft.log
        snap = log.snapshot()
        first, last = log.first_index(), log.last_index()
        span = f"entries {first}..{last}" if last >= first else "no entries"
        lines = [
            f"{nid} log: snapshot {snap.index}/{snap.term}, {span}, "
            f"committed {log.committed}, applied {log.applied}"
        ]
        if log.last_index() >= log.first_index():
            lines.extend(
                "  " + describe_entry(e) for e in log.slice(log.first_index(), log.last_index() + 1)
            )
        return lines
