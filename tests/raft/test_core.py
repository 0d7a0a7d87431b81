"""RaftNode, feature by feature. Each test name states the behaviour it specifies."""

from __future__ import annotations

import random
from typing import Any, cast

import pytest

from agent.manager.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    Entry,
    EntryType,
    HardState,
    InvalidConfChange,
    MemoryStorage,
    Message,
    MessageType,
    NotLeader,
    ProgressState,
    ProposalDropped,
    RaftError,
    RaftNode,
    ReadState,
    Ready,
    StateType,
)

from .group import Group

MT = MessageType


def node(nid: str = "1", voters: tuple[str, ...] = ("1", "2", "3"), **cfg: Any) -> RaftNode:
    return RaftNode(
        Config(
            id=nid,
            storage=MemoryStorage.bootstrap(voters),
            rng=random.Random(nid),
            applied=1,
            **cfg,
        )
    )


def drain(r: RaftNode) -> list[Message]:
    msgs: list[Message] = []
    while r.has_ready():
        rd = r.ready()
        storage = cast(MemoryStorage, r.config.storage)
        storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hardstate(rd.hard_state)
        msgs.extend(rd.messages)
        r.advance(rd)
    return msgs


# ---------------------------------------------------------------------------- configuration


def test_config_refuses_nonsense() -> None:
    st, rng = MemoryStorage(), random.Random(1)
    with pytest.raises(RaftError):
        Config(id="", storage=st, rng=rng)
    with pytest.raises(RaftError):
        Config(id="1", storage=st, rng=rng, election_tick=1, heartbeat_tick=1)
    with pytest.raises(RaftError):
        Config(id="1", storage=st, rng=rng, max_entries_per_msg=0)


def test_a_node_starts_as_a_follower_from_its_storage() -> None:
    r = node()
    assert (r.state, r.term, r.leader_id, r.voters) == (
        StateType.Follower,
        1,
        None,
        ("1", "2", "3"),
    )
    assert (r.commit, r.applied) == (1, 1)


def test_a_message_for_another_node_is_refused() -> None:
    with pytest.raises(RaftError):
        node().step(Message(MT.Heartbeat, to="2", frm="3", term=5))


# ---------------------------------------------------------------------------- elections


def test_the_election_timeout_is_drawn_from_the_injected_rng_in_range() -> None:
    timeouts = set()
    for seed in range(200):
        r = RaftNode(
            Config(
                id="1",
                storage=MemoryStorage.bootstrap(["1", "2", "3"]),
                rng=random.Random(seed),
                election_tick=10,
            )
        )
        timeouts.add(r.randomized_election_timeout)
    assert timeouts == set(range(10, 20))
    assert node().randomized_election_timeout == node().randomized_election_timeout


def test_a_follower_campaigns_when_its_election_timeout_passes() -> None:
    r = node()
    for _ in range(r.randomized_election_timeout - 1):
        r.tick()
    assert r.state is StateType.Follower
    r.tick()
    assert r.state is StateType.PreCandidate
    msgs = drain(r)
    assert sorted((m.type, m.to, m.term) for m in msgs) == [
        (MT.PreVote, "2", 2),
        (MT.PreVote, "3", 2),
    ]
    assert r.term == 1, "a pre-vote round does not change the term"


def test_without_pre_vote_a_campaign_raises_the_term_and_votes_for_itself() -> None:
    r = node(pre_vote=False)
    r.campaign()
    assert (r.state, r.term, r.vote) == (StateType.Candidate, 2, "1")
    rd = r.ready()
    assert rd.hard_state == HardState(2, "1", 1)
    assert {(m.type, m.to, m.term, m.index, m.log_term) for m in rd.messages} == {
        (MT.Vote, "2", 2, 1, 1),
        (MT.Vote, "3", 2, 1, 1),
    }


def test_a_group_of_one_elects_itself_at_once() -> None:
    r = node(voters=("1",))
    r.campaign()
    assert r.state is StateType.Leader and r.term == 2


