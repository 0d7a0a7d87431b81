"""Each command line imports only the parser of its own command; nothing else changes."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from agent.cli.main import GROUPS, build_parser, command_of


def _listing(parser: argparse.ArgumentParser) -> list[tuple[str, str | None]]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(c.dest, c.help) for c in sub._choices_actions]


def test_a_command_line_lists_every_command_as_the_whole_parser_does() -> None:
    whole = _listing(build_parser())
    for argv in (["service", "ls"], ["--data-dir", "d", "node", "ls"], ["info"], ["cert", "ls"]):
        assert _listing(build_parser(argv)) == whole


def test_the_groups_name_every_command_their_modules_register() -> None:
    named = [name for _, names in GROUPS for name, _ in names]
    listed = [name for name, _ in _listing(build_parser())]
    assert listed[: len(named)] == named


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["service", "ls"], "service"),
        (["--data-dir", "x", "stack", "ls"], "stack"),
        (["--data-dir=x", "info"], "info"),
        (["-v"], None),
        (["--", "node"], "node"),
    ],
)
def test_command_of_finds_the_command_word(argv: list[str], word: str | None) -> None:
    assert command_of(argv) == word


def test_create_flags_parse_as_before_when_added_on_demand() -> None:
    a = build_parser(["service", "create"]).parse_args(
        ["service", "create", "--replicas", "3", "--name", "web", "img", "sleep", "1"]
    )
    assert (a.replicas, a.name, a.image, a.args) == ("3", "web", "img", ["sleep", "1"])
    assert a.fn.__name__ == "cmd_service_create"


def _modules_after(argv: list[str]) -> set[str]:
    code = (
        "import contextlib, sys; from agent.cli.main import build_parser\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(sys.stderr):\n"
        f"    build_parser({argv!r}).parse_known_args({argv!r})\n"
        "print(' '.join(sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("argv", [["--version"], ["--help"], [], ["servce", "ls"]])
def test_a_line_without_a_known_command_loads_no_command_group(argv: list[str]) -> None:
    loaded = _modules_after(argv)
    groups = {f"agent.cli.{module}" for module, _ in GROUPS}
    assert not groups & loaded and "aiohttp" not in loaded, sorted(groups & loaded)


def test_scaling_a_service_does_not_load_the_service_spec_or_the_stack_parser() -> None:
    loaded = _modules_after(["service", "scale", "--detach", "web=2"])
    assert "agent.cli.services" in loaded
    assert not {"agent.model.spec", "stacks.fields", "agent.cli.template"} & loaded
    assert not {m for m in loaded if m.startswith(("agent.cli.swarm", "agent.cli.stacks"))}


def test_creating_a_service_loads_the_create_flags() -> None:
    loaded = _modules_after(["service", "create", "img"])
    assert {"agent.cli.createflags", "agent.model.spec"} <= loaded


def test_the_daemon_loads_no_command_groups_nor_the_crypto_they_use() -> None:
    loaded = _modules_after(["daemon"])
    assert not {m for m in loaded if m.startswith(("agent.cli.dashboard", "agent.dashboard"))}
    assert "cryptography" not in loaded
