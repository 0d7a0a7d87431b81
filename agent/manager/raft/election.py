"""Elections: timeouts, pre-vote and vote rounds, vote requests, the candidate states.

Functions here operate on a `RaftNode`'s internals (see core.py); they reach the follower
and leader roles through the node (`_step_follower`, `_become_leader`, `_bcast_append`).
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from .messages import EntryType, Message, MessageType
from .progress import quorum
from .state import StateType

if TYPE_CHECKING:
    from .core import RaftNode

MT = MessageType

#: Context of the MsgVotes of an election started by MsgTimeoutNow (a leadership transfer):
#: they are granted even within a leader's lease.
CAMPAIGN_TRANSFER = b"CampaignTransfer"


class VoteResult(Enum):
    Pending = "pending"
    Won = "won"
    Lost = "lost"


def tick_election(r: RaftNode) -> None:
    r._election_elapsed += 1
    if r._promotable() and r._election_elapsed >= r._randomized_election_timeout:
        r._election_elapsed = 0
        hup(r, transfer=False)


def may_vote_now(r: RaftNode, m: Message) -> bool:
    """False for a higher-term (pre)vote request arriving within a live leader's lease.

    With check_quorum, a node that heard from its leader less than an election timeout ago
    ignores such requests, so a node rejoining after a partition cannot depose a healthy
    leader. A leadership transfer's election is exempt.
    """
    if m.context == CAMPAIGN_TRANSFER:
        return True
    in_lease = (
        r._cfg.check_quorum and r._lead is not None and r._election_elapsed < r._cfg.election_tick
    )
    return not in_lease


def has_unapplied_conf_changes(r: RaftNode) -> bool:
    log = r.log
    if log.applied >= log.committed:
        return False
    lo = max(log.applied + 1, log.first_index())
    return any(e.type is EntryType.ConfChange for e in log.slice(lo, log.committed + 1))


def hup(r: RaftNode, transfer: bool) -> None:
    if r._state is StateType.Leader or not r._promotable() or has_unapplied_conf_changes(r):
        return
    if transfer or not r._cfg.pre_vote:
        campaign(r, pre=False, transfer=transfer)
    else:
        campaign(r, pre=True)


def campaign(r: RaftNode, pre: bool, transfer: bool = False) -> None:
    if pre:
        r._votes = {}
        r._lead = None
        r._state = StateType.PreCandidate
        vote_type, term = MT.PreVote, r._term + 1
    else:
        r._reset(r._term + 1)
        r._vote = r._id
        r._state = StateType.Candidate
        vote_type, term = MT.Vote, r._term
    if poll(r, r._id, True) is VoteResult.Won:  # a group of one
        if pre:
            campaign(r, pre=False)
        else:
            r._become_leader()
        return
    last, last_term = r.log.last_index(), r.log.last_term()
    ctx = CAMPAIGN_TRANSFER if transfer else b""
    for v in r._voters:
        if v != r._id:
            r._send(vote_type, v, term=term, index=last, log_term=last_term, context=ctx)


def poll(r: RaftNode, frm: str, granted: bool) -> VoteResult:
    if frm in r._voters:
        r._votes.setdefault(frm, granted)
    yes = sum(1 for v in r._voters if r._votes.get(v) is True)
    no = sum(1 for v in r._voters if r._votes.get(v) is False)
    q = quorum(len(r._voters))
    if yes >= q:
        return VoteResult.Won
    if no > len(r._voters) - q:
        return VoteResult.Lost
    return VoteResult.Pending


def handle_vote_request(r: RaftNode, m: Message) -> None:
    """Answer a MsgVote or MsgPreVote (the term checks were done by `RaftNode.step`)."""
    resp = MT.VoteResp if m.type is MT.Vote else MT.PreVoteResp
    can_vote = (
        r._vote == m.frm
        or (r._vote is None and r._lead is None)
        or (m.type is MT.PreVote and m.term > r._term)
    )
    if can_vote and r.log.is_up_to_date(m.index, m.log_term):
        # a granted pre-vote carries the future term the candidate asked about
        r._send(resp, m.frm, term=m.term)
        if m.type is MT.Vote:
            r._election_elapsed = 0
            r._vote = m.frm
    else:
        r._send(resp, m.frm, reject=True)


def step_candidate(r: RaftNode, m: Message) -> None:
    if m.type in (MT.App, MT.Heartbeat, MT.Snap):
        r._become_follower(m.term, m.frm)  # a leader exists for our term
        r._step_follower(m)
        return
    pre = r._state is StateType.PreCandidate
    if m.type is not (MT.PreVoteResp if pre else MT.VoteResp):
        return  # stale vote responses, TimeoutNow, ReadIndex...: nothing to do without a leader
    result = poll(r, m.frm, not m.reject)
    if result is VoteResult.Won:
        if pre:
            campaign(r, pre=False)
        else:
            r._become_leader()
            r._bcast_append()
    elif result is VoteResult.Lost:
        r._become_follower(r._term, None)