def test_a_node_wins_with_a_majority_and_appends_an_empty_entry() -> None:
    g = Group(3)
    leader = g.elect("1")
    assert leader.term == 2 and leader.leader_id == "1"
    assert all(g[n].leader_id == "1" for n in g.ids)
    assert g.applied["2"][-1] == Entry(2, 2)


def test_a_vote_is_granted_once_per_term() -> None:
    r = node("3", pre_vote=False)
    r.step(Message(MT.Vote, "3", "1", 2, log_term=1, index=1))
    r.step(Message(MT.Vote, "3", "2", 2, log_term=1, index=1))
    answers = [(m.to, m.reject) for m in drain(r)]
    assert answers == [("1", False), ("2", True)]
    assert r.vote == "1"


def test_the_vote_is_in_the_hard_state_of_the_ready_that_carries_the_answer() -> None:
    r = node("3", pre_vote=False)
    r.step(Message(MT.Vote, "3", "1", 2, log_term=1, index=1))
    rd = r.ready()
    assert rd.hard_state == HardState(2, "1", 1)
    assert [m.type for m in rd.messages] == [MT.VoteResp]


def test_a_vote_is_refused_to_a_candidate_with_a_less_up_to_date_log() -> None:
    r = node("3", pre_vote=False, check_quorum=False)
    r.step(Message(MT.App, "3", "1", 2, log_term=1, index=1, entries=(Entry(2, 2),)))
    drain(r)
    r.step(Message(MT.Vote, "3", "2", 3, log_term=1, index=5))
    (answer,) = [m for m in drain(r) if m.type is MT.VoteResp]
    assert answer.reject and r.vote is None


def test_a_candidate_that_loses_the_vote_becomes_a_follower() -> None:
    r = node(pre_vote=False)
    r.campaign()
    drain(r)
    r.step(Message(MT.VoteResp, "1", "2", 2, reject=True))
    r.step(Message(MT.VoteResp, "1", "3", 2, reject=True))
    assert r.state is StateType.Follower and r.term == 2


def test_a_candidate_that_hears_from_a_leader_of_its_term_follows_it() -> None:
    r = node(pre_vote=False)
    r.campaign()
    r.step(Message(MT.Heartbeat, "1", "2", 2))
    assert (r.state, r.leader_id) == (StateType.Follower, "2")


def test_pre_vote_does_not_raise_the_term_of_a_node_that_cannot_win() -> None:
    g = Group(3)
    g.elect("1")
    g.cut = {"3"}
    for _ in range(5):
        g.tick("3", 2 * 10)
        g.stabilize()
    assert g["3"].term == 2 and g["3"].state is StateType.PreCandidate


def test_a_pre_vote_at_a_higher_term_is_granted_without_changing_the_voter_term() -> None:
    r = node("2", check_quorum=False)
    r.step(Message(MT.PreVote, "2", "1", 2, log_term=1, index=1))
    (answer,) = drain(r)
    assert (answer.type, answer.term, answer.reject) == (MT.PreVoteResp, 2, False)
    assert r.term == 1 and r.vote is None


def test_a_rejoining_node_does_not_depose_a_healthy_leader() -> None:
    g = Group(3)
    g.elect("1")
    g.cut = {"3"}
    g.tick("3", 40)
    g.stabilize()
    g.cut = set()
    g.tick("3", 20)  # its pre-votes now reach 1 and 2, which hear from their leader
    g.stabilize()
    g.tick("1")
    g.stabilize()
    assert (g["1"].state, g["1"].term) == (StateType.Leader, 2)
    assert (g["3"].state, g["3"].leader_id) == (StateType.Follower, "1")


def test_within_the_lease_a_follower_ignores_vote_requests_of_a_higher_term() -> None:
    r = node("2")
    r.step(Message(MT.Heartbeat, "2", "1", 2))
    drain(r)
    r.step(Message(MT.Vote, "2", "3", 3, log_term=5, index=9))
    assert drain(r) == [] and r.term == 2


