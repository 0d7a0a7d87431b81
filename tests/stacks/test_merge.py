"""Several files merge in order with docker/cli's rules (``-c base.yml -c prod.yml``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.model.spec import Driver, Mount, PortConfig, SecretRef, ServiceMode, VolumeOptions
from stacks import SecretSpec, StackError, StackSpec, VolumeSpec, load_stack

NS = "com.docker.stack.namespace"


def load_override(valid: Path) -> StackSpec:
    return load_stack(
        [Path("override/base.yml"), Path("override/prod.yml")], stack_name="shop", environ={}
    )


def test_scalars_and_command_are_replaced(in_valid: Path) -> None:
    web = load_override(in_valid).service("web")
    assert web.task_template.container.image == "shoal/busybox:latest"
    assert web.task_template.container.args == ("httpd", "-f", "-p", "8080")
    assert web.mode == ServiceMode(replicas=6)


def test_mappings_merge_key_by_key(in_valid: Path) -> None:
    container = load_override(in_valid).service("web").task_template.container
    assert container.env == ("LOG_LEVEL=warn", "REGION=eu")
    assert container.labels == {"tier": "front", "release": "2024.6", NS: "shop"}


def test_ports_are_a_set_and_volumes_merge_by_target(in_valid: Path) -> None:
    web = load_override(in_valid).service("web")
    assert web.endpoint_spec.ports == (
        PortConfig(target=80, published=80),
        PortConfig(target=443, published=443),
    )
    assert web.task_template.container.mounts == (
        Mount(
            type="volume",
            source="shop_data",
            target="/data",
            volume_options=VolumeOptions(labels={NS: "shop"}),
        ),
        Mount(
            type="volume",
            source="shop_logs",
            target="/logs",
            read_only=True,
            volume_options=VolumeOptions(labels={NS: "shop"}, driver_config=Driver(name="local")),
        ),
    )


def test_some_lists_append_and_logging_options_merge(in_valid: Path) -> None:
    task = load_override(in_valid).service("web").task_template
    assert task.container.cap_add == ("NET_ADMIN", "SYS_TIME")
    assert task.placement.constraints == ("node.role==worker", "node.labels.env==prod")
    assert task.log_driver == Driver(name="json-file", options={"max-size": "10m", "max-file": "5"})


def test_top_level_definitions_are_replaced_whole(in_valid: Path) -> None:
    spec = load_override(in_valid)
    assert spec.secrets == (SecretSpec(name="prod-token", external=True),)
    assert spec.service("web").task_template.container.secrets == (
        SecretRef(source="prod-token", target="token"),
    )
    assert spec.volumes == (
        VolumeSpec(name="shop_data", labels={NS: "shop"}),
        VolumeSpec(name="shop_logs", labels={NS: "shop"}),
    )


def test_reset_and_override_tags(in_valid: Path) -> None:
    cache = load_override(in_valid).service("cache")
    assert cache.endpoint_spec.ports == ()
    assert cache.mode == ServiceMode(kind="global", replicas=0)


def test_a_later_file_can_add_a_service_and_an_empty_file_section() -> None:
    spec = load_stack(
        [
            ("a.yml", "services:\n  web:\n    image: x\n"),
            ("b.yml", "services:\n  worker:\n    image: y\nnetworks:\n"),
        ],
        stack_name="app",
        environ={},
    )
    assert [s.name for s in spec.services] == ["app_web", "app_worker"]


def test_reset_removes_a_key_and_is_refused_where_a_value_is_required() -> None:
    base = "services:\n  web:\n    image: x\n    environment: {A: '1', B: '2'}\n"
    over = "services:\n  web:\n    ports:\n      - target: !reset null\n"
    with pytest.raises(StackError) as caught:
        load_stack([("a.yml", base), ("b.yml", over)], stack_name="app", environ={})
    assert str(caught.value) == (
        "b.yml:4:9: services.web.ports[0].target: !reset cannot be used here"
    )

    over = "services:\n  web:\n    environment:\n      A: !reset null\n"
    spec = load_stack([("a.yml", base), ("b.yml", over)], stack_name="app", environ={})
    assert spec.service("web").task_template.container.env == ("B=2",)
