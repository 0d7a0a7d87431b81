"""`RaftNode`: shoal's Raft as a pure state machine (no I/O, no clock, no global randomness).

The node is driven from outside by three inputs -- `tick()` (logical time), `step(msg)` (a
message from another manager, decoded by `from_wire`) and the proposal calls -- and hands
everything it wants done to the driver in a `Ready`.

Driver contract (as etcd-io/raft's RawNode)
-------------------------------------------
Loop::

    node.tick()                       # every tick interval (heartbeat_tick ticks = 1 heartbeat)
    node.step(from_wire(obj))         # for each message received for node.id
    if node.has_ready():
        rd = node.ready()
        # 1. persist, durably, in this order: rd.snapshot (storage.apply_snapshot),
        #    rd.entries (storage.append), rd.hard_state (storage.set_hardstate)
        # 2. send rd.messages (to_wire); a message may be dropped, the core retries
        # 3. apply: rd.snapshot to the state machine first (load its data), then each of
        #    rd.committed_entries in order: for EntryType.ConfChange entries call
        #    node.apply_conf_change(ConfChange.decode(e.data)); ignore Normal entries with
        #    empty data (written by new leaders); apply the others
        # 4. serve rd.read_states: read ctx may be answered once applied >= its index
        node.advance(rd)

`ready()` may not be called again before `advance()`; `tick()`, `step()` and the proposal calls
may be called at any time, their output goes to the next Ready. After sending a MsgSnap, call
`report_snapshot(to, ok)` (ok: it was handed to the transport; False: sending failed), or the
leader keeps waiting for that follower; call `report_unreachable(to)` when a send fails.

Messages may be lost, duplicated or reordered by the transport; the core copes. Check that a
received message's `to` is this node (`step` refuses others) and that its `frm` is the sender
the transport authenticated.

Compaction: from time to time the driver records a snapshot of its state machine at an applied
index i, with `node.voters`, in its storage (MemoryStorage.create_snapshot) and discards the
entries up to i or a little before it (compact). The leader sends that snapshot to followers
that need entries the storage no longer has.

Restart: build the node from the same storage; pass `Config.applied` = the index the state
machine reflects (at least the snapshot index; the snapshot index when the state machine is
rebuilt from the snapshot). Committed entries after it are handed out again.

Membership: single-server changes, one at a time. A configuration change takes effect when the
driver *applies* it (`apply_conf_change`), etcd style, on every node. A leader accepts a new
change only when the previous one is applied and an entry of its own term is committed and
applied (that rules out the single-server change bug found in 2015). A leader that applies its
own removal steps down. A node whose committed log holds unapplied changes does not campaign.

Proposals: `propose()`, `propose_conf_change()`, `transfer_leadership()` raise `NotLeader`
(with the leader this node knows of) on a node that is not the leader: shoal does not forward
proposals inside Raft, the driver sends them to the leader itself. A leader refuses with
`ProposalDropped` while a leadership transfer is under way. An accepted proposal may still be
lost (leader change); the returned `Entry` identifies it: it was committed if and only if an
entry with the same term and index is committed.

Reads: `read_index(ctx)` (ctx unique per read) on the leader or on a follower (forwarded to the
leader) eventually yields `ReadState(index, ctx)` in a Ready, or nothing when leadership changes:
time reads out in the driver. A leader answers only after a heartbeat round acknowledged by a
quorum and only once it has committed an entry of its term.
"""

from __future__ import annotations

from .config import Config, ProgressInfo, Ready, SoftState, Status
from .election import handle_vote_request, hup, may_vote_now, step_candidate, tick_election
from .errors import InvalidConfChange, NotLeader, ProposalDropped, RaftError
from .follower import step_follower
from .leader import (
    after_conf_change,
    append_entries,
    bcast_append,
    bcast_heartbeat,
    become_leader,
    check_quorum,
    step_leader,
    tick_heartbeat,
)
from .leader import read_index as leader_read_index
from .leader import transfer_leadership as leader_transfer_leadership
from .log import RaftLog
from .messages import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
)
from .progress import Progress, ProgressState
from .readonly import ReadOnly
from .state import StateType

__all__ = ["Config", "ProgressInfo", "RaftNode", "Ready", "SoftState", "StateType", "Status"]

MT = MessageType