def test_a_transfer_campaign_is_answered_even_within_the_lease() -> None:
    r = node("2")
    r.step(Message(MT.Heartbeat, "2", "1", 2))
    drain(r)
    r.step(Message(MT.Vote, "2", "3", 3, log_term=5, index=9, context=b"CampaignTransfer"))
    (answer,) = drain(r)
    assert not answer.reject and r.vote == "3"


def test_a_node_that_is_not_a_voter_never_campaigns() -> None:
    r = RaftNode(Config(id="9", storage=MemoryStorage(), rng=random.Random(0)))
    for _ in range(100):
        r.tick()
    r.campaign()
    assert r.state is StateType.Follower and not r.has_ready()


# ---------------------------------------------------------------------------- check quorum


def test_a_leader_without_a_quorum_steps_down_after_an_election_timeout() -> None:
    g = Group(3)
    g.elect("1")
    g.cut = {"1"}
    g.tick("1", 10)
    assert g["1"].state is StateType.Leader
    g.tick("1", 10)
    assert g["1"].state is StateType.Follower and g["1"].leader_id is None


def test_a_leader_that_hears_from_a_quorum_stays() -> None:
    g = Group(3)
    g.elect("1")
    for _ in range(50):
        g.tick("1")
        g.stabilize()
    assert g["1"].state is StateType.Leader


def test_a_stale_leader_learns_the_new_term_from_the_answer_to_its_append() -> None:
    r = node("2")
    r.step(Message(MT.Heartbeat, "2", "3", 5))
    drain(r)
    r.step(Message(MT.App, "2", "1", 2, log_term=1, index=1))
    (answer,) = drain(r)
    assert (answer.type, answer.to, answer.term) == (MT.AppResp, "1", 5)


# ---------------------------------------------------------------------------- replication


def test_a_proposal_is_committed_once_a_majority_holds_it_and_applied_everywhere() -> None:
    g = Group(3)
    g.elect("1")
    e = g["1"].propose(b"x")
    assert e == Entry(2, 3, data=b"x")
    g.stabilize()
    assert all(g.data_applied(n) == [b"x"] for n in g.ids)
    assert all(g[n].commit == 3 for n in g.ids)


def test_a_minority_cannot_commit() -> None:
    g = Group(3)
    g.elect("1")
    g.cut = {"2", "3"}
    g["1"].propose(b"x")
    g.stabilize()
    assert g["1"].commit == 2


def test_a_follower_refuses_proposals_naming_the_leader() -> None:
    g = Group(3)
    g.elect("1")
    with pytest.raises(NotLeader) as err:
        g["2"].propose(b"x")
    assert err.value.leader_id == "1"
    with pytest.raises(NotLeader) as err:
        node().propose(b"x")
    assert err.value.leader_id is None


def test_entries_are_persisted_before_messages_that_acknowledge_them_are_sent() -> None:
    r = node("2")
    r.step(Message(MT.App, "2", "1", 2, log_term=1, index=1, entries=(Entry(2, 2, data=b"x"),)))
    rd = r.ready()
    assert rd.entries == (Entry(2, 2, data=b"x"),)
    assert [(m.type, m.index) for m in rd.messages] == [(MT.AppResp, 2)]


def test_a_follower_replaces_conflicting_uncommitted_entries() -> None:
    r = node("2")
    r.step(Message(MT.App, "2", "1", 2, log_term=1, index=1, entries=(Entry(2, 2), Entry(2, 3))))
    drain(r)
    r.step(Message(MT.App, "2", "3", 3, log_term=1, index=1, entries=(Entry(3, 2),)))
    drain(r)
    assert r.log.last_index() == 2 and r.log.term(2) == 3


