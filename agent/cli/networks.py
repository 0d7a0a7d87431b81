"""`shoal network create|ls|inspect|rm`, as in Docker (overlay networks only)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from agent import control
from agent.cli.flagvalues import parse_labels
from agent.cli.output import for_each, format_inspect, inspect_json, render
from agent.cli.services import filter_flag
from agent.paths import DataDir

__all__ = ["register"]

_COLUMNS = [
    ("NETWORK ID", "short_id"),
    ("NAME", "name"),
    ("DRIVER", "driver"),
    ("SCOPE", "scope"),
    ("SUBNET", "subnet"),
]


def cmd_network_create(a: argparse.Namespace, data: DataDir) -> int:
    labels = parse_labels(a.label)
    args = {
        "name": a.name,
        "driver": a.driver,
        "subnet": a.subnet or "",
        "attachable": a.attachable,
        "ingress": a.ingress,
        "labels": labels,
    }
    print(control.call(data.socket, "network-create", args)["id"])
    return 0


def cmd_network_ls(a: argparse.Namespace, data: DataDir) -> int:
    rows: list[dict[str, Any]] = control.call(
        data.socket, "network-ls", {"filters": a.filter or []}
    )
    for r in rows:
        r["short_id"] = r["id"][:12]
    print(render(rows, _COLUMNS, a.format, quiet_key="id", quiet=a.quiet))
    return 0


def cmd_network_inspect(a: argparse.Namespace, data: DataDir) -> int:
    objs = [control.call(data.socket, "network-inspect", {"ref": r}) for r in a.refs]
    print(format_inspect(objs, a.format) if a.format else inspect_json(objs))
    return 0


def cmd_network_rm(a: argparse.Namespace, data: DataDir) -> int:
    def rm(ref: str) -> None:
        control.call(data.socket, "network-rm", {"ref": ref})
        print(ref)

    return for_each(a.refs, rm)


def register(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    group = sub.add_parser("network", help="manage networks").add_subparsers(
        dest="sub", metavar="COMMAND", required=True
    )
    sp = cmd(group, "create", cmd_network_create, "create an overlay network")
    sp.add_argument("-d", "--driver", default="overlay", help="overlay (the only driver)")
    sp.add_argument("--subnet", help="e.g. 10.10.0.0/24 (default: the next free /24 of 10/8)")
    sp.add_argument("--attachable", action="store_true", help="standalone containers may join")
    sp.add_argument(
        "--ingress",
        action="store_true",
        help="the routing mesh's network, replacing the default (10.254.0.0/16); only while no"
        " service publishes a port in ingress mode",
    )
    sp.add_argument("--label", action="append", metavar="KEY=VALUE")
    sp.add_argument("name", metavar="NETWORK")
    sp = cmd(group, "ls", cmd_network_ls, "list networks")
    sp.add_argument("--format", help="table (default), json, or a Go-style template")
    sp.add_argument("-q", "--quiet", action="store_true", help="only display ids")
    filter_flag(sp, "driver, id, label, name, scope, type")
    sp = cmd(group, "inspect", cmd_network_inspect, "show networks in detail")
    sp.add_argument("-f", "--format", help="Go-style template")
    sp.add_argument("refs", nargs="+", metavar="NETWORK")
    sp = cmd(group, "rm", cmd_network_rm, "remove networks (refused while a service uses one)")
    sp.add_argument("refs", nargs="+", metavar="NETWORK")
