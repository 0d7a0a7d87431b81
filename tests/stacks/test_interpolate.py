"""Variable substitution and .env parsing follow Compose's rules."""

from __future__ import annotations

import pytest

from stacks import StackError, TemplateError, parse_dotenv, substitute

ENV = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("plain", "plain"),
        ("$SET", "value"),
        ("${SET}", "value"),
        ("pre-${SET}-post", "pre-value-post"),
        ("$SET$SET", "valuevalue"),
        ("$$SET", "$SET"),
        ("$${SET}", "${SET}"),
        ("${UNSET:-default}", "default"),
        ("${EMPTY:-default}", "default"),
        ("${EMPTY-default}", ""),
        ("${UNSET-default}", "default"),
        ("${SET:+replacement}", "replacement"),
        ("${EMPTY:+replacement}", ""),
        ("${EMPTY+replacement}", "replacement"),
        ("${UNSET+replacement}", ""),
        ("${SET:?message}", "value"),
        ("${EMPTY?message}", ""),
        ("${UNSET:-${SET}}", "value"),
        ("${UNSET:-a${UNSET:-b}c}", "abc"),
        ("${UNSET:-}", ""),
        ("${SET:-a}b}", "valueb}"),
    ],
)
def test_substitution_forms(template: str, expected: str) -> None:
    assert substitute(template, ENV.get) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "${UNSET:?set UNSET please}",
            "required variable UNSET is missing a value: set UNSET please",
        ),
        ("${EMPTY:?}", "required variable EMPTY is missing a value"),
        ("${UNSET?}", "required variable UNSET is missing a value"),
        (
            "echo $1",
            'invalid interpolation format: "echo $1"; you may need to escape any $ with another $',
        ),
        ("${", 'invalid interpolation format: "${"; you may need to escape any $ with another $'),
        (
            "${A B}",
            'invalid interpolation format: "${A B}"; you may need to escape any $ with another $',
        ),
        (
            "cost: 5$",
            'invalid interpolation format: "cost: 5$"; you may need to escape any $ with another $',
        ),
    ],
)
def test_substitution_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        substitute(template, ENV.get)
    assert caught.value.message == message


def test_required_default_is_only_evaluated_when_used() -> None:
    assert substitute("${SET:-${UNSET:?never evaluated}}", ENV.get) == "value"


def test_unset_plain_variables_are_reported() -> None:
    unset: list[str] = []
    assert substitute("a${NOPE}b$ALSO_NOT", ENV.get, unset.append) == "ab"
    assert unset == ["NOPE", "ALSO_NOT"]


def test_dotenv_quoting_rules() -> None:
    text = (
        "# a comment\n"
        "\n"
        "PLAIN=value\n"
        "export EXPORTED=yes\n"
        "SPACED = trimmed value  # comment\n"
        "HASH=a#b\n"
        "SINGLE='no $PLAIN expansion \\n'\n"
        'DOUBLE="$PLAIN and\\ttab \\"quoted\\" \\$PLAIN"\n'
        'MULTI="line one\n'
        'line two"\n'
        "EMPTY=\n"
        "FROM_CALLER\n"
        "MISSING_FROM_CALLER\n"
        "DEFAULTED=${UNSET:-dflt}\n"
    )
    assert parse_dotenv(text, ".env", {"FROM_CALLER": "caller"}) == {
        "PLAIN": "value",
        "EXPORTED": "yes",
        "SPACED": "trimmed value",
        "HASH": "a#b",
        "SINGLE": "no $PLAIN expansion \\n",
        "DOUBLE": 'value and\ttab "quoted" $PLAIN',
        "MULTI": "line one\nline two",
        "EMPTY": "",
        "FROM_CALLER": "caller",
        "DEFAULTED": "dflt",
    }


def test_dotenv_caller_variables_win_in_expansion() -> None:
    assert parse_dotenv("A=file\nB=${A}\n", ".env", {"A": "caller"})["B"] == "caller"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("OK=1\n2BAD=x\n", ".env:2: expected KEY=VALUE, found '2BAD=x'"),
        ('A="never closed\nB=2\n', '.env:1: missing closing " for the value that starts here'),
        ("A='x' trailing\n", ".env:1: unexpected text after the closing ': 'trailing'"),
        ("A=${B:?B is needed}\n", ".env:1: required variable B is missing a value: B is needed"),
    ],
)
def test_dotenv_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(StackError) as caught:
        parse_dotenv(text, ".env", {})
    assert str(caught.value) == message