def test_a_rejection_carries_a_hint_to_skip_a_whole_term() -> None:
    r = node("2")
    ents = tuple(Entry(2, i) for i in range(2, 7))
    r.step(Message(MT.App, "2", "1", 2, log_term=1, index=1, entries=ents))
    drain(r)
    r.step(Message(MT.App, "2", "3", 4, log_term=3, index=9))
    (answer,) = drain(r)
    assert (answer.reject, answer.index, answer.reject_hint, answer.log_term) == (True, 9, 6, 2)


def test_the_leader_uses_the_hint_to_jump_back_over_conflicting_entries() -> None:
    g = Group(3)
    g.elect("1")
    g.cut = {"1"}
    for i in range(5):
        g["1"].propose(b"old%d" % i)
    g.stabilize()
    g.cut = {"1"}
    g.tick("3", 10)
    g["2"].campaign()
    g.stabilize()
    for i in range(5):
        g["2"].propose(b"new%d" % i)
    g.stabilize()
    g.take_sent()
    g.cut = set()
    g.tick("2")
    g.stabilize()
    rejects = [m for m in g.take_sent() if m.type is MT.AppResp and m.reject]
    assert len(rejects) <= 1
    assert g["1"].log.last_index() == g["2"].log.last_index()
    assert g.data_applied("1")[-5:] == [b"new%d" % i for i in range(5)]


def test_only_entries_of_the_leaders_term_are_committed_by_counting() -> None:
    g = Group(3, max_entries_per_msg=1)
    g.elect("1")
    g.cut = {"1"}
    g["1"].propose(b"old")  # 2/3, held by 1 alone...
    g.stabilize()
    g.storages["2"].append([Entry(2, 3, data=b"old")])  # ...and by 2 (delivered earlier)
    g.restart("2")
    g.tick("3", 10)
    g["2"].campaign()
    leader = g["2"]
    for _ in range(20):
        for nid in ("2", "3"):
            if g[nid].has_ready():
                g.handle_ready(nid)
        inbox, g.inbox = g.inbox, []
        for m in inbox:
            if m.to in ("2", "3"):
                g[m.to].step(m)
        pr = leader.status().progress.get("3")
        if leader.state is StateType.Leader and pr is not None and pr.match == 3:
            break
    assert leader.status().progress["3"].match == 3, "2/3 is on a majority"
    assert leader.commit == 2, "but it is from an earlier term"
    g.stabilize()
    assert leader.commit == 4


def test_a_replicating_leader_keeps_at_most_max_inflight_appends_unacknowledged() -> None:
    g = Group(3, max_inflight_msgs=2)
    g.elect("1")
    g.cut = {"2", "3"}
    g.take_sent()
    for i in range(6):
        g["1"].propose(b"%d" % i)
        g.stabilize()
    apps_to_2 = [m for m in g.take_sent() if m.type is MT.App and m.to == "2"]
    assert len(apps_to_2) == 2
    assert g["1"].status().progress["2"].paused


def test_a_heartbeat_response_reopens_a_full_window_after_lost_appends() -> None:
    g = Group(3, max_inflight_msgs=2)
    g.elect("1")
    g.cut = {"2"}
    for i in range(4):
        g["1"].propose(b"%d" % i)
        g.stabilize()
    g.cut = set()
    for _ in range(3):
        g.tick("1")
        g.stabilize()
    assert g["2"].log.last_index() == g["1"].log.last_index()


def test_report_unreachable_sends_a_replicating_follower_back_to_probing() -> None:
    g = Group(3)
    g.elect("1")
    assert g["1"].status().progress["2"].state is ProgressState.Replicate
    g["1"].report_unreachable("2")
    assert g["1"].status().progress["2"].state is ProgressState.Probe


# ---------------------------------------------------------------------------- the Ready contract


def test_ready_cannot_be_taken_twice_without_advance() -> None:
    r = node()
    r.campaign()
    rd = r.ready()
    assert not r.has_ready()
    with pytest.raises(RaftError):
        r.ready()
    with pytest.raises(RaftError):
        r.advance(Ready())  # one the node never handed out
    r.advance(rd)


