"""agent.model.spec: dicts out are plain JSON/msgpack values; dicts in are checked strictly."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model.spec import (
    SECOND,
    ContainerSpec,
    EndpointSpec,
    Healthcheck,
    Mount,
    PortConfig,
    RestartPolicy,
    ServiceMode,
    ServiceSpec,
    Spec,
    SpecError,
    TaskSpec,
    UpdateConfig,
)


def specs(cls: type[Spec]) -> st.SearchStrategy[Any]:
    """Valid instances of a spec class, honouring each field's constraints."""
    hints = typing.get_type_hints(cls)
    fields = {
        f.name: _values(hints[f.name], f.metadata)
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
    }
    return st.builds(cls, **fields)


def _values(tp: Any, meta: typing.Mapping[str, Any]) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return st.sampled_from(typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return st.none() | _values(inner, meta)
    if origin is tuple:
        return st.lists(_values(typing.get_args(tp)[0], {}), max_size=3).map(tuple)
    if origin is dict:
        return st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)
    if isinstance(tp, type) and issubclass(tp, Spec):
        return specs(tp)
    if tp is bool:
        return st.booleans()
    if tp is str:
        return st.text(min_size=1 if meta.get("nonempty") else 0, max_size=12)
    if tp is bytes:
        return st.binary(max_size=16)
    if tp is int:
        return st.integers(min_value=meta.get("min", -(2**40)), max_value=meta.get("max", 2**40))
    if tp is float:
        return st.floats(
            min_value=meta.get("min"),
            max_value=meta.get("max"),
            allow_nan=False,
            allow_infinity=False,
        )
    raise AssertionError(f"no strategy for {tp!r}")


@settings(max_examples=60, deadline=None)
@given(specs(ServiceSpec))
def test_service_specs_round_trip_through_json_and_msgpack(spec: ServiceSpec) -> None:
    as_dict = spec.to_dict()
    assert ServiceSpec.from_dict(json.loads(json.dumps(as_dict))) == spec
    assert ServiceSpec.from_dict(msgpack.unpackb(msgpack.packb(as_dict))) == spec


def test_defaults_are_dockers() -> None:
    assert RestartPolicy() == RestartPolicy(
        condition="any", delay_ns=5 * SECOND, max_attempts=0, window_ns=0
    )
    assert UpdateConfig() == UpdateConfig(
        parallelism=1,
        delay_ns=0,
        failure_action="pause",
        monitor_ns=5 * SECOND,
        max_failure_ratio=0.0,
        order="stop-first",
    )
    assert ServiceMode() == ServiceMode(kind="replicated", replicas=1)
    assert EndpointSpec().mode == "vip"
    assert PortConfig(target=80) == PortConfig(
        target=80, published=0, protocol="tcp", publish_mode="ingress"
    )


def test_from_dict_fills_defaults() -> None:
    spec = ServiceSpec.from_dict({"name": "web", "task_template": {"container": {"image": "x"}}})
    assert spec == ServiceSpec(
        name="web", task_template=TaskSpec(container=ContainerSpec(image="x"))
    )


MINIMAL = {"name": "web", "task_template": {"container": {"image": "x"}}}


def _with(path: str, value: object) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(MINIMAL))
    node = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected a mapping, found a list"),
        ({"task_template": MINIMAL["task_template"]}, "name: required key is missing"),
        (_with("color", "red"), "color: unknown key"),
        (_with("name", ""), "name: expected a non-empty string"),
        (
            _with("task_template.container.env", ["A=1", 2]),
            "task_template.container.env[1]: expected a string, found 2",
        ),
        (
            _with("task_template.container.mounts", [{"type": "nfs", "target": "/x"}]),
            "task_template.container.mounts[0].type: expected one of 'bind', 'volume', 'tmpfs', "
            "found 'nfs'",
        ),
        (_with("mode.replicas", True), "mode.replicas: expected an integer, found true"),
        (_with("mode.replicas", -1), "mode.replicas: expected a number >= 0, found -1"),
        (
            _with("endpoint_spec.ports", [{"target": 70000}]),
            "endpoint_spec.ports[0].target: expected a number <= 65535, found 70000",
        ),
        (
            _with("update_config", {"max_failure_ratio": float("nan")}),
            "update_config.max_failure_ratio: expected a finite number, found nan",
        ),
        (_with("labels", {"a": 1}), "labels.a: expected a string, found 1"),
        (
            _with("task_template.container.labels", {1: "a"}),
            "task_template.container.labels: expected string keys, found 1",
        ),
        (
            _with("task_template.restart_policy", None),
            "task_template.restart_policy: expected a mapping, found null",
        ),
    ],
)
def test_from_dict_names_the_key_path(data: object, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        ServiceSpec.from_dict(data)
    assert str(caught.value) == message


def test_spec_error_is_a_value_error_with_path() -> None:
    with pytest.raises(ValueError) as caught:
        Healthcheck.from_dict({"retries": "3"})
    assert isinstance(caught.value, SpecError)
    assert caught.value.path == "retries"


def test_to_dict_is_plain_data() -> None:
    spec = ServiceSpec(
        name="web",
        task_template=TaskSpec(
            container=ContainerSpec(image="x", mounts=(Mount(type="tmpfs", target="/t"),))
        ),
    )
    assert json.loads(json.dumps(spec.to_dict())) == spec.to_dict()


_NAMES = st.sampled_from(
    sorted(
        {
            f.name
            for cls in (ServiceSpec, TaskSpec, ContainerSpec, Mount, PortConfig, EndpointSpec)
            for f in dataclasses.fields(cls)
        }
    )
)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=4),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_NAMES | st.text(max_size=4) | st.integers(), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_from_dict_on_arbitrary_data_raises_only_spec_error(data: object) -> None:
    for cls in (ServiceSpec, TaskSpec, ContainerSpec, Mount, PortConfig):
        try:
            cls.from_dict(data)
        except SpecError:
            pass


@settings(max_examples=200, deadline=None)
@given(specs(ServiceSpec), st.data())
def test_from_dict_on_mutated_specs_raises_only_spec_error(
    spec: ServiceSpec, data: st.DataObject
) -> None:
    tree = spec.to_dict()
    node: Any = tree
    for _ in range(data.draw(st.integers(0, 4))):
        if isinstance(node, dict) and node:
            key = data.draw(st.sampled_from(sorted(node)))
            if isinstance(node[key], dict | list) and node[key]:
                node = node[key]
                continue
            node[key] = data.draw(_JSON)
            break
        if isinstance(node, list) and node:
            index = data.draw(st.integers(0, len(node) - 1))
            node[index] = data.draw(_JSON)
            break
    try:
        ServiceSpec.from_dict(tree)
    except SpecError:
        pass