class RaftNode:
    """One member of a Raft group. The helper modules `election`, `follower` and `leader`
    of this package work on its underscored attributes and reach one another only through its
    role-transition methods (`_become_follower`, `_become_leader`, `_hup`, `_step_follower`,
    `_bcast_append`), so that none of them imports another or this module; everyone else uses
    the public API."""

    def __init__(self, config: Config) -> None:
        self._cfg = config
        self._id = config.id
        self._rng = config.rng
        self.log = RaftLog(config.storage)
        hs, voters = config.storage.initial_state()
        self._term = hs.term
        self._vote = hs.vote
        self._voters: tuple[str, ...] = tuple(sorted(set(voters)))
        # everything reset() sets, declared here for the type checker
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_election_timeout = config.election_tick
        self._lead_transferee: str | None = None
        self._votes: dict[str, bool] = {}
        self._prs: dict[str, Progress] = {}
        self._pending_conf_index = 0
        self._read_only = ReadOnly()
        self._pending_read_index: list[tuple[bytes, str]] = []
        self.log.commit_to(max(hs.commit, self.log.committed))
        if self.log.last_term() > self._term:  # a snapshot outran its hard state
            self._term, self._vote = self.log.last_term(), None
        if config.applied > self.log.committed:
            raise RaftError(f"applied {config.applied} is beyond committed {self.log.committed}")
        if config.applied > self.log.applied:
            for e in self.log.slice(self.log.applied + 1, config.applied + 1):
                if e.type is EntryType.ConfChange:
                    self._change_voters(ConfChange.decode(e.data))
            self.log.applied_to(config.applied)
        self._state = StateType.Follower
        self._lead: str | None = None
        self._msgs: list[Message] = []
        self._read_states: list[ReadState] = []
        self._pending_ready: Ready | None = None
        self._prev_hs = hs
        self._prev_ss = SoftState(None, StateType.Follower)
        self._become_follower(self._term, None)

    # ------------------------------------------------------------------ public properties

    @property
    def id(self) -> str:
        return self._id

    @property
    def config(self) -> Config:
        return self._cfg

    @property
    def term(self) -> int:
        return self._term

    @property
    def vote(self) -> str | None:
        return self._vote

    @property
    def state(self) -> StateType:
        return self._state

    @property
    def leader_id(self) -> str | None:
        return self._lead

    @property
    def voters(self) -> tuple[str, ...]:
        return self._voters

    @property
    def commit(self) -> int:
        return self.log.committed

    @property
    def applied(self) -> int:
        return self.log.applied

    @property
    def lead_transferee(self) -> str | None:
        return self._lead_transferee

    @property
    def randomized_election_timeout(self) -> int:
        return self._randomized_election_timeout

    @property
    def election_elapsed(self) -> int:
        """Ticks since the election timer was last reset."""
        return self._election_elapsed

    def status(self) -> Status:
        progress = {}
        if self._state is StateType.Leader:
            progress = {
                v: ProgressInfo(pr.match, pr.next, pr.state, pr.recent_active, pr.is_paused())
                for v, pr in sorted(self._prs.items())
            }
        return Status(
            self._id,
            self._term,
            self._vote,
            self._state,
            self._lead,
            self.log.committed,
            self.log.applied,
            self._voters,
            self._lead_transferee,
            progress,
        )

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        if self._state is StateType.Leader:
            tick_heartbeat(self)
        else:
            tick_election(self)

    def campaign(self) -> None:
        """Start an election now (a pre-vote round first when pre_vote is on)."""
        hup(self, transfer=False)

    def step(self, m: Message) -> None:
        """Feed a message addressed to this node (a local one when its term is 0)."""
        if m.to != self._id:
            raise RaftError(f"message for {m.to} delivered to {self._id}")
        if m.term == 0:
            self._step_local(m)
            return
        if m.term > self._term:
            if m.type in (MT.Vote, MT.PreVote) and not may_vote_now(self, m):
                return
            if m.type is MT.PreVote or (m.type is MT.PreVoteResp and not m.reject):
                pass  # a pre-vote round never changes our term
            elif m.type in (MT.App, MT.Heartbeat, MT.Snap):
                self._become_follower(m.term, m.frm)
            else:
                self._become_follower(m.term, None)
        elif m.term < self._term:
            if (self._cfg.check_quorum or self._cfg.pre_vote) and m.type in (
                MT.App,
                MT.Heartbeat,
            ):
                # tell a stale leader (maybe one rejoining after a partition) our term
                self._send(MT.AppResp, m.frm)
            elif m.type is MT.PreVote:
                self._send(MT.PreVoteResp, m.frm, reject=True)
            return
        if m.type in (MT.Vote, MT.PreVote):
            handle_vote_request(self, m)
        elif self._state is StateType.Leader:
            step_leader(self, m)
        elif self._state is StateType.Follower:
            step_follower(self, m)
        else:
            step_candidate(self, m)

    def _step_local(self, m: Message) -> None:
        if m.type is MT.Hup:
            hup(self, transfer=False)
        elif m.type is MT.Beat:
            if self._state is StateType.Leader:
                bcast_heartbeat(self)
        elif m.type is MT.CheckQuorum:
            if self._state is StateType.Leader:
                check_quorum(self)
        elif m.type is MT.Prop:
            for e in m.entries:
                if e.type is EntryType.ConfChange:
                    self.propose_conf_change(ConfChange.decode(e.data))
                else:
                    self.propose(e.data)
        elif m.type is MT.TransferLeader:
            self.transfer_leadership(m.frm)  # etcd's convention: frm is the transferee
        else:
            raise RaftError(f"{m.type.value} with term 0 is not a local message")

    def propose(self, data: bytes) -> Entry:
        """Append `data` to the log (leader only); returns the new entry.

        `data` must not be empty: empty entries are the ones new leaders write.
        """
        if not data:
            raise RaftError("a proposal needs data; empty entries belong to new leaders")
        return self._propose(EntryType.Normal, bytes(data))

    def propose_conf_change(self, cc: ConfChange) -> Entry:
        """Propose a single-server membership change (leader only, one at a time)."""
        if self._state is StateType.Leader:
            if self._pending_conf_index > self.log.applied:
                raise ProposalDropped(
                    f"configuration change at {self._pending_conf_index} is not applied yet"
                )
            if cc.kind is ConfChangeType.AddNode and cc.node_id in self._voters:
                raise InvalidConfChange(f"{cc.node_id} is already a voter")
            if cc.kind is ConfChangeType.RemoveNode:
                if cc.node_id not in self._voters:
                    raise InvalidConfChange(f"{cc.node_id} is not a voter")
                if len(self._voters) == 1:
                    raise InvalidConfChange("cannot remove the last voter")
        entry = self._propose(EntryType.ConfChange, cc.encode())
        self._pending_conf_index = entry.index
        return entry

    def _propose(self, etype: EntryType, data: bytes) -> Entry:
        if self._state is not StateType.Leader:
            raise NotLeader(self._lead)
        if self._id not in self._prs:
            raise ProposalDropped(f"{self._id} is no longer a voter")
        if self._lead_transferee is not None:
            raise ProposalDropped(f"leadership is being transferred to {self._lead_transferee}")
        entry = Entry(self._term, self.log.last_index() + 1, etype, data)
        append_entries(self, [entry])
        bcast_append(self)
        return entry

    def transfer_leadership(self, to: str) -> None:
        """Hand leadership to voter `to` (leader only); aborted after an election timeout."""
        if self._state is not StateType.Leader:
            raise NotLeader(self._lead)
        leader_transfer_leadership(self, to)

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read point; the answer comes as a ReadState with `ctx`."""
        if self._state is StateType.Leader:
            leader_read_index(self, bytes(ctx), self._id)
        elif self._lead is None:
            raise NotLeader(None)
        else:
            self._send(MT.ReadIndex, self._lead, context=bytes(ctx))

    def apply_conf_change(self, cc: ConfChange) -> tuple[str, ...]:
        """Make a committed configuration change take effect; returns the new voters."""
        added = self._change_voters(cc)
        if self._state is StateType.Leader:
            after_conf_change(self, added)
        return self._voters

    def report_unreachable(self, to: str) -> None:
        """The driver could not send to `to`: stop streaming to it and probe again."""
        pr = self._prs.get(to)
        if self._state is StateType.Leader and pr is not None:
            if pr.state is ProgressState.Replicate:
                pr.become_probe()

    def report_snapshot(self, to: str, ok: bool) -> None:
        """The snapshot sent to `to` was delivered (`ok`) or failed."""
        pr = self._prs.get(to)
        if self._state is StateType.Leader and pr is not None:
            if pr.state is ProgressState.Snapshot:
                if not ok:
                    pr.pending_snapshot = 0
                pr.become_probe()
                pr.probe_sent = True  # wait for an MsgAppResp or a heartbeat response

    # ------------------------------------------------------------------ outputs

    def _hard_state(self) -> HardState:
        return HardState(self._term, self._vote, self.log.committed)

    def _soft_state(self) -> SoftState:
        return SoftState(self._lead, self._state)

    def has_ready(self) -> bool:
        if self._pending_ready is not None:
            return False
        u = self.log.unstable
        return bool(
            self._msgs
            or self._read_states
            or u.entries
            or u.snapshot is not None
            or self.log.has_next_committed()
            or self._soft_state() != self._prev_ss
            or self._hard_state() != self._prev_hs
        )

    def ready(self) -> Ready:
        if self._pending_ready is not None:
            raise RaftError("advance() the previous Ready before asking for another")
        hs, ss = self._hard_state(), self._soft_state()
        rd = Ready(
            hard_state=hs if hs != self._prev_hs else None,
            soft_state=ss if ss != self._prev_ss else None,
            entries=tuple(self.log.unstable.entries),
            snapshot=self.log.unstable.snapshot,
            messages=tuple(self._msgs),
            committed_entries=tuple(self.log.next_committed()),
            read_states=tuple(self._read_states),
        )
        self._msgs = []
        self._read_states = []
        self._prev_hs, self._prev_ss = hs, ss
        self._pending_ready = rd
        return rd

    def advance(self, rd: Ready) -> None:
        if rd is not self._pending_ready:
            raise RaftError("advance() takes the Ready returned by the last ready()")
        self._pending_ready = None
        if rd.snapshot is not None:
            self.log.stable_snap_to(rd.snapshot.index)
            if rd.snapshot.index > self.log.applied:
                self.log.applied_to(rd.snapshot.index)
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
        if rd.committed_entries:
            self.log.applied_to(max(self.log.applied, rd.committed_entries[-1].index))

    # ------------------------------------------------------------------ internals

    def _send(
        self,
        mtype: MessageType,
        to: str,
        *,
        term: int | None = None,
        log_term: int = 0,
        index: int = 0,
        entries: tuple[Entry, ...] = (),
        commit: int = 0,
        reject: bool = False,
        reject_hint: int = 0,
        snapshot: Snapshot | None = None,
        context: bytes = b"",
    ) -> None:
        self._msgs.append(
            Message(
                mtype,
                to,
                self._id,
                self._term if term is None else term,
                log_term,
                index,
                entries,
                commit,
                reject,
                reject_hint,
                snapshot,
                context,
            )
        )

    def _promotable(self) -> bool:
        return self._id in self._voters and self.log.unstable.snapshot is None

    def _reset(self, term: int) -> None:
        if self._term != term:
            self._term = term
            self._vote = None
        self._lead = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        et = self._cfg.election_tick
        self._randomized_election_timeout = et + self._rng.randrange(et)
        self._lead_transferee = None
        self._votes = {}
        last = self.log.last_index()
        self._prs = {v: Progress(last + 1, self._cfg.max_inflight_msgs) for v in self._voters}
        if self._id in self._prs:
            self._prs[self._id].match = last
        self._pending_conf_index = 0
        self._read_only = ReadOnly()
        self._pending_read_index = []

    def _become_follower(self, term: int, lead: str | None) -> None:
        self._reset(term)
        self._lead = lead
        self._state = StateType.Follower

    def _become_leader(self) -> None:
        become_leader(self)

    def _hup(self, transfer: bool) -> None:
        """Campaign if this node may (see `election.hup`); `transfer`: for a leadership
        transfer (MsgTimeoutNow), no pre-vote and a vote granted within a leader's lease."""
        hup(self, transfer)

    def _step_follower(self, m: Message) -> None:
        step_follower(self, m)

    def _bcast_append(self) -> None:
        bcast_append(self)

    def _change_voters(self, cc: ConfChange) -> str | None:
        """Apply `cc` to the voter set and progress; returns the id of a node added."""
        voters = set(self._voters)
        if cc.kind is ConfChangeType.AddNode:
            if cc.node_id in voters:
                return None
            voters.add(cc.node_id)
            self._voters = tuple(sorted(voters))
            self._prs[cc.node_id] = Progress(
                self.log.last_index() + 1, self._cfg.max_inflight_msgs, recent_active=True
            )
            return cc.node_id
        voters.discard(cc.node_id)
        self._voters = tuple(sorted(voters))
        self._prs.pop(cc.node_id, None)
        return None
