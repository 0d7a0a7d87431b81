"""YAML loading keeps every position and resolves anchors, aliases and merge keys."""

from __future__ import annotations

import pytest

from stacks import StackError, load_stack_text
from stacks.loader import parse_yaml


def test_positions_are_those_of_keys_and_items() -> None:
    root = parse_yaml("services:\n  web:\n    ports:\n      - '80'\n", "s.yml")
    web = root.as_map()["services"].as_map()["web"]
    assert (web.line, web.column) == (2, 3)
    port = web.as_map()["ports"].as_list()[0]
    assert (port.line, port.column, port.value) == (4, 9, "80")


def test_merge_keys_let_explicit_keys_win_and_earlier_sources_win() -> None:
    root = parse_yaml(
        "a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  x: 3\n", "s.yml"
    )
    assert root.plain()["c"] == {"x": 3, "y": 1, "z": 2}


def test_yaml_11_sexagesimal_numbers_stay_strings() -> None:
    assert parse_yaml("p: 22:22\nq: 1342\n", "s.yml").plain() == {"p": "22:22", "q": 1342}


def test_numbers_keep_their_text_for_environment_values() -> None:
    spec = load_stack_text(
        "services:\n  w:\n    image: x\n    environment:\n      OCTAL: 010\n      ON: yes\n"
        "      FLOAT: 1.50\n",
        stack_name="app",
    )
    assert spec.services[0].task_template.container.env == ("FLOAT=1.50", "OCTAL=010", "ON=yes")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "s.yml: expected a mapping with a 'services' key, found an empty file"),
        ("- a\n", "s.yml:1:1: expected a mapping at the top level, found a list"),
        ("a: 1\na: 2\n", "s.yml:2:1: invalid YAML: duplicate key 'a' (first on line 1)"),
        ("a: &x [*x]\n", "s.yml:1:4: invalid YAML: an alias refers to a node that contains it"),
        (
            "a: &x {<<: *x}\n",
            "s.yml:1:4: invalid YAML: a merge key refers to a mapping that contains it",
        ),
        (
            "a: {<<: 1}\n",
            "s.yml:1:9: invalid YAML: a merge key '<<' takes a mapping or a list of "
            "mappings (usually an alias like *defaults)",
        ),
        ("a: !secret x\n", "s.yml:1:4: unsupported YAML tag '!secret'"),
        ("a: *nowhere\n", "s.yml:1:4: invalid YAML: found undefined alias 'nowhere'"),
        (
            "a: 1\n---\nb: 2\n",
            "s.yml:2:1: invalid YAML: expected a single document in the "
            "stream but found another document",
        ),
        ("? [a]\n: 1\n", "s.yml:1:3: invalid YAML: expected a plain key, found a list"),
        ("a: [" * 60 + "]" * 60, "s.yml:1:204: the document is nested more than 100 levels deep"),
    ],
)
def test_malformed_yaml_is_located(text: str, message: str) -> None:
    with pytest.raises(StackError) as caught:
        parse_yaml(text, "s.yml")
    assert str(caught.value) == message


def test_alias_bombs_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    with pytest.raises(StackError) as caught:
        parse_yaml("\n".join(lines) + "\n", "bomb.yml")
    assert "the file expands to more than 200000 values" in str(caught.value)


@pytest.mark.parametrize("version", ["'3'", "'3.0'", "3.8", "'3.14'", "3"])
def test_version_3_files_are_accepted(version: str) -> None:
    load_stack_text(f"version: {version}\nservices: {{web: {{image: x}}}}\n", stack_name="a")


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("2", "unsupported Compose file version: 2;"),
        ("'2.1'", "unsupported Compose file version: 2.1;"),
        ("'1'", "unsupported Compose file version: 1;"),
        ("'4.0'", "unsupported Compose file version: 4.0; use version 3.x"),
        ("true", 'expected a string like "3.8", found true'),
    ],
)
def test_other_versions_are_refused(version: str, message: str) -> None:
    with pytest.raises(StackError) as caught:
        load_stack_text(f"version: {version}\nservices: {{web: {{image: x}}}}\n", stack_name="a")
    assert caught.value.path == "version"
    assert caught.value.message.startswith(message)


def test_a_service_past_the_limits_is_refused_with_its_key_path() -> None:
    text = "services:\n  web:\n    image: x\n    deploy:\n      replicas: 1000000000\n"
    with pytest.raises(StackError) as err:
        load_stack_text(text, stack_name="a")
    message = str(err.value)
    assert "services.web" in message and "replicas is 1,000,000,000; at most 10,000" in message
