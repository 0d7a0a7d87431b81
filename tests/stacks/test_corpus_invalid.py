"""Each invalid stack file fails with one exact message naming file, line, column and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks import StackError, StackErrors, load_stack, load_stack_text, validate_stack_name
from tests.stacks.paths import INVALID

EXPECTED = {
    "wrong-type.yml": (
        "wrong-type.yml:6:7: services.web.deploy.replicas: expected an integer, found 'three'"
    ),
    "unknown-key.yml": (
        "unknown-key.yml:5:7: services.web.deploy.replica: unknown key 'replica'; "
        "did you mean 'replicas'?"
    ),
    "unknown-service-key.yml": (
        "unknown-service-key.yml:4:5: services.web.enviroment: unknown key 'enviroment'; "
        "did you mean 'environment'?"
    ),
    "bad-port.yml": (
        "bad-port.yml:6:9: services.web.ports[1]: invalid published port '80800' in port "
        "'80800:80': ports are 1-65535"
    ),
    "bad-duration.yml": (
        "bad-duration.yml:7:9: services.web.deploy.restart_policy.delay: expected a duration "
        "like '10s' or '1m30s', found '10 seconds'"
    ),
    "undefined-variable.yml": (
        "undefined-variable.yml:3:5: services.web.image: required variable SHOAL_MISSING_TAG "
        "is missing a value: set SHOAL_MISSING_TAG to the image tag"
    ),
    "missing-secret-file.yml": (
        "missing-secret-file.yml:7:5: secrets.db_password.file: cannot read secret file "
        "'./db_password.txt': No such file or directory"
    ),
    "version-2.yml": (
        "version-2.yml:1:1: version: unsupported Compose file version: 2.4; shoal stack "
        "deploy, like docker stack deploy, needs version 3.x or a Compose Specification file "
        "(no 'version' key), with resource limits such as mem_limit under deploy.resources"
    ),
    "duplicate-published-port.yml": (
        "duplicate-published-port.yml:4:13: services.web.ports: published port 8080/tcp is "
        "already used by service 'admin'"
    ),
    "undefined-network.yml": (
        "undefined-network.yml:4:26: services.web.networks.backend: undefined network "
        "\"backend\"; define it under the top-level 'networks' key"
    ),
    "bad-yaml.yml": (
        "bad-yaml.yml:5:3: invalid YAML: expected ',' or ']', but got '<scalar>' while "
        "parsing a flow sequence that starts at line 4, column 14"
    ),
    "forbidden-option.yml": (
        "forbidden-option.yml:5:5: services.web.mem_limit: unsupported option: Set resource "
        "limits using deploy.resources"
    ),
    "global-with-replicas.yml": (
        "global-with-replicas.yml:6:7: services.agent.deploy.replicas: replicas can only be "
        "used with replicated or replicated-job mode"
    ),
}


def test_every_invalid_file_has_an_expected_message() -> None:
    names = {p.name for p in INVALID.glob("*.yml")} - {"several-errors.yml"}
    assert names == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_file_fails_with_exact_message(in_invalid: Path, name: str) -> None:
    with pytest.raises(StackError) as caught:
        load_stack([Path(name)], stack_name="app", environ={})

    assert str(caught.value) == EXPECTED[name]
    assert not isinstance(caught.value, StackErrors)


def test_error_fields_locate_the_problem(in_invalid: Path) -> None:
    with pytest.raises(StackError) as caught:
        load_stack([Path("wrong-type.yml")], stack_name="app", environ={})

    error = caught.value
    assert (error.file, error.line, error.column) == ("wrong-type.yml", 6, 7)
    assert error.path == "services.web.deploy.replicas"
    assert error.message == "expected an integer, found 'three'"


def test_all_problems_in_a_file_are_reported_together(in_invalid: Path) -> None:
    with pytest.raises(StackErrors) as caught:
        load_stack([Path("several-errors.yml")], stack_name="app", environ={})

    assert str(caught.value).splitlines() == [
        "several-errors.yml:4:13: services.web.ports[0]: invalid container port 'http' in "
        "port 'http'",
        "several-errors.yml:5:15: services.web.volumes[0]: the target 'relative/path' must be "
        "an absolute path",
        "several-errors.yml:7:7: services.web.healthcheck.test: expected a string, or a list "
        "starting with 'CMD', 'CMD-SHELL' or 'NONE', found 'curl'",
        "several-errors.yml:8:7: services.web.healthcheck.interval: expected a duration like "
        "'10s' or '1m30s', found 5",
        "several-errors.yml:10:7: services.web.deploy.mode: expected one of 'replicated', "
        "'global', 'replicated-job', 'global-job', found 'globl'; did you mean 'global'?",
        "several-errors.yml:12:18: services.web.deploy.resources.limits.memory: expected a "
        "size like '512M' or '1g', found 'lots'",
        "several-errors.yml:14:23: services.web.deploy.placement.constraints[0]: expected a "
        "constraint like 'node.role==manager' or 'node.labels.zone!=east', found "
        "'node.role = manager'",
        "several-errors.yml:17:7: services.worker.deploy.replicas: expected an integer >= 0, "
        "found -1",
    ]
    assert len(caught.value.errors) == 8
    assert caught.value.errors[0].path == "services.web.ports[0]"


def test_errors_of_several_files_are_reported_together(in_invalid: Path) -> None:
    with pytest.raises(StackErrors) as caught:
        load_stack([Path("wrong-type.yml"), Path("unknown-key.yml")], stack_name="app", environ={})

    assert [e.file for e in caught.value.errors] == ["wrong-type.yml", "unknown-key.yml"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "my stack",
            "invalid stack name 'my stack': use letters, digits, '-' and '_', "
            "starting and ending with a letter or digit",
        ),
        (
            "demo.v2",
            "invalid stack name 'demo.v2': use letters, digits, '-' and '_', "
            "starting and ending with a letter or digit",
        ),
        (
            "-demo",
            "invalid stack name '-demo': use letters, digits, '-' and '_', "
            "starting and ending with a letter or digit",
        ),
        (
            "",
            "invalid stack name '': use letters, digits, '-' and '_', starting and ending "
            "with a letter or digit",
        ),
        ("s" * 62, f"invalid stack name '{'s' * 62}': use at most 61 characters"),
    ],
)
def test_bad_stack_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(StackError) as caught:
        validate_stack_name(name)
    assert str(caught.value) == message

    with pytest.raises(StackError):
        load_stack_text("services: {web: {image: x}}", stack_name=name)


@pytest.mark.parametrize("name", ["demo", "Demo_2", "edge-fleet-7", "a"])
def test_good_stack_names_are_accepted(name: str) -> None:
    validate_stack_name(name)


def test_a_missing_stack_file_is_an_error(in_invalid: Path) -> None:
    with pytest.raises(StackError) as caught:
        load_stack([Path("nowhere.yml")], stack_name="app", environ={})
    assert str(caught.value) == "nowhere.yml: cannot read the stack file: No such file or directory"
