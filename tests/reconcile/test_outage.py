"""The outage rule: a broker outage holds down nodes' tasks where they are; every node gets a
grace period to report back after the leader's session returns or a new leader starts."""

from __future__ import annotations

import math

from agent.manager.dispatcher import _clean_description
from agent.manager.reconcile.orchestrator import plan_service
from agent.manager.reconcile.outage import (
    FleetWatch,
    Hold,
    OutageRule,
    mass_drop_end,
    silence_limit,
    silent_nodes,
)
from agent.manager.store import Node
from tests.reconcile.test_orchestrator import (
    T0,
    changed,
    created,
    empty,
    node,
    nodes,
    service,
    task,
)

RULE = OutageRule(grace=10.0, burst=2.0)
LEADER = "m1"


def cluster(*workers: Node) -> dict[str, Node]:
    return nodes(node(LEADER, role="manager"), *workers)


def hold_of(watch: FleetWatch) -> Hold:
    return watch.hold(LEADER, RULE)


def test_nothing_moves_while_the_leaders_own_session_is_down() -> None:
    watch = FleetWatch()
    watch.leading(T0 - 3600)
    watch.lost(T0)
    ns = cluster(node("n1", "down", updated=T0 + 1), node("n2"), node("n3"))
    running = task(1, "n1")
    plan = plan_service(service(1), [running], ns, T0 + 3600, hold=hold_of(watch))
    assert empty(plan)
    assert plan.wake_at is None  # the watch wakes the orchestrator when the session is back


def test_after_the_session_returns_nodes_get_the_grace_period_then_count_as_down() -> None:
    watch = FleetWatch()
    watch.leading(T0 - 3600)
    watch.lost(T0)
    watch.back(T0 + 30)
    ns = cluster(node("n1", "down", updated=T0 + 30.1), node("n2"), node("n3"))
    running = task(1, "n1")

    early = plan_service(service(1), [running], ns, T0 + 35, hold=hold_of(watch))
    assert empty(early)  # the 2 s disconnect window is over, the grace period is not
    assert early.wake_at == T0 + 40

    due = plan_service(service(1), [running], ns, T0 + 40, hold=hold_of(watch))
    assert changed(due, [running]) == {running.id: "shutdown"}
    assert len(created(due, [running])) == 1


def test_a_node_seen_going_down_while_the_leader_watches_moves_after_its_window() -> None:
    watch = FleetWatch()
    watch.leading(T0)
    ns = cluster(node("n1", "down", updated=T0 + 5), node("n2"), node("n3"))
    running = task(1, "n1")
    plan = plan_service(service(1), [running], ns, T0 + 7, hold=hold_of(watch))
    assert changed(plan, [running]) == {running.id: "shutdown"}


def test_a_node_that_reports_back_within_the_grace_period_keeps_its_tasks() -> None:
    watch = FleetWatch()
    watch.leading(T0 - 3600)
    watch.lost(T0)
    watch.back(T0 + 30)
    back = cluster(node("n1", "ready", updated=T0 + 36), node("n2"), node("n3"))
    running = task(1, "n1")
    assert empty(plan_service(service(1), [running], back, T0 + 60, hold=hold_of(watch)))


def test_a_new_leader_gives_nodes_the_grace_period_even_if_they_were_down_before() -> None:
    watch = FleetWatch()
    watch.leading(T0)
    ns = cluster(node("n1", "down", updated=T0 - 5), node("n2"), node("n3"))
    running = task(1, "n1")
    early = plan_service(service(1), [running], ns, T0 + 1, hold=hold_of(watch))
    assert empty(early)
    assert early.wake_at == T0 + 10
    due = plan_service(service(1), [running], ns, T0 + 10, hold=hold_of(watch))
    assert changed(due, [running]) == {running.id: "shutdown"}


def test_one_node_lost_on_its_own_moves_after_its_disconnect_window() -> None:
    watch = FleetWatch()
    watch.leading(T0 - 3600)
    ns = cluster(node("n1", "down", updated=T0), node("n2"), node("n3"))
    running = task(1, "n1")
    plan = plan_service(service(1), [running], ns, T0 + 2, hold=hold_of(watch))
    assert changed(plan, [running]) == {running.id: "shutdown"}


def test_most_nodes_dropping_together_is_an_outage_even_if_the_leader_saw_nothing() -> None:
    watch = FleetWatch()
    watch.leading(T0 - 3600)
    ns = cluster(
        node("n1", "down", updated=T0),
        node("n2", "down", updated=T0 + 1.5),
        node("n3"),
    )
    running = [task(1, "n1"), task(2, "n2")]
    early = plan_service(service(2), running, ns, T0 + 5, hold=hold_of(watch))
    assert empty(early)
    assert early.wake_at == T0 + 11.5  # the last drop of the burst + the grace period
    due = plan_service(service(2), running, ns, T0 + 11.5, hold=hold_of(watch))
    assert changed(due, running) == {t.id: "shutdown" for t in running}


