"""The leader: replication to followers, commitment, heartbeats, check-quorum, read index,
leadership transfer.

Functions here operate on a `RaftNode`'s internals (see core.py); stepping down goes through
the node (`_become_follower`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ProposalDropped
from .messages import Entry, Message, MessageType, ReadState
from .progress import Progress, ProgressState, committed_index, quorum
from .state import StateType

if TYPE_CHECKING:
    from .core import RaftNode

MT = MessageType


def become_leader(r: RaftNode) -> None:
    r._reset(r._term)
    r._lead = r._id
    r._state = StateType.Leader
    pr = r._prs[r._id]
    pr.become_replicate()
    pr.recent_active = True
    # An empty entry of the new term: committing it commits every earlier entry (entries of
    # earlier terms are never committed by counting replicas, §5.4.2). No configuration
    # change is accepted before it is applied.
    empty = Entry(r._term, r.log.last_index() + 1)
    append_entries(r, [empty])
    r._pending_conf_index = empty.index


def tick_heartbeat(r: RaftNode) -> None:
    r._heartbeat_elapsed += 1
    r._election_elapsed += 1
    if r._election_elapsed >= r._cfg.election_tick:
        r._election_elapsed = 0
        if r._cfg.check_quorum:
            check_quorum(r)
        if r._state is StateType.Leader and r._lead_transferee is not None:
            r._lead_transferee = None  # the transfer did not finish within an election timeout
    if r._state is not StateType.Leader:
        return
    if r._heartbeat_elapsed >= r._cfg.heartbeat_tick:
        r._heartbeat_elapsed = 0
        bcast_heartbeat(r)


def check_quorum(r: RaftNode) -> None:
    """Step down unless a quorum was heard from since the last check."""
    active = sum(1 for v in r._voters if v == r._id or r._prs[v].recent_active)
    if active < quorum(len(r._voters)):
        r._become_follower(r._term, None)
        return
    for v, pr in r._prs.items():
        if v != r._id:
            pr.recent_active = False


def append_entries(r: RaftNode, ents: list[Entry]) -> None:
    last = r.log.append(ents)
    pr = r._prs.get(r._id)
    if pr is not None:
        pr.maybe_update(last)
    maybe_commit(r)


def maybe_commit(r: RaftNode) -> bool:
    mci = committed_index(r._voters, {v: pr.match for v, pr in r._prs.items()})
    if r.log.maybe_commit(mci, r._term):
        release_pending_reads(r)
        return True
    return False


# ---------------------------------------------------------------------- sending


def bcast_append(r: RaftNode) -> None:
    for v in r._voters:
        if v != r._id:
            maybe_send_append(r, v, send_if_empty=True)


def maybe_send_append(r: RaftNode, to: str, send_if_empty: bool) -> bool:
    """Send `to` the entries it lacks (or a snapshot); False if nothing was sent."""
    pr = r._prs[to]
    if pr.is_paused():
        return False
    prev_index = pr.next - 1
    prev_term = r.log.term(prev_index)
    ents = r.log.entries_from(pr.next, r._cfg.max_entries_per_msg)
    if prev_term is None or ents is None:
        return send_snapshot(r, to, pr)
    if not ents and not send_if_empty:
        return False
    r._send(
        MT.App,
        to,
        index=prev_index,
        log_term=prev_term,
        entries=tuple(ents),
        commit=r.log.committed,
    )
    pr.sent_entries(len(ents), ents[-1].index if ents else prev_index)
    return True


def send_snapshot(r: RaftNode, to: str, pr: Progress) -> bool:
    if not pr.recent_active:
        return False  # do not ship a snapshot to a node that may be gone
    snap = r.log.snapshot()
    if snap.index == 0:
        return False
    r._send(MT.Snap, to, snapshot=snap)
    pr.become_snapshot(snap.index)
    return True


def bcast_heartbeat(r: RaftNode, ctx: bytes | None = None) -> None:
    if ctx is None:
        ctx = r._read_only.last_pending_ctx()  # resend: heartbeat responses may get lost
    for v in r._voters:
        if v != r._id:
            # never tell a follower to commit beyond what it is known to hold
            commit = min(r._prs[v].match, r.log.committed)
            r._send(MT.Heartbeat, v, commit=commit, context=ctx)


# ---------------------------------------------------------------------- receiving


def step_leader(r: RaftNode, m: Message) -> None:
    if m.type is MT.ReadIndex:
        read_index(r, m.context, m.frm)
        return
    pr = r._prs.get(m.frm)
    if pr is None:
        return
    if m.type is MT.AppResp:
        handle_append_response(r, m, pr)
    elif m.type is MT.HeartbeatResp:
        handle_heartbeat_response(r, m, pr)
    # Anything else at our term (MsgApp from nobody, TimeoutNow, ...) is stale: ignored.


def handle_append_response(r: RaftNode, m: Message, pr: Progress) -> None:
    pr.recent_active = True
    if m.reject:
        next_probe = m.reject_hint
        if m.log_term > 0:
            # The follower's log has m.log_term at m.reject_hint; skip the entries of ours
            # with a greater term, which it cannot have.
            next_probe, _ = r.log.find_conflict_by_term(m.reject_hint, m.log_term)
        if pr.maybe_decr_to(m.index, next_probe):
            if pr.state is ProgressState.Replicate:
                pr.become_probe()
            maybe_send_append(r, m.frm, send_if_empty=True)
        return
    old_paused = pr.is_paused()
    if not pr.maybe_update(m.index):
        return
    if pr.state is ProgressState.Probe:
        pr.become_replicate()
    elif pr.state is ProgressState.Snapshot and pr.match + 1 >= r.log.first_index():
        pr.become_probe()
        pr.become_replicate()
    elif pr.state is ProgressState.Replicate:
        pr.inflights.free_le(m.index)
    if maybe_commit(r):
        bcast_append(r)
    elif old_paused:
        maybe_send_append(r, m.frm, send_if_empty=True)
    while maybe_send_append(r, m.frm, send_if_empty=False):
        pass
    if m.frm == r._lead_transferee and pr.match == r.log.last_index():
        r._send(MT.TimeoutNow, m.frm)


def handle_heartbeat_response(r: RaftNode, m: Message, pr: Progress) -> None:
    pr.recent_active = True
    pr.probe_sent = False
    if pr.state is ProgressState.Replicate and pr.inflights.full():
        # MsgApps may have been lost (MQTT tells us nothing): free a slot so that streaming
        # resumes; a gap makes the follower reject and us fall back to probing.
        pr.inflights.free_first_one()
    if pr.match < r.log.last_index() or pr.state is ProgressState.Probe:
        maybe_send_append(r, m.frm, send_if_empty=True)
    if not m.context:
        return
    acks = r._read_only.recv_ack(m.frm, m.context)
    if acks is None or sum(1 for v in r._voters if v in acks) < quorum(len(r._voters)):
        return
    for req in r._read_only.advance(m.context):
        respond_read(r, req.index, req.ctx, req.frm)


# ---------------------------------------------------------------------- reads


def read_index(r: RaftNode, ctx: bytes, frm: str) -> None:
    if r._voters == (r._id,):
        respond_read(r, r.log.committed, ctx, frm)  # a group of one: no round needed
    elif r.log.term(r.log.committed) != r._term:
        # Until an entry of our term is committed our commit index may lag behind the
        # group's: defer the read until it is.
        r._pending_read_index.append((ctx, frm))
    else:
        start_read_round(r, ctx, frm)


def start_read_round(r: RaftNode, ctx: bytes, frm: str) -> None:
    if not r._read_only.add_request(r.log.committed, ctx, frm):
        return  # a read with this context is already under way
    acks = r._read_only.recv_ack(r._id, ctx)
    if acks is not None and len(acks) >= quorum(len(r._voters)):
        for req in r._read_only.advance(ctx):
            respond_read(r, req.index, req.ctx, req.frm)
    else:
        bcast_heartbeat(r, ctx)


def release_pending_reads(r: RaftNode) -> None:
    if r._pending_read_index and r.log.term(r.log.committed) == r._term:
        pending, r._pending_read_index = r._pending_read_index, []
        for ctx, frm in pending:
            start_read_round(r, ctx, frm)


def respond_read(r: RaftNode, index: int, ctx: bytes, frm: str) -> None:
    if frm == r._id:
        r._read_states.append(ReadState(index, ctx))
    else:
        r._send(MT.ReadIndexResp, frm, index=index, context=ctx)


# ---------------------------------------------------------------------- membership, transfer


def after_conf_change(r: RaftNode, added: str | None) -> None:
    if r._id not in r._voters:
        r._become_follower(r._term, None)  # we removed ourselves: step down
        return
    if r._lead_transferee is not None and r._lead_transferee not in r._voters:
        r._lead_transferee = None
    if maybe_commit(r):  # a smaller group may commit more
        bcast_append(r)
    elif added is not None:
        maybe_send_append(r, added, send_if_empty=True)


def transfer_leadership(r: RaftNode, to: str) -> None:
    if to not in r._voters:
        raise ProposalDropped(f"cannot transfer leadership to {to}: not a voter")
    if r._lead_transferee is not None:
        if r._lead_transferee == to:
            return
        r._lead_transferee = None
    if to == r._id:
        return
    r._election_elapsed = 0  # the transfer gets one election timeout to finish
    r._lead_transferee = to
    if r._prs[to].match == r.log.last_index():
        r._send(MT.TimeoutNow, to)
    else:
        maybe_send_append(r, to, send_if_empty=True)
