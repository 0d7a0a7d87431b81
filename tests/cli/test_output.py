"""Listings for people and scripts: tables, ids, JSON lines, templates and inspect output."""

from __future__ import annotations

import json

import pytest

from agent.cli.output import format_inspect, inspect_json, render
from agent.model.errors import ShoalError
from agent.model.spec import ContainerSpec, ServiceSpec, TaskSpec

ROWS = [
    {
        "id": "abc",
        "name": "web",
        "current_state": "Running 2 minutes ago",
        "node": None,
        "replicas": 3,
        "labels": {"tier": "front"},
        "spec": {"name": "web", "mode": {"kind": "replicated"}},
    },
    {
        "id": "defghijk",
        "name": "db",
        "current_state": "Pending",
        "node": "edge-7",
        "replicas": 1,
        "labels": {},
        "spec": {"name": "db", "mode": {"kind": "global"}},
    },
]
COLUMNS = [("ID", "id"), ("NAME", "name"), ("CURRENT STATE", "current_state"), ("NODE", "node")]


def test_default_table_pads_columns_by_three_to_at_least_ten_without_trailing_spaces() -> None:
    assert render(ROWS, COLUMNS) == (
        "ID         NAME      CURRENT STATE           NODE\n"
        "abc        web       Running 2 minutes ago\n"
        "defghijk   db        Pending                 edge-7"
    )


def test_format_table_alone_is_the_default_table() -> None:
    assert render(ROWS, COLUMNS, "table") == render(ROWS, COLUMNS)


def test_empty_table_still_has_its_header() -> None:
    assert render([], COLUMNS) == "ID        NAME      CURRENT STATE   NODE"


def test_nested_values_in_a_table_cell_print_like_go() -> None:
    assert render(ROWS[:1], [("LABELS", "labels")]) == "LABELS\nmap[tier:front]"


def test_quiet_prints_only_the_quiet_key_one_per_line() -> None:
    assert render(ROWS, COLUMNS, "json", quiet_key="id", quiet=True) == "abc\ndefghijk"


def test_quiet_without_a_key_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        render(ROWS, COLUMNS, quiet=True)


def test_json_format_prints_one_compact_object_per_row() -> None:
    lines = render(ROWS, COLUMNS, "json").split("\n")
    assert [json.loads(line) for line in lines] == ROWS
    assert lines[0].startswith('{"id":"abc","name":"web",')


def test_json_format_of_no_rows_is_empty() -> None:
    assert render([], COLUMNS, "json") == ""


def test_template_looks_fields_up_by_exact_key_then_snake_case() -> None:
    rows = [{"Name": "exact", "current_state": "Running"}]
    assert render(rows, COLUMNS, "{{.Name}} {{.CurrentState}} {{.current_state}}") == (
        "exact Running Running"
    )


def test_template_runs_once_per_row() -> None:
    assert render(ROWS, COLUMNS, "{{.ID}}: {{.Replicas}}") == "abc: 3\ndefghijk: 1"


def test_template_reads_nested_fields() -> None:
    assert render(ROWS, COLUMNS, "{{.Spec.Name}}/{{.Spec.Mode.Kind}}") == (
        "web/replicated\ndb/global"
    )


def test_template_prints_null_as_empty() -> None:
    assert render(ROWS, COLUMNS, "[{{.Node}}]") == "[]\n[edge-7]"


def test_template_json_of_the_row_and_of_a_field() -> None:
    out = render(ROWS[:1], COLUMNS, "{{json .}}|{{json .Labels}}|{{json .Name}}")
    row, labels, name = out.split("|")
    assert json.loads(row) == ROWS[0]
    assert labels == '{"tier":"front"}'
    assert name == '"web"'


def test_template_upper_lower_and_pipes() -> None:
    out = render(ROWS[:1], COLUMNS, "{{upper .Name}} {{lower .CurrentState}} {{.Name | upper}}")
    assert out == "WEB running 2 minutes ago WEB"


def test_template_join_takes_a_string_argument() -> None:
    rows = [{"names": ["a", "b", "c"]}]
    assert render(rows, [], '{{join .Names ", "}}') == "a, b, c"


def test_template_understands_tab_and_newline_escapes() -> None:
    assert render(ROWS[:1], COLUMNS, r"{{.ID}}\t{{.Name}}\n--") == "abc\tweb\n--"


def test_template_trim_markers_eat_surrounding_spaces() -> None:
    assert render(ROWS[:1], COLUMNS, "a   {{- .Name -}}   b") == "awebb"


def test_table_template_has_a_header_and_aligned_columns() -> None:
    out = render(ROWS, COLUMNS, r"table {{.ID}}\t{{.CurrentState}}\t{{.Replicas}}")
    assert out == (
        "ID         CURRENT STATE           REPLICAS\n"
        "abc        Running 2 minutes ago   3\n"
        "defghijk   Pending                 1"
    )


def test_table_headers_split_camel_case_and_use_the_last_nested_field() -> None:
    out = render([], [], r"table {{.NodeID}}\t{{.DesiredState}}\t{{.Spec.Name}}\t{{json .}}")
    assert out == "NODE ID   DESIRED STATE   NAME"


