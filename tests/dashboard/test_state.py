"""The dashboard's state model, fed topic/payload pairs as the broker delivers them."""

from __future__ import annotations

import json

from agent.dashboard.state import EVENTS_KEPT, ClusterState

P = "shoal/c1abc/mon/"


def msg(doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_a_node_keeps_its_description_tasks_and_usage_when_its_document_changes() -> None:
    s = ClusterState("c1abc")
    s.apply(P + "node/n1/usage", msg({"cpu": 0.5}))
    s.apply(P + "node/n1", msg({"hostname": "pi", "status": "ready"}))
    s.apply(P + "node/n1/tasks", msg({"t1": {"state": "running"}}))
    s.apply(P + "node/n1", msg({"hostname": "pi", "status": "down"}))
    node = s.nodes["n1"]
    assert node["status"] == "down"
    assert node["usage"] == {"cpu": 0.5}
    assert node["tasks"] == {"t1": {"state": "running"}}


def test_an_empty_retained_message_removes_the_node_or_the_service() -> None:
    s = ClusterState("c1abc")
    s.apply(P + "node/n1", msg({"hostname": "pi"}))
    s.apply(P + "service/s1", msg({"name": "web"}))
    removed = s.apply(P + "node/n1", b"")
    assert removed is not None and removed.value is None
    s.apply(P + "service/s1", b"")
    assert s.nodes == {} and s.services == {}
    assert s.apply(P + "node/n1/usage", b"") is None  # a late clear brings nothing back
    assert s.nodes == {}


def test_bad_messages_are_counted_and_change_nothing() -> None:
    s = ClusterState("c1abc")
    s.apply(P + "service/s1", msg({"name": "web"}))
    for topic, payload in [
        (P + "service/s1", b"{not json"),
        (P + "service/s1", msg([1, 2])),
        (P + "service/s1", b"\xff\xfe"),
        (P + "nowhere/x", msg({})),
        ("shoal/other/mon/node/n1", msg({})),
    ]:
        assert s.apply(topic, payload) is None
    assert s.bad_messages == 5
    assert s.services["s1"]["name"] == "web"
    assert "shoal/other/mon/node/n1" in s.last_bad


def test_only_the_last_events_are_kept_and_the_cluster_document_when_present() -> None:
    s = ClusterState("c1abc")
    for i in range(EVENTS_KEPT + 5):
        s.apply(P + "events", msg({"Type": "task", "n": i}))
    assert len(s.events) == EVENTS_KEPT and s.events[0]["n"] == 5
    assert s.snapshot()["cluster"] is None
    s.apply(P + "cluster", msg({"leader": "n1", "term": 4}))
    assert s.snapshot()["cluster"] == {"leader": "n1", "term": 4}
    s.apply(P + "broker", msg({"backend": "mosquitto"}))
    assert s.snapshot()["broker"] == {"backend": "mosquitto"}
    assert s.bad_messages == 0
    json.dumps(s.snapshot())  # serves as JSON


def test_the_retained_digest_fills_in_the_events_seen_before_the_dashboard_started() -> None:
    s = ClusterState("c1abc")
    live = {"Type": "task", "Action": "update", "timeNano": 30}
    s.apply(P + "events", msg(live))  # seen live, and also in the digest
    earlier = [{"Type": "service", "Action": "create", "timeNano": t} for t in (10, 20)]
    change = s.apply(P + "events/recent", msg({"events": [*earlier, live]}))
    assert change is not None and change.kind == "events"
    assert [e["timeNano"] for e in s.events] == [10, 20, 30]  # each once, in time order
    assert s.apply(P + "events/recent", msg({"events": earlier})) is None  # nothing new
    assert s.apply(P + "events/recent", msg({"events": "x"})) is None
    assert s.bad_messages == 1 and "not a list" in s.last_bad
    many = [{"Type": "node", "timeNano": t} for t in range(100, 200)]
    s.apply(P + "events/recent", msg({"events": many}))
    assert len(s.events) == EVENTS_KEPT and s.events[-1]["timeNano"] == 199
