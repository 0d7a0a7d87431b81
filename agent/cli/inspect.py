"""`shoal inspect`, as `docker inspect`: any node, service, task, network, secret or config by
id, name or id prefix, in Docker's JSON shape."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from agent import control
from agent.cli.output import format_inspect, inspect_json, print_error
from agent.model.errors import ShoalError
from agent.paths import DataDir

__all__ = ["register"]

_TYPES = ("node", "service", "task", "network", "secret", "config")


def cmd_inspect(a: argparse.Namespace, data: DataDir) -> int:
    """What was found is printed (`[]` for nothing, as Docker does), then what was not."""
    found: list[Any] = []
    failed = 0
    for ref in a.refs:
        args = {"ref": ref, **({"type": a.type} if a.type else {})}
        try:
            found.append(control.call(data.socket, "inspect", args))
        except ShoalError as exc:
            print_error(exc)
            failed += 1
    if found or not a.format:
        print(format_inspect(found, a.format) if a.format else inspect_json(found))
    return 1 if failed else 0


def register(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    sp = cmd(sub, "inspect", cmd_inspect, "show any swarm object in detail (Docker's shape)")
    sp.add_argument("-f", "--format", help="Go-style template, e.g. '{{.Spec.Name}}'")
    sp.add_argument("--type", choices=_TYPES, help="only objects of this type")
    sp.add_argument("refs", nargs="+", metavar="NAME|ID")
