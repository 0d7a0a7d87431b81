"""The store's wire form: objects decoded from the maps Raft entries and snapshots hold give
those maps back exactly, byte for byte once packed, so logs and snapshots written before the
store objects were typed still load, and a manager of either kind reads the other's."""

from __future__ import annotations

import copy
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.manager.store import (
    KINDS,
    ClientRole,
    NodeAvailability,
    NodeRole,
    NodeStatus,
    Service,
    Store,
    StoreError,
    Task,
    UpdateState,
)
from agent.model import DesiredState, TaskState
from agent.model.spec import (
    SECOND,
    ContainerSpec,
    EndpointSpec,
    Healthcheck,
    NetworkAttachment,
    PortConfig,
    SecretRef,
    ServiceMode,
    ServiceSpec,
    TaskSpec,
    UpdateConfig,
)

STAMP = "2026-12-03T08:00:00.000+00:00"
LATER = "2026-12-03T08:05:00.000+00:00"

WEB = ServiceSpec(
    name="web",
    labels={"com.docker.stack.namespace": "shop"},
    task_template=TaskSpec(
        container=ContainerSpec(
            image="nginx:1",
            env=("A=1",),
            healthcheck=Healthcheck(test=("CMD", "true"), interval_ns=SECOND),
            secrets=(SecretRef(source="db", target="db", secret_id="x1"),),
        ),
        networks=(NetworkAttachment(target="w1", aliases=("www",)),),
    ),
    mode=ServiceMode(replicas=3),
    update_config=UpdateConfig(parallelism=2, failure_action="rollback"),
    endpoint_spec=EndpointSpec(ports=(PortConfig(target=80, published=8080),)),
)
# what the store has always kept for a spec: the spec's own map
SPEC = WEB.to_dict()
OLD_SPEC = ServiceSpec(
    name="web", task_template=TaskSpec(container=ContainerSpec(image="a"))
).to_dict()
PORT = {"target": 80, "published": 8080, "protocol": "tcp", "publish_mode": "ingress", "name": ""}
HOST_PORT = {"target": 53, "published": 53, "protocol": "udp", "publish_mode": "host", "name": ""}

# Every map below is written out as the store held it before its objects were typed.
SERVICES: dict[str, dict[str, Any]] = {
    "created": {
        "id": "s1",
        "name": "web",
        "spec": SPEC,
        "spec_version": 1,
        "previous_spec": {},
        "update_status": {},
        "endpoint": {},
        "created": STAMP,
        "updated": STAMP,
    },
    "updating": {
        "id": "s1",
        "name": "web",
        "spec": SPEC,
        "spec_version": 2,
        "previous_spec": OLD_SPEC,
        "update_status": {
            "state": "updating",
            "started_at": STAMP,
            "message": "update in progress",
        },
        "endpoint": {},
        "created": STAMP,
        "updated": STAMP,
    },
    "paused": {
        "id": "s1",
        "name": "web",
        "spec": SPEC,
        "spec_version": 2,
        "previous_spec": OLD_SPEC,
        "update_status": {
            "state": "paused",
            "started_at": STAMP,
            "message": "update paused due to failure or early termination of task t9",
        },
        "endpoint": {},
        "created": STAMP,
        "updated": STAMP,
    },
    "rolled back by itself": {
        "id": "s1",
        "name": "web",
        "spec": OLD_SPEC,
        "spec_version": 3,
        "previous_spec": SPEC,
        "update_status": {
            "state": "rollback_completed",
            "started_at": STAMP,
            "message": "rollback completed",
            "reason": "update rolled back due to failure or early termination of task t9",
            "completed_at": LATER,
        },
        "endpoint": {},
        "created": STAMP,
        "updated": LATER,
    },
}

