"""Template errors read as Go's, say where and why, and reach the user as one line."""

from __future__ import annotations

from typing import Any

import pytest

from agent.cli import services
from agent.cli.gofmt import sprintf, table
from agent.cli.main import main
from agent.cli.template import Template
from agent.model.errors import ShoalError

ROW = {"Name": "web", "Args": ["a", "b"], "N": 3, "Labels": {"tier": "front"}}


def _error(fmt: str, row: Any = ROW) -> str:
    with pytest.raises(ShoalError) as err:
        Template(fmt).execute(row)
    return str(err.value)


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("{{.Name", "template: :1: unclosed action"),
        ("a\n{{.Name", "template: :2: unclosed action"),
        ("{{nope .Name}}", 'template: :1: function "nope" not defined'),
        ("{{if .Name}}yes", "template: :1: unexpected EOF"),
        ("{{range .Args}}{{.}}", "template: :1: unexpected EOF"),
        ("{{if .N}}{{else}}{{else}}{{end}}", "template: :1: expected end; found {{else}}"),
        ("{{.Name}}{{end}}", "template: :1: unexpected {{end}}"),
        ("{{else}}", "template: :1: unexpected {{else}}"),
        ("{{$x}}", 'template: :1: undefined variable "$x"'),
        ("{{$x = 1}}", 'template: :1: undefined variable "$x"'),
        ("{{if .N}}{{$x := 1}}{{end}}{{$x}}", 'template: :1: undefined variable "$x"'),
        ("{{break}}", "template: :1: {{break}} outside {{range}}"),
        ("{{if $a, $b := .N}}{{end}}", "template: :1: too many declarations in if"),
        ("{{(index .Args 0}}", "template: :1: unclosed left paren"),
        ("{{nil}}", "template: :1: nil is not a command"),
        ("{{/* note }}", "template: :1: unclosed comment"),
        ('{{template "x"}}', "template: :1: {{template}} is not supported"),
        ("{{.Name .N}}", "template: :1: can't give argument to non-function .Name"),
        (
            "{{upper .Name .N}}",
            'template: :1:2: executing "" at <upper>: wrong number of args for upper: want 1 got 2',
        ),
        (
            "{{.Name | join}}",
            'template: :1:10: executing "" at <join>: wrong number of args for join: want 2 got 1',
        ),
        (
            "{{printf}}",
            'template: :1:2: executing "" at <printf>: wrong number of args for printf: '
            "want at least 1 got 0",
        ),
    ],
)
def test_a_malformed_template_is_refused_before_it_runs(fmt: str, message: str) -> None:
    with pytest.raises(ShoalError) as err:
        Template(fmt)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("{{.Foo}}", 'template: :1:2: executing "" at <.Foo>: map has no entry for key "Foo"'),
        (
            "{{.Name.First}}",
            'template: :1:2: executing "" at <.Name.First>: can\'t evaluate field First in '
            "type string",
        ),
        (
            "ab {{index .Args 5}}",
            'template: :1:5: executing "" at <index .Args 5>: error calling index: '
            "index out of range: 5",
        ),
        (
            "{{index .Labels 1}}",
            'template: :1:2: executing "" at <index .Labels 1>: error calling index: '
            "value has type int; should be string",
        ),
        (
            "{{len .N}}",
            'template: :1:2: executing "" at <len .N>: error calling len: len of type int',
        ),
        (
            "{{upper .N}}",
            'template: :1:2: executing "" at <upper .N>: wrong type for value; expected string; '
            "got int",
        ),
        (
            "{{eq .Name 1}}",
            'template: :1:2: executing "" at <eq .Name 1>: error calling eq: incompatible types '
            "for comparison",
        ),
        (
            "{{eq .N}}",
            'template: :1:2: executing "" at <eq .N>: error calling eq: missing argument for '
            "comparison",
        ),
        (
            "{{lt .Args .N}}",
            'template: :1:2: executing "" at <lt .Args .N>: error calling lt: invalid type for '
            "comparison",
        ),
        (
            "{{range .Name}}{{end}}",
            'template: :1:8: executing "" at <.Name>: range can\'t iterate over web',
        ),
        (
            "{{truncate .Name .Name}}",
            'template: :1:2: executing "" at <truncate .Name .Name>: wrong type for value; '
            "expected int; got string",
        ),
        (
            "x\n  {{.Labels.tier.Deep}}",
            'template: :2:4: executing "" at <.Labels.tier.Deep>: can\'t evaluate field Deep in '
            "type string",
        ),
    ],
)
def test_a_template_failing_on_its_data_names_the_place_and_the_reason(
    fmt: str, message: str
) -> None:
    assert _error(fmt) == message