def test_inputs_between_ready_and_advance_go_to_the_next_ready() -> None:
    r = node("2")
    rd = r.ready() if r.has_ready() else None
    r.step(Message(MT.Heartbeat, "2", "1", 2))
    if rd is not None:
        r.advance(rd)
    nxt = r.ready()
    assert [m.type for m in nxt.messages] == [MT.HeartbeatResp]


def test_a_restarted_node_keeps_its_term_vote_and_log() -> None:
    g = Group(3)
    g.elect("1")
    g["1"].propose(b"x")
    g.stabilize()
    r = g.restart("2")
    assert (r.term, r.vote, r.commit, r.log.last_index()) == (2, "1", 3, 3)
    assert r.applied == 1, "committed entries are handed out again after a restart"
    assert [e.index for e in r.ready().committed_entries] == [2, 3]


def test_a_restart_with_applied_replays_configuration_changes_up_to_it() -> None:
    g = Group(3)
    g.elect("1")
    g["1"].propose_conf_change(ConfChange(ConfChangeType.RemoveNode, "3"))
    g.stabilize()
    r = g.add("2", g.storages["2"], applied=g["2"].applied)
    assert r.voters == ("1", "2")


def test_the_same_seed_gives_the_same_run() -> None:
    def run() -> list[str]:
        g = Group(3)
        for _ in range(30):
            g.tick("1")
            g.tick("2")
            g.tick("3")
            g.stabilize()
        return [repr(m) for m in g.sent]

    assert run() == run()


# ---------------------------------------------------------------------------- membership


def test_a_configuration_change_takes_effect_when_applied_not_when_committed() -> None:
    r = node(voters=("1",))
    r.campaign()
    drain(r)
    e = r.propose_conf_change(ConfChange(ConfChangeType.AddNode, "2"))
    rd = r.ready()
    assert e in rd.committed_entries
    assert r.voters == ("1",)
    assert r.apply_conf_change(ConfChange(ConfChangeType.AddNode, "2")) == ("1", "2")
    r.advance(rd)


def test_only_one_configuration_change_may_be_pending() -> None:
    g = Group(3)
    g.elect("1")
    g["1"].propose_conf_change(ConfChange(ConfChangeType.RemoveNode, "3"))
    with pytest.raises(ProposalDropped):
        g["1"].propose_conf_change(ConfChange(ConfChangeType.RemoveNode, "2"))
    g.stabilize()
    g["1"].propose_conf_change(ConfChange(ConfChangeType.AddNode, "3"))


def test_a_new_leader_accepts_no_configuration_change_before_its_first_entry_is_applied() -> None:
    r = node(voters=("1",))
    r.campaign()
    with pytest.raises(ProposalDropped):
        r.propose_conf_change(ConfChange(ConfChangeType.AddNode, "2"))
    drain(r)
    r.propose_conf_change(ConfChange(ConfChangeType.AddNode, "2"))


def test_nonsense_configuration_changes_are_refused() -> None:
    g = Group(3)
    g.elect("1")
    with pytest.raises(InvalidConfChange):
        g["1"].propose_conf_change(ConfChange(ConfChangeType.AddNode, "2"))
    with pytest.raises(InvalidConfChange):
        g["1"].propose_conf_change(ConfChange(ConfChangeType.RemoveNode, "9"))


def test_an_added_node_catches_up_from_a_snapshot_and_becomes_a_voter() -> None:
    g = Group(3)
    g.elect("1")
    g.add("4", MemoryStorage())
    g["1"].propose_conf_change(ConfChange(ConfChangeType.AddNode, "4"))
    g.stabilize()
    assert all(g[n].voters == ("1", "2", "3", "4") for n in ("1", "2", "3", "4"))
    assert g["4"].commit == g["1"].commit
    assert any(m.type is MT.Snap and m.to == "4" for m in g.sent)


