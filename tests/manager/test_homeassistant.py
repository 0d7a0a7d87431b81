"""Home Assistant discovery entries, as pure data: nodes and services in, topic -> payload out.

Templates are rendered with Jinja2, the engine Home Assistant renders them with."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jinja2
import pytest

from agent.manager.homeassistant import changes, documents, object_id
from agent.manager.store import Node, NodeRole, NodeStatus, Service
from agent.model.spec import ServiceMode
from broker.errors import BrokerError
from broker.topics import Topics, check_discovery_prefix
from tests.store.store_values import service_spec

T = Topics("c1")
NODE = Node(id="n1", hostname="pi-7", role=NodeRole.WORKER, status=NodeStatus.READY)
SERVICE = Service(
    id="s1",
    name="web",
    spec=dataclasses.replace(service_spec("web", "nginx:1"), mode=ServiceMode(replicas=3)),
)


def render(template: str, doc: dict[str, Any]) -> str:
    return jinja2.Environment().from_string(template).render(value_json=doc)


def _docs(prefix: str = "homeassistant", **kw: Any) -> dict[str, dict[str, Any]]:
    nodes = kw.get("nodes", [NODE])
    services = kw.get("services", [SERVICE])
    out = documents(T, prefix, nodes, services, version="0.1.0")
    return {topic: json.loads(body) for topic, body in out.items()}


def _by_key(docs: dict[str, dict[str, Any]], kind: str, ident: str) -> dict[str, dict[str, Any]]:
    head = f"shoal_c1_{kind}_{ident}_"
    return {
        d["unique_id"][len(head) :]: d for d in docs.values() if d["unique_id"].startswith(head)
    }


def test_each_node_is_a_device_with_its_sensors_on_the_existing_monitoring_topics() -> None:
    docs = _docs(services=[])
    sensors = _by_key(docs, "node", "n1")
    assert sorted(sensors) == ["availability", "cpu", "disk", "memory", "role", "status", "tasks"]
    status = docs["homeassistant/sensor/shoal_c1/node_n1_status/config"]
    assert status["state_topic"] == "shoal/c1/mon/node/n1"
    assert status["unique_id"] == status["object_id"] == "shoal_c1_node_n1_status"
    assert status["device"] == {
        "identifiers": ["shoal_c1_node_n1"],
        "name": "pi-7",
        "manufacturer": "shoal",
        "model": "shoal worker node",
        "serial_number": "n1",
    }
    assert status["origin"] == {"name": "shoal", "sw_version": "0.1.0"}
    assert "availability_topic" not in status  # a down node's status still reads "down"
    for key in ("cpu", "memory", "disk"):
        assert sensors[key]["state_topic"] == "shoal/c1/mon/node/n1/usage"
    assert sensors["tasks"]["state_topic"] == "shoal/c1/mon/node/n1/tasks"
    for key in ("cpu", "memory", "disk", "tasks"):
        assert sensors[key]["state_class"] == "measurement"
    assert sensors["cpu"]["unit_of_measurement"] == "%"
    assert {d["device"]["identifiers"][0] for d in sensors.values()} == {"shoal_c1_node_n1"}


def test_node_sensors_read_the_documents_the_cluster_publishes() -> None:
    sensors = _by_key(_docs(services=[]), "node", "n1")
    node_doc = {"id": "n1", "role": "worker", "status": "ready", "availability": "drain"}
    usage = {
        "cpu": 0.123,
        "memory_used": 1_000,
        "memory_total": 4_000,
        "disk_used": 3,
        "disk_total": 10,
    }
    tasks = {
        "t1": {"state": "running", "exit_code": None},
        "t2": {"state": "running", "exit_code": None},
        "t3": {"state": "complete", "exit_code": 0},
    }
    docs = {"n1": node_doc, "usage": usage, "tasks": tasks}
    values = {
        key: render(d["value_template"], docs[d["state_topic"].rsplit("/", 1)[1]])
        for key, d in sensors.items()
    }
    assert values == {
        "status": "ready",
        "availability": "drain",
        "role": "worker",
        "cpu": "12.3",
        "memory": "25.0",
        "disk": "30.0",
        "tasks": "2",
    }
    # a value not known yet reads as unknown (Home Assistant takes "None" so), not as an error
    first = {**usage, "cpu": None, "disk_used": None, "disk_total": None}
    assert render(sensors["cpu"]["value_template"], first) == "None"
    assert render(sensors["disk"]["value_template"], first) == "None"


def test_node_sensors_are_available_while_the_node_is_ready() -> None:
    cpu = _by_key(_docs(services=[]), "node", "n1")["cpu"]
    assert cpu["availability_topic"] == "shoal/c1/mon/node/n1"
    assert render(cpu["availability_template"], {"status": "ready"}) == "online"
    assert render(cpu["availability_template"], {"status": "down"}) == "offline"
    assert render(cpu["availability_template"], {"status": "unknown"}) == "offline"


def test_each_service_is_a_device_with_replicas_image_and_update_status() -> None:
    sensors = _by_key(_docs(nodes=[]), "service", "s1")
    assert sorted(sensors) == ["desired", "image", "running", "update"]
    assert {d["state_topic"] for d in sensors.values()} == {"shoal/c1/mon/service/s1"}
    assert sensors["running"]["device"]["name"] == "web"
    assert sensors["running"]["device"]["model"] == "shoal replicated service"
    doc = {"running": 2, "desired": 3, "image": "nginx:1", "update_status": {}}
    values = {key: render(d["value_template"], doc) for key, d in sensors.items()}
    assert values == {"running": "2", "desired": "3", "image": "nginx:1", "update": "none"}
    doc["update_status"] = {"state": "updating", "message": "update in progress"}
    assert render(sensors["update"]["value_template"], doc) == "updating"
    assert sensors["running"]["unit_of_measurement"] == "tasks"
    assert "state_class" not in sensors["image"]


def test_entries_live_under_the_prefix_and_the_clusters_own_node_id() -> None:
    topics = set(documents(T, "ha-test", [NODE], [SERVICE], version="x"))
    assert len(topics) == 7 + 4
    assert all(t.startswith("ha-test/sensor/shoal_c1/") and t.endswith("/config") for t in topics)
    assert T.discovery_configs("ha-test") == "ha-test/+/shoal_c1/+/config"
    assert T.discovery_configs() == "+/+/shoal_c1/+/config"
    assert T.discovery_tree("ha-test") == "ha-test/+/shoal_c1/#"


def test_object_ids_keep_only_letters_digits_underscore_and_dash() -> None:
    assert object_id("node", "n1", "cpu") == "node_n1_cpu"
    assert object_id("a.b c/d+e#f") == "a_b_c_d_e_f"
    assert object_id("x-y_Z9") == "x-y_Z9"
    # an id that cannot be a topic level has no monitoring document: it gets no entries
    odd = dataclasses.replace(NODE, id="n.1 x")
    assert documents(T, "homeassistant", [odd, NODE], [], version="x").keys() == (
        documents(T, "homeassistant", [NODE], [], version="x").keys()
    )


@pytest.mark.parametrize("bad", ["", "home assistant", "a/b", "a.b", "+", "#", "x" * 65])
def test_a_prefix_that_is_not_one_safe_topic_level_is_refused(bad: str) -> None:
    with pytest.raises(BrokerError, match="discovery prefix"):
        check_discovery_prefix(bad)


def test_nothing_is_published_when_the_broker_already_holds_what_is_wanted() -> None:
    wanted = documents(T, "homeassistant", [NODE], [SERVICE], version="x")
    assert changes(wanted, wanted) == {}
    assert changes({}, wanted) == wanted


def test_a_removed_object_has_its_entries_cleared() -> None:
    held = documents(T, "homeassistant", [NODE], [SERVICE], version="x")
    wanted = documents(T, "homeassistant", [NODE], [], version="x")
    todo = changes(held, wanted)
    assert len(todo) == 4 and set(todo.values()) == {b""}
    assert all("/service_s1_" in topic for topic in todo)


def test_turning_discovery_off_clears_every_entry() -> None:
    held = documents(T, "homeassistant", [NODE], [SERVICE], version="x")
    assert changes(held, {}) == dict.fromkeys(sorted(held), b"")


def test_a_new_prefix_publishes_there_and_clears_the_old_one() -> None:
    held = documents(T, "homeassistant", [NODE], [], version="x")
    wanted = documents(T, "ha2", [NODE], [], version="x")
    todo = changes(held, wanted)
    assert {t for t, body in todo.items() if not body} == set(held)
    assert {t: body for t, body in todo.items() if body} == wanted


def test_a_changed_node_republishes_only_what_changed() -> None:
    held = documents(T, "homeassistant", [NODE], [], version="x")
    renamed = dataclasses.replace(NODE, hostname="pi-8")
    todo = changes(held, documents(T, "homeassistant", [renamed], [], version="x"))
    assert set(todo) == set(held)  # every sensor carries the device name
    assert all(json.loads(body)["device"]["name"] == "pi-8" for body in todo.values())
    # a status change is state, not discovery: nothing to publish
    down = dataclasses.replace(NODE, status=NodeStatus.DOWN, updated="later")
    assert changes(held, documents(T, "homeassistant", [down], [], version="x")) == {}
