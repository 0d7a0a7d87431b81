"""The command line fails as Docker's does: unknown flags, prefixes, missing values and
arguments, unknown commands, each with Docker's words, the command's usage and exit code."""

from __future__ import annotations

import pytest

from agent.cli.main import main


def _fails(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (
            ("service", "create", "--foo", "busybox"),
            "shoal service create [OPTIONS] IMAGE [COMMAND] [ARG...]",
        ),
        (("service", "ls", "--foo"), "shoal service ls [OPTIONS]"),
        (("node", "ls", "--foo"), "shoal node ls [OPTIONS]"),
        (("stack", "deploy", "--foo", "app"), "shoal stack deploy [OPTIONS] STACK"),
    ],
)
def test_an_unknown_flag_is_said_with_the_commands_own_usage(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], usage: str
) -> None:
    code, err = _fails(capsys, *argv)
    command = " ".join(argv[:2])
    assert code == 125
    assert err == (
        f"unknown flag: --foo\n\nUsage:  {usage}\n\n"
        f"Run 'shoal {command} --help' for more information\n"
    )


def test_a_prefix_of_a_real_flag_is_not_taken_for_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _fails(capsys, "service", "create", "--rep", "3", "busybox")
    assert code == 125 and err.startswith("unknown flag: --rep\n")


def test_an_unknown_short_flag_says_which_letter(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _fails(capsys, "service", "ls", "-z")
    assert code == 125 and err.startswith("unknown shorthand flag: 'z' in -z\n")


def test_a_flag_without_its_value_says_it_needs_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _fails(capsys, "service", "create", "--replicas")
    assert code == 125
    assert err.startswith("flag needs an argument: --replicas\n\nUsage:  shoal service create ")


def test_an_unknown_command_is_said_as_docker_says_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _fails(capsys, "foo")
    assert code == 1
    assert err == "shoal: unknown command: shoal foo\n\nRun 'shoal --help' for more information\n"
    code, err = _fails(capsys, "service", "foo")
    assert code == 1 and err.startswith("shoal: unknown command: shoal service foo\n")


def test_a_missing_argument_says_how_many_the_command_needs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = _fails(capsys, "service", "scale")
    assert code == 1
    assert err == (
        "shoal: 'shoal service scale' requires at least 1 argument\n\n"
        "Usage:  shoal service scale [OPTIONS] SERVICE=REPLICAS [SERVICE=REPLICAS...]\n\n"
        "See 'shoal service scale --help' for more information\n"
    )


def test_an_argument_to_a_command_that_takes_none_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = _fails(capsys, "node", "ls", "extra")
    assert code == 1 and err.startswith('"shoal node ls" accepts no arguments.\n')


def test_a_group_without_its_command_shows_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["service"])
    assert exit_info.value.code == 0
    assert "create" in capsys.readouterr().out