def test_missing_keys_follow_the_chosen_go_option() -> None:
    row = {"Labels": {}}
    assert Template("{{.Labels.Region}}", missingkey="default").execute(row) == "<no value>"
    with pytest.raises(ShoalError, match='map has no entry for key "region"'):
        Template("{{.Labels.region}}", missingkey="error").execute(row)
    assert Template("{{.Labels.region}}").execute(row) == "<no value>"
    with pytest.raises(ShoalError, match='map has no entry for key "Region"'):
        Template("{{.Labels.Region}}").execute(row)


def test_and_or_stop_at_the_deciding_argument() -> None:
    assert Template("{{or .Name (index .Args 9)}}").execute(ROW) == "web"
    assert Template('{{and "" (index .Args 9)}}').execute(ROW) == ""


def test_a_table_header_keeps_the_column_name_through_header_functions() -> None:
    fmt = r"table {{upper .Name}}\t{{json .Labels}}\t{{join .Args " + '","' + r"}}\t{{pad .N 1 1}}"
    template = Template(fmt, headers={"n": "COUNT"})
    assert template.header() == "NAME\tLABELS\tARGS\t COUNT "


def test_a_table_header_runs_range_and_if_bodies_once_on_the_column_name() -> None:
    template = Template(r"table {{range .Args}}{{.}}{{end}}\t{{if .Labels}}{{.Labels}}{{end}}")
    assert template.header() == "ARGS\tLABELS"


def test_variables_declared_in_a_range_end_with_each_iteration() -> None:
    out = Template("{{range .Args}}{{$x := .}}{{$x}}{{end}}|{{$.Name}}").execute(ROW)
    assert out == "ab|web"


def test_format_is_trimmed_of_spaces_and_table_needs_no_space_after_it() -> None:
    template = Template(r"  tablex{{.Name}}  ".strip(" ").replace("tablex", "table"))
    assert template.table and template.render_all([ROW]) == "NAME\nweb"
    assert Template(" {{.Name}} ").execute(ROW) == "{{.Name}}".replace("{{.Name}}", "web")


def test_tab_writer_columns_end_where_a_line_has_fewer_cells() -> None:
    lines = [["a", "b", "c"], ["long-cell-here", "d"], ["e"], ["f", "g"]]
    assert table(lines) == ("a                b         c\nlong-cell-here   d\ne\nf         g")


def test_printf_flags_and_verbs_print_as_go() -> None:
    assert sprintf("%5d|%-5d|%+d|%x|%X|%#x|%o|%b", 42, 42, 42, 255, 255, 255, 8, 5) == (
        "   42|42   |+42|ff|FF|0xff|10|101"
    )
    assert sprintf(
        "%e|%g|%g|%.3g|%t|%c|%5.1s|", 1234.5678, 1e6, 0.5, 1234.5678, True, 65, "abc"
    ) == ("1.234568e+03|1e+06|0.5|1.23e+03|true|A|    a|")
    assert sprintf("%d%%|%!|%z", 1, 2) == "1%|%!!(int=2)|%!z(MISSING)"
    assert sprintf("50%", 1) == "50%!(NOVERB)%!(EXTRA int=1)"


def test_a_bad_format_on_the_command_line_is_one_error_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    row = {"id": "abc123", "name": "web", "mode": "replicated", "replicas": "1/1"}
    monkeypatch.setattr(services, "_call", lambda data, method, params=None: [dict(row)])
    assert main(["service", "ls", "--format", "{{range .Name}}{{end}}"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        'Error: template: :1:8: executing "" at <.Name>: range can\'t iterate over web\n'
    )
    assert main(["service", "ls", "--format", "{{if .Name}}{{.Name | upper}}{{end}}"]) == 0
    assert capsys.readouterr().out == "WEB\n"


def test_a_variable_declared_in_an_if_body_is_undefined_in_its_else_branch() -> None:
    assert _error("{{if .Empty}}{{$y := 1}}{{else}}{{$y}}{{end}}", {"Empty": ""}) == (
        'template: :1:34: executing "" at <$y>: undefined variable: $y'
    )


def test_a_table_header_failing_keeps_what_it_printed_and_the_rows_still_print() -> None:
    template = Template(r"table {{.Name}}\t{{if eq .N 3}}three{{end}}")
    assert template.render_all([ROW]) == "NAME\nweb       three"


def test_title_treats_ascii_punctuation_and_spaces_as_word_breaks_as_go_does() -> None:
    out = Template('{{title "ab-cd_ef é\u2013gh\u00a0ij"}}').execute({})
    assert out == "Ab-Cd_ef É\u2013gh\u00a0Ij"