def test_a_leader_that_removes_itself_steps_down_when_it_applies_the_change() -> None:
    g = Group(3)
    g.elect("1")
    g["1"].propose_conf_change(ConfChange(ConfChangeType.RemoveNode, "1"))
    g.stabilize()
    assert g["1"].state is StateType.Follower
    assert g["2"].voters == ("2", "3")
    for _ in range(40):
        g.tick("2")
        g.tick("3")
        g.stabilize()
    assert StateType.Leader in (g["2"].state, g["3"].state)


def test_a_node_with_committed_unapplied_configuration_changes_does_not_campaign() -> None:
    r = node("2")
    cc = ConfChange(ConfChangeType.RemoveNode, "3")
    entry = Entry(2, 2, EntryType.ConfChange, cc.encode())
    r.step(Message(MT.App, "2", "1", 2, log_term=1, index=1, commit=2, entries=(entry,)))
    rd = r.ready()
    r.campaign()
    assert r.state is StateType.Follower
    r.apply_conf_change(cc)
    r.advance(rd)
    r.campaign()
    assert r.state is StateType.PreCandidate


# ---------------------------------------------------------------------------- leadership transfer


def test_leadership_moves_to_an_up_to_date_transferee() -> None:
    g = Group(3)
    g.elect("1")
    g["1"].transfer_leadership("2")
    g.stabilize()
    assert g["2"].state is StateType.Leader and g["2"].term == 3
    assert g["1"].state is StateType.Follower


def test_a_lagging_transferee_is_caught_up_first() -> None:
    g = Group(3)
    g.elect("1")
    g.cut = {"3"}
    g["1"].propose(b"x")
    g.stabilize()
    g.cut = set()
    g.take_sent()
    g["1"].transfer_leadership("3")
    g.stabilize()
    types = [m.type for m in g.take_sent() if m.frm == "1" and m.to == "3"]
    assert types.index(MT.App) < types.index(MT.TimeoutNow)
    assert g["3"].state is StateType.Leader


def test_proposals_are_refused_during_a_transfer_and_it_is_abandoned_after_a_timeout() -> None:
    g = Group(3)
    g.elect("1")
    g.cut = {"2"}
    g["1"].transfer_leadership("2")
    g.stabilize()
    with pytest.raises(ProposalDropped):
        g["1"].propose(b"x")
    g.cut = set()
    g.tick("1", 10)
    assert g["1"].lead_transferee is None
    g["1"].propose(b"x")


def test_leadership_cannot_be_transferred_to_a_non_voter_or_by_a_follower() -> None:
    g = Group(3)
    g.elect("1")
    with pytest.raises(ProposalDropped):
        g["1"].transfer_leadership("9")
    with pytest.raises(NotLeader):
        g["2"].transfer_leadership("3")


# ---------------------------------------------------------------------------- snapshots


def compacted_group() -> Group:
    g = Group(3)
    g.elect("1")
    g.cut = {"3"}
    for i in range(5):
        g["1"].propose(b"%d" % i)
    g.stabilize()
    st = g.storages["1"]
    st.create_snapshot(g["1"].applied, g["1"].voters, b"state")
    st.compact(g["1"].applied)
    g.cut = set()
    return g


def test_a_follower_behind_the_compacted_log_gets_a_snapshot_and_restores_it() -> None:
    g = compacted_group()
    g.tick("1")
    g.stabilize()
    assert any(m.type is MT.Snap and m.to == "3" for m in g.sent)
    assert g.storages["3"].snapshot().data == b"state"
    assert g["3"].commit == g["1"].commit
    g["1"].propose(b"after")
    g.stabilize()
    assert g.data_applied("3") == [b"after"]


def test_a_failed_snapshot_is_retried_after_a_heartbeat() -> None:
    g = compacted_group()
    g.snapshot_ok, g.lose_snapshots = False, True
    g.tick("1")
    g.stabilize()
    assert any(m.type is MT.Snap for m in g.sent)
    progress = g["1"].status().progress["3"]
    assert (progress.state, progress.paused) == (ProgressState.Probe, True)
    g.snapshot_ok, g.lose_snapshots = True, False
    g.tick("1")
    g.stabilize()
    assert g["3"].commit == g["1"].commit