TASK_SPEC = SPEC["task_template"]
NODE_STATUS = {
    "task_id": "t1",
    "state": "running",
    "message": "started",
    "err": "",
    "exit_code": None,
    "container_id": "c0ffee",
    "timestamp": 1_796_284_800.25,
    "health": "healthy",
    "restarts": 1,
}
TASKS: dict[str, dict[str, Any]] = {
    "no status": {
        "id": "t1",
        "service_id": "s1",
        "slot": 1,
        "node_id": "",
        "desired_state": "running",
        "spec": TASK_SPEC,
        "spec_version": 1,
        "status": {},
        "endpoint": {},
        "restarts": [],
        "created": STAMP,
        "updated": STAMP,
    },
    "pending": {
        "id": "t1",
        "service_id": "s1",
        "slot": 1,
        "node_id": "",
        "desired_state": "running",
        "spec": TASK_SPEC,
        "spec_version": 1,
        "status": {"state": "pending", "message": "pending task scheduling", "timestamp": 1.5},
        "endpoint": {"ports": [PORT]},
        "restarts": [],
        "created": STAMP,
        "updated": STAMP,
    },
    "assigned": {
        "id": "t2",
        "service_id": "s1",
        "slot": 0,
        "node_id": "n1",
        "desired_state": "running",
        "spec": TASK_SPEC,
        "spec_version": 2,
        "status": {"state": "assigned", "message": "assigned", "timestamp": 1_796_284_800.0},
        "endpoint": {"ports": [PORT, HOST_PORT]},
        "restarts": [1_796_284_700_000, 1_796_284_750_000],
        "created": STAMP,
        "updated": STAMP,
    },
    "reported by its node, shut down": {
        "id": "t1",
        "service_id": "s1",
        "slot": 2,
        "node_id": "n1",
        "desired_state": "shutdown",
        "spec": TASK_SPEC,
        "spec_version": 1,
        "status": NODE_STATUS,
        "endpoint": {},
        "restarts": [],
        "created": STAMP,
        "updated": LATER,
    },
}

OTHERS: dict[str, dict[str, Any]] = {
    "node": {
        "id": "n1",
        "role": "manager",
        "hostname": "pi-1",
        "serials": ["123456789012345678901234567890"],
        "cert": b"-----BEGIN CERTIFICATE-----\n",
        "status": "ready",
        "availability": "drain",
        "labels": {"zone": "a"},
        "description": {
            "hostname": "pi-1",
            "platform": {"os": "linux", "arch": "aarch64"},
            "resources": {"nano_cpus": 4_000_000_000, "memory_bytes": 8 << 30},
            "engine": {"driver": "docker", "name": "docker", "version": "27", "labels": {}},
        },
        "created": STAMP,
        "updated": STAMP,
    },
    "new node": {
        "id": "n2",
        "role": "worker",
        "hostname": "n2",
        "serials": [],
        "cert": b"",
        "status": "unknown",
        "availability": "active",
        "labels": {},
        "description": {},
        "created": "",
        "updated": "",
    },
    "client": {"id": "a1", "role": "admin", "serial": "42"},
}


def _roundtrip(kind: str, raw: dict[str, Any]) -> None:
    obj = KINDS[kind].from_dict(copy.deepcopy(raw))
    assert obj.to_dict() == raw
    packed = msgpack.packb(raw, use_bin_type=True)
    assert msgpack.packb(obj.to_dict(), use_bin_type=True) == packed
    again = KINDS[kind].from_dict(msgpack.unpackb(packed, raw=False))
    assert again == obj


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_a_stored_service_gives_back_its_map_exactly(name: str) -> None:
    _roundtrip("service", SERVICES[name])


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_stored_task_gives_back_its_map_exactly(name: str) -> None:
    _roundtrip("task", TASKS[name])


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_stored_nodes_and_clients_give_back_their_maps_exactly(name: str) -> None:
    _roundtrip("client" if name == "client" else "node", OTHERS[name])


def test_the_decoded_objects_are_typed() -> None:
    fresh = Service.from_dict(SERVICES["created"])
    assert fresh.spec == WEB and fresh.previous_spec is None and fresh.update_status is None
    back = Service.from_dict(SERVICES["rolled back by itself"])
    assert back.previous_spec == WEB
    assert back.update_status is not None
    assert back.update_status.state is UpdateState.ROLLBACK_COMPLETED
    assert back.update_status.completed_at == LATER

    assert Task.from_dict(TASKS["no status"]).status is None
    pending = Task.from_dict(TASKS["pending"])
    assert pending.spec == WEB.task_template
    assert pending.status is not None and pending.status.state is TaskState.PENDING
    assert pending.status.task_id == ""  # a manager set it
    assert pending.endpoint.ports == WEB.endpoint_spec.ports
    reported = Task.from_dict(TASKS["reported by its node, shut down"])
    assert reported.desired_state is DesiredState.SHUTDOWN
    assert reported.status is not None and reported.status.task_id == "t1"
    assert reported.status.health == "healthy"

    node = KINDS["node"].from_dict(OTHERS["node"])
    assert (node.role, node.status, node.availability) == (  # type: ignore[attr-defined]
        NodeRole.MANAGER,
        NodeStatus.READY,
        NodeAvailability.DRAIN,
    )
    assert KINDS["client"].from_dict(OTHERS["client"]).role is ClientRole.ADMIN  # type: ignore[attr-defined]


