"""The outage rule: a broker outage holds down nodes' tasks where they are; every node gets a
grace period to report back after the leader's session returns or a new leader starts."""

from __future__ import annotations

import math

from agent.manager.orchestrator import plan_service
from agent.manager.outage import FleetWatch, Hold, OutageRule, mass_drop_end
from agent.manager.store import Node
from tests.unit.test_orchestrator import T0, changed, created, empty, node, nodes, service, task

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
