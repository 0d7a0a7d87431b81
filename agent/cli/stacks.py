"""`shoal stack deploy|ls|services|ps|rm|config`, as in Docker."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import control
from agent.cli.convergence import follow
from agent.cli.flagvalues import parse_bool
from agent.cli.output import for_each, print_error, render
from agent.cli.services import (
    TASK_COLUMNS,
    TASK_FIELDS,
    TASK_FILTERS,
    fetch,
    filter_flag,
    task_rows,
)
from agent.model.errors import ShoalError
from agent.paths import DataDir

__all__ = ["register"]


def _load(a: argparse.Namespace) -> Any:
    from stacks import StackError, load_stack

    if not a.compose_file:
        raise ShoalError("please specify a Compose file (with --compose-file)")
    try:
        stack = load_stack(
            [Path(f) for f in a.compose_file], stack_name=a.stack, environ=os.environ
        )
    except StackError as exc:
        for err in exc.errors:
            print_error(err)
        raise ShoalError(
            f"the stack file is not valid ({len(exc.errors)} problem(s) above)"
        ) from None
    except OSError as exc:
        raise ShoalError(f"cannot read {exc.filename}: {exc.strerror}") from None
    for w in stack.warnings:
        where = f"{w.file}:{w.line}: " if w.file and w.line else ""
        print(f"{where}{w.message}", file=sys.stderr)
    return stack


def cmd_stack_deploy(a: argparse.Namespace, data: DataDir) -> int:
    from stacks.wire import encode_stack

    stack = _load(a)
    result = control.call(
        data.socket, "stack-deploy", {"stack": encode_stack(stack), "prune": a.prune}
    )
    for line in result["actions"]:
        print(line)
    if not result["actions"]:
        print(f"Stack {a.stack} is up to date.")
    if a.detach:
        return 0
    failed = 0
    for name in result["services"]:
        print(f"{name}")
        failed += follow(fetch(data, name)) != 0
    return 1 if failed else 0


def cmd_stack_ls(a: argparse.Namespace, data: DataDir) -> int:
    rows = control.call(data.socket, "stack-ls", {})
    print(render(rows, [("NAME", "name"), ("SERVICES", "services")], a.format))
    return 0


def cmd_stack_services(a: argparse.Namespace, data: DataDir) -> int:
    from agent.cli.services import SERVICE_COLUMNS

    rows = control.call(
        data.socket, "stack-services", {"stack": a.stack, "filters": a.filter or []}
    )
    for r in rows:
        r["short_id"] = r["id"][:12]
    print(render(rows, SERVICE_COLUMNS, a.format, quiet_key="id", quiet=a.quiet))
    return 0


def cmd_stack_ps(a: argparse.Namespace, data: DataDir) -> int:
    tasks = control.call(data.socket, "stack-ps", {"stack": a.stack, "filters": a.filter or []})
    tasks.sort(key=lambda t: t["service"])  # stable: each service's tasks keep their order
    rows = task_rows(tasks, no_trunc=a.no_trunc)
    print(render(rows, TASK_COLUMNS, a.format, quiet_key="id", quiet=a.quiet, fields=TASK_FIELDS))
    return 0


def cmd_stack_rm(a: argparse.Namespace, data: DataDir) -> int:
    def rm(name: str) -> None:
        for line in control.call(data.socket, "stack-rm", {"stack": name})["actions"]:
            print(line)

    return for_each(a.stacks, rm)


def cmd_stack_config(a: argparse.Namespace, data: DataDir) -> int:
    import yaml

    from stacks import StackError
    from stacks.convert import merged_config

    try:
        doc = merged_config([Path(f) for f in a.compose_file], environ=os.environ)
    except StackError as exc:
        for err in exc.errors:
            print_error(err)
        return 1
    print(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False).rstrip())
    return 0


def register(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    stack = sub.add_parser("stack", help="manage stacks").add_subparsers(
        dest="sub", metavar="COMMAND", required=True
    )
    sp = cmd(stack, "deploy", cmd_stack_deploy, "deploy a new stack or update an existing one")
    sp.add_argument("-c", "--compose-file", action="append", metavar="FILE", help="Compose file")
    sp.add_argument("--prune", action="store_true", help="remove services not in the file")
    sp.add_argument(
        "-d",
        "--detach",
        type=parse_bool,
        nargs="?",
        const=True,
        default=True,
        metavar="true|false",
        help="return at once (default true); --detach=false follows until converged",
    )
    sp.add_argument("stack", metavar="STACK")
    sp = cmd(stack, "ls", cmd_stack_ls, "list stacks")
    sp.add_argument("--format", help="table (default), json, or a Go-style template")
    sp = cmd(stack, "services", cmd_stack_services, "list the services of a stack")
    sp.add_argument("--format", help="table (default), json, or a Go-style template")
    sp.add_argument("-q", "--quiet", action="store_true")
    filter_flag(sp, "id, label, mode, name")
    sp.add_argument("stack", metavar="STACK")
    sp = cmd(stack, "ps", cmd_stack_ps, "list the tasks of a stack")
    sp.add_argument("--format", help="table (default), json, or a Go-style template")
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.add_argument("--no-trunc", action="store_true")
    filter_flag(sp, TASK_FILTERS)
    sp.add_argument("stack", metavar="STACK")
    sp = cmd(stack, "rm", cmd_stack_rm, "remove stacks")
    sp.add_argument("stacks", nargs="+", metavar="STACK")
    sp = cmd(stack, "config", cmd_stack_config, "print the merged, interpolated Compose file")
    sp.add_argument("-c", "--compose-file", action="append", required=True, metavar="FILE")
