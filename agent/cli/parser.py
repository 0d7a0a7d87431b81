"""The argument parser every shoal command is built with: Docker's errors, no abbreviations.

A flag is taken only when spelled in full (``--rep`` is not ``--replicas``). What is wrong
with a command line is said as Docker's CLI says it, on stderr, followed by the command's
usage and where to read more::

    unknown flag: --foo

    Usage:  shoal service create [OPTIONS] IMAGE [COMMAND] [ARG...]

    Run 'shoal service create --help' for more information

Flag errors exit 125, as Docker's do; an unknown command or missing arguments exit 1.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

__all__ = ["FLAG_ERROR", "ShoalParser"]

FLAG_ERROR = 125  # Docker's exit code for a command line it cannot parse
USAGE_ERROR = 1

_UNRECOGNIZED = "unrecognized arguments: "
_CHOICE = re.compile(r"argument (?P<what>[^:]+): invalid choice: '(?P<word>[^']*)'")
_NEEDS_VALUE = re.compile(r"argument (?P<flag>[^:/ ]+)(?:/\S+)?: expected (?:one|\d+) argument")
_BAD_VALUE = re.compile(r"argument (?P<flag>[^:/ ]+)(?:/\S+)?: (?P<why>.*)")
_REQUIRED = "the following arguments are required: "


class ShoalParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._deferred: list[Callable[[argparse.ArgumentParser], None]] = []

    def defer(self, add: Callable[[argparse.ArgumentParser], None]) -> None:
        """Add this command's flags with ``add`` only when the command is parsed: a command
        with many flags (``service create``) costs the other commands nothing."""
        self._deferred.append(add)

    def _add_deferred(self) -> None:
        while self._deferred:
            self._deferred.pop(0)(self)

    def format_help(self) -> str:
        self._add_deferred()
        return super().format_help()

    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._add_deferred()
        ns, extras = super().parse_known_args(args, namespace)
        if extras and self._is_command():
            # said by the command itself, with its own usage, not by `shoal` at the top
            self.error(_UNRECOGNIZED + " ".join(extras))
        return ns, extras

    def _is_command(self) -> bool:
        """A command that runs (``service create``), not a group of them (``service``)."""
        return self.get_default("fn") is not None and not self._subparsers

    def error(self, message: str) -> NoReturn:
        line, code, run = self._docker_message(message)
        if line is None:
            self.print_help(sys.stdout)
            sys.exit(0)
        tail = f"\n\nUsage:  {self.usage_line()}" if run else ""
        more = "Run" if code == FLAG_ERROR or "requires" not in line else "See"
        sys.stderr.write(f"{line}{tail}\n\n{more} '{self.prog} --help' for more information\n")
        sys.exit(code)

    def _docker_message(self, message: str) -> tuple[str | None, int, bool]:
        """Docker's line for argparse's ``message``, the exit code, and whether usage follows."""
        if message.startswith(_UNRECOGNIZED):
            words = message[len(_UNRECOGNIZED) :].split()
            flag = next((w for w in words if w.startswith("-") and w != "-"), None)
            if flag is None:
                if not any(not a.option_strings and a.dest != "help" for a in self._actions):
                    return f'"{self.prog}" accepts no arguments.', USAGE_ERROR, True
                return f'"{self.prog}" takes no argument {words[0]!r}', USAGE_ERROR, True
            if not flag.startswith("--") and len(flag) > 1:
                return f"unknown shorthand flag: {flag[1]!r} in {flag}", FLAG_ERROR, True
            return f"unknown flag: {flag.split('=', 1)[0]}", FLAG_ERROR, True
        if found := _CHOICE.match(message):
            if found["what"].startswith("-"):
                return _invalid_value(found["what"], message), FLAG_ERROR, True
            return f"shoal: unknown command: {self.prog} {found['word']}", USAGE_ERROR, False
        if message.startswith(_REQUIRED):
            missing = message[len(_REQUIRED) :].split(", ")
            if missing == ["COMMAND"]:
                return None, 0, False  # a group without its command: its help, as Docker does
            flags = [m for m in missing if m.startswith("-")]
            if flags:
                return f"required flag(s) {', '.join(flags)} not set", FLAG_ERROR, True
            n = len(missing)
            return (
                f"shoal: '{self.prog}' requires at least {n} argument{'s' * (n > 1)}",
                USAGE_ERROR,
                True,
            )
        if found := _NEEDS_VALUE.match(message):
            return f"flag needs an argument: {found['flag']}", FLAG_ERROR, True
        if found := _BAD_VALUE.match(message):
            return _invalid_value(found["flag"], found["why"]), FLAG_ERROR, True
        return message, FLAG_ERROR, True

    def usage_line(self) -> str:
        """``shoal service create [OPTIONS] IMAGE [COMMAND] [ARG...]``: Docker's usage form."""
        words = [self.prog]
        if self._subparsers is not None:
            words.append("COMMAND")
            return " ".join(words)
        if any(a.option_strings for a in self._actions if a.dest != "help"):
            words.append("[OPTIONS]")
        for action in self._actions:
            if action.option_strings or action.dest == "help":
                continue
            name = action.metavar or action.dest.upper()
            if isinstance(name, tuple):
                name = " ".join(name)
            if action.nargs in ("?",):
                words.append(f"[{name}]")
            elif action.nargs == argparse.REMAINDER:
                words.append("[COMMAND] [ARG...]")
            elif action.nargs == "*":
                words.append(f"[{name}...]")
            elif action.nargs == "+":
                words.append(f"{name} [{name}...]")
            else:
                words.append(str(name))
        return " ".join(words)


def _invalid_value(flag: str, why: str) -> str:
    value = re.search(r"'([^']*)'\s*(?:\(|$)", why)
    shown = value[1] if value else ""
    return f'invalid argument "{shown}" for "{flag}" flag: {why}'