def test_a_snapshot_the_follower_already_covers_is_not_restored() -> None:
    g = Group(3)
    g.elect("1")
    g["2"].step(Message(MT.Snap, "2", "1", 2, snapshot=g.storages["1"].snapshot()))
    rd = g["2"].ready()
    assert rd.snapshot is None
    assert [(m.type, m.index) for m in rd.messages] == [(MT.AppResp, 2)]
    g["2"].advance(rd)


# ---------------------------------------------------------------------------- reads


def test_a_leader_answers_a_read_after_a_quorum_confirms_its_leadership() -> None:
    g = Group(3)
    g.elect("1")
    g["1"].read_index(b"r")
    assert g.read_states["1"] == []
    g.stabilize()
    assert g.read_states["1"] == [ReadState(2, b"r")]
    beats = [m for m in g.sent if m.type is MT.Heartbeat and m.context == b"r"]
    assert {m.to for m in beats} == {"2", "3"}


def test_a_follower_read_is_forwarded_to_the_leader_and_answered_with_its_index() -> None:
    g = Group(3)
    g.elect("1")
    g["1"].propose(b"x")
    g.stabilize()
    g["3"].read_index(b"r")
    g.stabilize()
    assert g.read_states["3"] == [ReadState(3, b"r")]


def test_a_read_without_a_known_leader_is_refused() -> None:
    with pytest.raises(NotLeader):
        node().read_index(b"r")


def test_a_leader_cut_off_from_the_group_never_answers_a_read() -> None:
    g = Group(3)
    g.elect("1")
    g.cut = {"1"}
    g["1"].read_index(b"r")
    for _ in range(30):
        g.tick("1")
        g.stabilize()
    assert g.read_states["1"] == []


def test_a_new_leader_defers_reads_until_it_commits_an_entry_of_its_term() -> None:
    r = node(voters=("1", "2", "3"), pre_vote=False)
    r.campaign()
    drain(r)
    r.step(Message(MT.VoteResp, "1", "2", 2))
    drain(r)
    r.read_index(b"r")
    assert not any(m.context == b"r" for m in drain(r))
    r.step(Message(MT.AppResp, "1", "2", 2, index=2))
    beats = [m for m in drain(r) if m.type is MT.Heartbeat and m.context == b"r"]
    assert beats
    r.step(Message(MT.HeartbeatResp, "1", "2", 2, context=b"r"))
    assert r.ready().read_states == (ReadState(2, b"r"),)


def test_a_group_of_one_answers_reads_at_once() -> None:
    r = node(voters=("1",))
    r.campaign()
    drain(r)
    r.read_index(b"r")
    assert r.ready().read_states == (ReadState(2, b"r"),)


# ---------------------------------------------------------------------------- local messages


def test_local_messages_drive_the_node_like_the_api_calls() -> None:
    r = node(voters=("1",))
    r.step(Message(MT.Hup, "1", "1", 0))
    assert r.state is StateType.Leader
    drain(r)
    r.step(Message(MT.Prop, "1", "1", 0, entries=(Entry(0, 0, data=b"x"),)))
    cc = ConfChange(ConfChangeType.RemoveNode, "1")
    with pytest.raises(InvalidConfChange):
        r.step(
            Message(MT.Prop, "1", "1", 0, entries=(Entry(0, 0, EntryType.ConfChange, cc.encode()),))
        )
    assert [e.data for e in r.ready().committed_entries] == [b"x"]
    with pytest.raises(RaftError):
        r.step(Message(MT.App, "1", "2", 0))


def test_an_empty_proposal_is_refused() -> None:
    r = node(voters=("1",))
    r.campaign()
    with pytest.raises(RaftError):
        r.propose(b"")
