"""The follower's side of replication: MsgApp, MsgHeartbeat, MsgSnap, and restoring snapshots.

Functions here operate on a `RaftNode`'s internals (see core.py); an election is started
through the node (`_hup`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .messages import Message, MessageType, ReadState, Snapshot
from .state import StateType

if TYPE_CHECKING:
    from .core import RaftNode

MT = MessageType


def step_follower(r: RaftNode, m: Message) -> None:
    if m.type in (MT.App, MT.Heartbeat, MT.Snap):
        r._election_elapsed = 0
        r._lead = m.frm
        if m.type is MT.App:
            handle_append_entries(r, m)
        elif m.type is MT.Heartbeat:
            handle_heartbeat(r, m)
        else:
            handle_snapshot(r, m)
    elif m.type is MT.TimeoutNow:
        r._hup(transfer=True)
    elif m.type is MT.ReadIndexResp:
        r._read_states.append(ReadState(m.index, m.context))
    # A MsgReadIndex reaching a follower was meant for an earlier leader: dropped, the reader
    # times out and asks again.


def handle_append_entries(r: RaftNode, m: Message) -> None:
    log = r.log
    if m.index < log.committed:
        r._send(MT.AppResp, m.frm, index=log.committed)
        return
    last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
    if last_new is not None:
        r._send(MT.AppResp, m.frm, index=last_new)
        return
    # We lack (m.index, m.log_term). Point the leader at the last entry we have whose term is
    # at most m.log_term: every entry after it either differs from the leader's or is unknown,
    # so the leader can skip a whole term per round trip instead of one entry.
    hint_index, hint_term = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
    r._send(
        MT.AppResp,
        m.frm,
        index=m.index,
        reject=True,
        reject_hint=hint_index,
        log_term=hint_term,
    )


def handle_heartbeat(r: RaftNode, m: Message) -> None:
    r.log.commit_to(m.commit)
    r._send(MT.HeartbeatResp, m.frm, context=m.context)


def handle_snapshot(r: RaftNode, m: Message) -> None:
    assert m.snapshot is not None  # guaranteed by from_wire
    if restore(r, m.snapshot):
        r._send(MT.AppResp, m.frm, index=r.log.last_index())
    else:
        r._send(MT.AppResp, m.frm, index=r.log.committed)


def restore(r: RaftNode, snap: Snapshot) -> bool:
    """Replace our log with `snap` unless we already have what it covers."""
    log = r.log
    if snap.index <= log.committed:
        return False
    if r._state is not StateType.Follower:
        r._become_follower(r._term + 1, None)  # defence in depth: only followers restore
        return False
    if log.match_term(snap.index, snap.term):
        log.commit_to(snap.index)  # we have the entry: just fast-forward the commit index
        return False
    log.restore(snap)
    r._voters = tuple(sorted(snap.voters))
    return True
