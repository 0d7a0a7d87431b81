"""Assignments and task statuses: strict decoding of what arrives from the network."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model import (
    DESIRED_STATES,
    Assignment,
    AssignmentError,
    StatusError,
    TaskState,
    TaskStatus,
)
from tests.worker.helpers import sh


def valid() -> dict[str, Any]:
    return sh("exit 0").to_dict()


def test_task_states_are_ordered_like_swarm() -> None:
    order = [
        TaskState.NEW,
        TaskState.PENDING,
        TaskState.ASSIGNED,
        TaskState.ACCEPTED,
        TaskState.PREPARING,
        TaskState.STARTING,
        TaskState.RUNNING,
        TaskState.COMPLETE,
        TaskState.SHUTDOWN,
        TaskState.FAILED,
        TaskState.REJECTED,
        TaskState.REMOVE,
    ]
    assert order == sorted(order)
    assert TaskState.RUNNING < TaskState.FAILED
    assert TaskState.ORPHANED >= TaskState.REMOVE


def test_terminal_states_are_those_after_running() -> None:
    terminal = {s for s in TaskState if s.is_terminal}
    assert terminal == {
        TaskState.COMPLETE,
        TaskState.SHUTDOWN,
        TaskState.FAILED,
        TaskState.REJECTED,
        TaskState.REMOVE,
        TaskState.ORPHANED,
    }
    assert TaskState.STARTING.is_active and not TaskState.ASSIGNED.is_active


def test_assignment_round_trips_through_msgpack() -> None:
    a = sh("exit 0", slot=None, desired_state="shutdown", version=7)
    wire = msgpack.packb(a.to_dict(), use_bin_type=True)
    assert Assignment.from_dict(msgpack.unpackb(wire)) == a


def test_container_name_follows_docker() -> None:
    assert sh("true", slot=3).container_name == "web.3.task1"
    assert sh("true", slot=None).container_name == "web.node1.task1"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"task_id": None}, "task_id"),
        ({"task_id": "../etc"}, "task_id"),
        ({"service_name": "web site"}, "service_name"),
        ({"slot": "1"}, "slot"),
        ({"slot": -1}, "slot"),
        ({"version": True}, "version"),
        ({"desired_state": "paused"}, "desired_state"),
        ({"cluster_id": ""}, "cluster_id"),
        ({"spec": []}, "spec"),
        ({"ports": [{"target": 0}]}, "ports[0].target"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_field_is_named(change: dict[str, Any], field: str) -> None:
    data = {**valid(), **change}
    with pytest.raises(AssignmentError) as info:
        Assignment.from_dict(data)
    assert info.value.field == field


def test_missing_field_is_named() -> None:
    data = valid()
    del data["node_id"]
    with pytest.raises(AssignmentError, match="node_id: required key is missing"):
        Assignment.from_dict(data)


def test_spec_errors_carry_their_key_path() -> None:
    data = valid()
    data["spec"]["container"]["image"] = 5
    with pytest.raises(AssignmentError) as info:
        Assignment.from_dict(data)
    assert info.value.field == "spec.container.image"


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_like)
def test_from_dict_on_anything_raises_only_assignment_error(data: Any) -> None:
    try:
        Assignment.from_dict(data)
    except AssignmentError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(valid())), json_like)
def test_one_bad_field_raises_only_assignment_error(key: str, value: Any) -> None:
    data = {**valid(), key: value}
    try:
        a = Assignment.from_dict(data)
    except AssignmentError:
        return
    assert a.desired_state in DESIRED_STATES


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["container", "restart_policy", "resources"]), json_like)
def test_bad_spec_parts_raise_only_assignment_error(key: str, value: Any) -> None:
    data = valid()
    data["spec"][key] = value
    try:
        Assignment.from_dict(data)
    except AssignmentError:
        pass


def test_status_round_trips() -> None:
    status = TaskStatus(
        task_id="t1",
        state=TaskState.FAILED,
        message="exited with code 3",
        err="task: non-zero exit (3)",
        exit_code=3,
        container_id="abc",
        timestamp=12.5,
        health="unhealthy",
        restarts=2,
    )
    assert TaskStatus.from_dict(status.to_dict()) == status


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"state": "dancing"}, "state"),
        ({"exit_code": "3"}, "exit_code"),
        ({"health": "meh"}, "health"),
        ({"timestamp": float("nan")}, "timestamp"),
    ],
)
def test_bad_status_field_is_named(change: dict[str, Any], field: str) -> None:
    data = {**TaskStatus(task_id="t1", state=TaskState.RUNNING).to_dict(), **change}
    with pytest.raises(StatusError) as info:
        TaskStatus.from_dict(data)
    assert info.value.field == field


@settings(max_examples=200, deadline=None)
@given(json_like)
def test_status_from_anything_raises_only_status_error(data: Any) -> None:
    try:
        TaskStatus.from_dict(data)
    except StatusError:
        pass