def test_drops_further_apart_than_the_burst_are_separate_losses() -> None:
    ns = cluster(node("n1", "down", updated=T0), node("n2", "down", updated=T0 + 3), node("n3"))
    assert mass_drop_end(ns["n1"], ns, leader_id=LEADER, burst=2.0, now=T0 + 5) == -math.inf
    assert mass_drop_end(ns["n2"], ns, leader_id=LEADER, burst=2.0, now=T0 + 5) == -math.inf


def test_half_of_the_nodes_is_not_most_but_every_worker_is() -> None:
    half = cluster(
        node("n1", "down", updated=T0),
        node("n2", "down", updated=T0),
        node("n3"),
        node("n4"),
    )
    assert mass_drop_end(half["n1"], half, leader_id=LEADER, burst=2.0, now=T0) == -math.inf
    every_worker = nodes(
        node(LEADER, role="manager"),
        node("m2", role="manager"),
        node("m3", role="manager"),
        node("n1", "down", updated=T0),
        node("n2", "down", updated=T0 + 1),
    )
    end = mass_drop_end(every_worker["n1"], every_worker, leader_id=LEADER, burst=2.0, now=T0)
    assert end == T0 + 1


def test_the_leader_does_not_count_among_the_nodes_that_dropped() -> None:
    ns = nodes(node(LEADER, "down", role="manager", updated=T0), node("n1", "down", updated=T0))
    ns = {**ns, "n2": node("n2")}  # counting the leader, 2 of 3 nodes would have dropped
    assert mass_drop_end(ns["n1"], ns, leader_id=LEADER, burst=2.0, now=T0) == -math.inf


def test_the_watch_tells_its_listener_when_the_view_changes() -> None:
    watch = FleetWatch()
    told: list[Hold] = []
    watch.listener = lambda: told.append(watch.hold(LEADER, RULE))
    watch.leading(T0)
    watch.lost(T0 + 1)
    watch.back(T0 + 5)
    assert [(h.since, h.connected) for h in told] == [(T0, True), (T0, False), (T0 + 5, True)]


# silence: a death no will told of ---------------------------------------------------------
def test_a_ready_node_unheard_for_three_heartbeats_counts_as_silent() -> None:
    watch = FleetWatch()
    watch.leading(T0 - 3600)
    ns = cluster(node("n1"), node("n2"), node("n3", "down", updated=T0))
    heard = {"n1": T0, "n2": T0 + 10, "n3": T0 - 1000}
    beats = {"n1": 2.0, "n2": 2.0}
    assert silence_limit(2.0) == 11
    hold = hold_of(watch)
    assert silent_nodes(ns, heard, beats, hold=hold, now=T0 + 10.9) == []
    assert silent_nodes(ns, heard, beats, hold=hold, now=T0 + 11) == ["n1"]
    # n2 spoke later; n3 is down already; the leader itself is never silent to itself
    assert silent_nodes(ns, heard, beats, hold=hold, now=T0 + 21) == ["n1", "n2"]


def test_a_node_whose_heartbeat_is_unknown_gets_the_default_of_60_s() -> None:
    watch = FleetWatch()
    watch.leading(T0 - 3600)
    ns = cluster(node("n1"))
    assert silent_nodes(ns, {"n1": T0}, {}, hold=hold_of(watch), now=T0 + 184) == []
    assert silent_nodes(ns, {"n1": T0}, {}, hold=hold_of(watch), now=T0 + 185) == ["n1"]


def test_silence_counts_from_when_the_leader_watches_and_lasts_at_least_the_grace() -> None:
    watch = FleetWatch()
    watch.leading(T0 - 3600)
    watch.lost(T0)
    ns = cluster(node("n1"), node("n2"))
    heard = {"n1": T0 - 100}  # n2 never heard by this manager
    beats = {"n1": 1.0, "n2": 1.0}  # limit 8 s, the grace 10 s
    # nothing while the leader's own session is down, however long
    assert silent_nodes(ns, heard, beats, hold=hold_of(watch), now=T0 + 3600) == []
    watch.back(T0 + 3600)
    hold = hold_of(watch)
    assert silent_nodes(ns, heard, beats, hold=hold, now=T0 + 3609.9) == []
    assert silent_nodes(ns, heard, beats, hold=hold, now=T0 + 3610) == ["n1", "n2"]


def test_a_nodes_description_carries_its_heartbeat_within_bounds() -> None:
    assert _clean_description({"heartbeat": 2})["heartbeat"] == 2.0
    assert _clean_description({"heartbeat": 1e9})["heartbeat"] == 86400.0
    assert _clean_description({"heartbeat": 0.001})["heartbeat"] == 0.1
    for bad in (0, -1, math.inf, math.nan, True, "60", None):
        assert "heartbeat" not in _clean_description({"heartbeat": bad}), bad