def test_a_snapshot_of_the_old_form_loads_and_is_written_again_byte_for_byte() -> None:
    tables: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
    for i, raw in enumerate(SERVICES.values()):
        tables["service"][f"s{i}"] = [i + 1, {**raw, "id": f"s{i}", "name": f"web{i}"}]
    for i, raw in enumerate(TASKS.values()):
        tables["task"][f"t{i}"] = [i + 1, {**raw, "id": f"t{i}"}]
    tables["node"] = {"n1": [1, OTHERS["node"]], "n2": [2, OTHERS["new node"]]}
    tables["client"] = {"a1": [1, OTHERS["client"]]}
    data = msgpack.packb({"applied": 9, "requests": [], "tables": tables}, use_bin_type=True)
    s = Store()
    s.restore(data, 9)
    assert s.snapshot() == data


@pytest.mark.parametrize(
    ("kind", "field", "value", "says"),
    [
        ("service", "spec", {"name": "web"}, "task_template: required key is missing"),
        ("service", "spec", {}, "name: required key is missing"),
        ("service", "previous_spec", {"name": 3}, "name: expected a string"),
        ("service", "update_status", {"state": "sideways"}, "unknown update state"),
        ("service", "update_status", {"state": "paused", "why": "x"}, "why: unknown key"),
        ("task", "spec", {"container": {"image": ""}}, "container.image"),
        ("task", "status", {"state": "dreaming"}, "unknown task state"),
        ("task", "status", {"task_id": "t1", "state": "running", "health": "meh"}, "health"),
        ("task", "status", "running", ""),
        ("task", "endpoint", {"ports": [{"target": 0}]}, "ports[0].target"),
        ("task", "endpoint", {"vips": []}, "vips: unknown key"),
        ("task", "desired_state", "asleep", "unknown value 'asleep'"),
        ("node", "status", "sleepy", "unknown value 'sleepy'"),
        ("node", "availability", 3, "int"),
        ("node", "role", "boss", "unknown value 'boss'"),
        ("client", "role", "root", "unknown value 'root'"),
    ],
)
def test_a_malformed_nested_field_is_a_store_error_naming_object_and_field(
    kind: str, field: str, value: Any, says: str
) -> None:
    raw = {
        "service": SERVICES["updating"],
        "task": TASKS["pending"],
        "node": OTHERS["node"],
        "client": OTHERS["client"],
    }[kind]
    with pytest.raises(StoreError) as info:
        KINDS[kind].from_dict({**raw, field: value})
    assert str(info.value).startswith(f"malformed {kind}.{field}: ")
    assert says in str(info.value)


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(max_examples=300)
@given(
    st.sampled_from(["service", "task"]),
    st.sampled_from(["spec", "previous_spec", "update_status", "status", "endpoint"]),
    _VALUES,
)
def test_any_nested_value_decodes_or_is_a_store_error(kind: str, field: str, value: Any) -> None:
    raw = SERVICES["updating"] if kind == "service" else TASKS["pending"]
    try:
        KINDS[kind].from_dict({**raw, field: value})
    except StoreError:
        pass


def test_tasks_with_the_same_spec_share_one_decoded_value_and_map() -> None:
    one = Task.from_dict(copy.deepcopy(TASKS["pending"]))
    two = Task.from_dict({**copy.deepcopy(TASKS["assigned"]), "id": "t9"})
    assert one.spec is two.spec
    assert one.to_dict()["spec"] is two.to_dict()["spec"] == TASK_SPEC


def test_sharing_never_lets_a_map_through_that_differs_only_in_a_number_type() -> None:
    good = {**TASKS["pending"], "spec": {**TASK_SPEC, "force_update": 1}}
    assert Task.from_dict(good).spec.force_update == 1
    with pytest.raises(StoreError, match=r"malformed task\.spec: force_update"):
        Task.from_dict({**good, "spec": {**TASK_SPEC, "force_update": True}})
