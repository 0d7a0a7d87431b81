"""The example stacks shipped in stacks/examples deploy as documented."""

from __future__ import annotations

import pytest

from agent.model.spec import PortConfig
from stacks import StackError, load_stack
from tests.stacks.paths import EXAMPLES


def test_every_example_runs_only_the_offline_busybox_image() -> None:
    for path in sorted(EXAMPLES.glob("*.yml")):
        spec = load_stack([path], stack_name="example", environ={"VOTE_DB_PASSWORD": "pw"})
        assert {s.task_template.container.image for s in spec.services} == {"shoal/busybox:latest"}
        assert spec.warnings == ()


def test_demo_is_a_web_service_with_two_replicas_and_a_redis() -> None:
    spec = load_stack([EXAMPLES / "demo.yml"], stack_name="demo", environ={})

    assert [s.name for s in spec.services] == ["demo_redis", "demo_web"]
    web = spec.service("web")
    assert web.mode.replicas == 2
    assert web.endpoint_spec.ports == (PortConfig(target=8000, published=8000),)
    assert web.task_template.container.args is not None
    assert web.task_template.container.args[:2] == ("sh", "-c")
    assert "httpd -f -p 8000" in web.task_template.container.args[2]
    assert "$(hostname)" in web.task_template.container.args[2]
    health = web.task_template.container.healthcheck
    assert health is not None and health.interval_ns == 2_000_000_000  # up within seconds


def test_voting_has_five_services_networks_a_secret_and_placement() -> None:
    spec = load_stack(
        [EXAMPLES / "voting.yml"], stack_name="vote", environ={"VOTE_DB_PASSWORD": "pw"}
    )

    assert [s.name for s in spec.services] == [
        "vote_db",
        "vote_redis",
        "vote_result",
        "vote_vote",
        "vote_worker",
    ]
    assert [n.name for n in spec.networks] == ["vote_backend", "vote_frontend"]
    assert [(s.name, s.data) for s in spec.secrets] == [("vote_db_password", b"pw")]
    assert spec.service("db").task_template.placement.constraints == ("node.role==manager",)
    assert spec.service("vote").task_template.placement.preferences == ("spread=node.labels.zone",)
    assert [p.published for p in spec.service("vote").endpoint_spec.ports] == [5000]
    assert [p.published for p in spec.service("result").endpoint_spec.ports] == [5001]


def test_voting_needs_its_password_variable() -> None:
    with pytest.raises(StackError) as caught:
        load_stack([EXAMPLES / "voting.yml"], stack_name="vote", environ={})
    assert caught.value.path == "secrets.db_password.environment"
    assert caught.value.message == "environment variable 'VOTE_DB_PASSWORD' is not set"