def test_table_headers_come_from_the_columns_when_a_field_is_one_of_them() -> None:
    columns = [("MANAGER STATUS", "manager_status")]
    out = render([{"manager_status": "Leader"}], columns, "table {{.ManagerStatus}}")
    assert out == "MANAGER STATUS\nLeader"


def test_table_template_with_no_rows_prints_the_header() -> None:
    assert render([], COLUMNS, r"table {{.ID}}\t{{.Name}}") == "ID        NAME"


def test_missing_field_names_the_field() -> None:
    with pytest.raises(ShoalError) as err:
        render(ROWS, COLUMNS, "{{.Foo}}")
    assert str(err.value) == (
        'template: :1:2: executing "" at <.Foo>: map has no entry for key "Foo"'
    )


def test_missing_nested_field_names_the_path() -> None:
    with pytest.raises(ShoalError, match=r'<\.Spec\.Image>: map has no entry for key "Image"'):
        render(ROWS, COLUMNS, "x {{.Spec.Image}}")


def test_field_of_a_scalar_is_an_error() -> None:
    with pytest.raises(ShoalError, match=r"<\.Name\.First>: can't evaluate field First"):
        render(ROWS, COLUMNS, "{{.Name.First}}")


def test_error_position_counts_lines() -> None:
    with pytest.raises(ShoalError, match=r"template: :2:4: .*<\.Bar>"):
        render(ROWS, COLUMNS, r"a\n {{ .Bar }}")


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("{{.Name", "template: :1: unclosed action"),
        ("ok {{.Name}} {{", "template: :1: unclosed action"),
        ("{{}}", "template: :1: missing value for command"),
        ("{{ nope .Name }}", 'template: :1: function "nope" not defined'),
        ("{{ .Name ! }}", "template: :1: unrecognized character in action: U+0021 '!'"),
        ("{{ | upper }}", "template: :1: missing command before |"),
        ('{{ .Name "x" }}', "template: :1: can't give argument to non-function .Name"),
        ("{{ .Name | .ID }}", "template: :1: can't give argument to non-function .ID"),
        (
            "{{ join upper .Names }}",
            'template: :1:8: executing "" at <upper>: wrong number of args for upper: want 1 got 0',
        ),
        ('{{ join .Names "\\q" }}', 'template: :1: malformed string "\\q"'),
    ],
)
def test_malformed_templates_are_refused_before_any_row(fmt: str, message: str) -> None:
    with pytest.raises(ShoalError) as err:
        render([], COLUMNS, fmt)
    assert str(err.value) == message


def test_function_with_wrong_argument_count_is_an_error() -> None:
    with pytest.raises(ShoalError, match="wrong number of args for upper: want 1 got 2"):
        render(ROWS, COLUMNS, "{{upper .Name .ID}}")


def test_inspect_json_is_an_array_indented_by_four() -> None:
    assert inspect_json([{"id": "abc", "spec": {"name": "web"}}]) == (
        '[\n    {\n        "id": "abc",\n        "spec": {\n            "name": "web"\n'
        "        }\n    }\n]"
    )
    assert inspect_json([]) == "[]"


def test_inspect_json_turns_specs_into_dicts_and_bytes_into_base64() -> None:
    spec = ServiceSpec(name="web", task_template=TaskSpec(container=ContainerSpec(image="nginx")))
    [obj] = json.loads(inspect_json([{"spec": spec, "data": b"hi"}]))
    assert obj["spec"] == spec.to_dict()
    assert obj["data"] == "aGk="


def test_format_inspect_applies_the_template_to_each_object() -> None:
    spec = ServiceSpec(name="web", task_template=TaskSpec(container=ContainerSpec(image="nginx")))
    objs = [{"id": "1", "spec": spec}, {"id": "2", "spec": spec}]
    assert format_inspect(
        objs, "{{.ID}} {{.Spec.Name}} {{.Spec.TaskTemplate.Container.Image}}"
    ) == ("1 web nginx\n2 web nginx")


def test_format_inspect_without_a_template_is_inspect_json() -> None:
    objs = [{"id": "1"}]
    assert format_inspect(objs, None) == inspect_json(objs)
    assert format_inspect(objs, "json") == inspect_json(objs)


def test_templates_read_docker_fields_as_the_table_shows_them_while_json_keeps_the_row() -> None:
    rows = [{"id": "n1", "status": "ready", "status_text": "Ready"}]
    columns = [("ID", "id"), ("STATUS", "status_text")]
    shown = {"Status": "status_text"}
    assert render(
        rows, columns, '{{.Status}} {{if eq .Status "Ready"}}up{{end}}', fields=shown
    ) == ("Ready up")
    assert render(rows, columns, "table {{.ID}}\t{{.Status}}", fields=shown).splitlines() == [
        "ID        STATUS",
        "n1        Ready",
    ]
    assert '"status":"ready"' in render(rows, columns, "json", fields=shown)
