"""`shoal node ls|inspect|ps|update|promote|demote|rm`, as in Docker."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from agent import control
from agent.cli.flagvalues import parse_labels
from agent.cli.output import for_each, format_inspect, inspect_json, render
from agent.cli.pretty import node_pretty
from agent.cli.services import (
    TASK_COLUMNS,
    TASK_FIELDS,
    TASK_FILTERS,
    filter_flag,
    listing_flags,
    task_rows,
)
from agent.paths import DataDir

__all__ = ["register"]


def cmd_node_ls(a: argparse.Namespace, data: DataDir) -> int:
    nodes = control.call(data.socket, "node-ls", {"filters": a.filter or []})
    for n in nodes:
        n["id_mark"] = n["id"] + (" *" if n["self"] else "")
        n["status_text"] = n["status"].capitalize()
        n["availability_text"] = n["availability"].capitalize()
    columns = [
        ("ID", "id_mark"),
        ("HOSTNAME", "hostname"),
        ("STATUS", "status_text"),
        ("AVAILABILITY", "availability_text"),
        ("MANAGER STATUS", "manager_status"),
        ("ENGINE VERSION", "engine_version"),
    ]
    if a.format == "json":
        for n in nodes:
            for key in ("id_mark", "status_text", "availability_text"):
                del n[key]
    shown = {"Status": "status_text", "Availability": "availability_text"}
    print(render(nodes, columns, a.format, quiet_key="id", quiet=a.quiet, fields=shown))
    return 0


def cmd_node_rm(a: argparse.Namespace, data: DataDir) -> int:
    def rm(ref: str) -> None:
        print(control.call(data.socket, "node-rm", {"node": ref, "force": a.force}))

    return for_each(a.nodes, rm)


def cmd_node_promote(a: argparse.Namespace, data: DataDir) -> int:
    for ref in a.nodes:
        print(control.call(data.socket, "node-promote", {"node": ref}))
    return 0


def cmd_node_demote(a: argparse.Namespace, data: DataDir) -> int:
    for ref in a.nodes:
        print(control.call(data.socket, "node-demote", {"node": ref}))
    return 0


def cmd_node_inspect(a: argparse.Namespace, data: DataDir) -> int:
    objs = [control.call(data.socket, "node-inspect", {"node": ref}) for ref in a.nodes]
    if a.pretty:
        print("\n\n".join(node_pretty(o) for o in objs))
        return 0
    print(format_inspect(objs, a.format) if a.format else inspect_json(objs))
    return 0


def cmd_node_ps(a: argparse.Namespace, data: DataDir) -> int:
    out: list[dict[str, Any]] = []
    for ref in a.nodes or ["self"]:
        if ref == "self":
            ref = control.call(data.socket, "info")["node_id"]
        args = {"node": ref, "filters": a.filter or []}
        out += task_rows(control.call(data.socket, "node-ps", args), no_trunc=a.no_trunc)
    print(render(out, TASK_COLUMNS, a.format, quiet_key="id", quiet=a.quiet, fields=TASK_FIELDS))
    return 0


def cmd_node_update(a: argparse.Namespace, data: DataDir) -> int:
    add = parse_labels(a.label_add, "--label-add")
    args = {
        "node": a.node,
        "availability": a.availability,
        "label_add": add,
        "label_rm": list(a.label_rm or []),
    }
    control.call(data.socket, "node-update", args)
    print(a.node)
    return 0


def register(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    node = sub.add_parser("node", help="manage swarm nodes").add_subparsers(
        dest="sub", metavar="COMMAND", required=True
    )
    sp = cmd(node, "ls", cmd_node_ls, "list nodes")
    sp.add_argument("--format", help="table (default), json, or a Go-style template")
    sp.add_argument("--quiet", "-q", action="store_true", help="only display ids")
    filter_flag(sp, "id, label (engine), node.label, membership, name, role")
    sp = cmd(node, "promote", cmd_node_promote, "promote nodes to managers")
    sp.add_argument("nodes", nargs="+", metavar="NODE")
    sp = cmd(node, "demote", cmd_node_demote, "demote managers to workers")
    sp.add_argument("nodes", nargs="+", metavar="NODE")
    sp = cmd(node, "rm", cmd_node_rm, "remove nodes; their certificates are revoked")
    sp.add_argument("--force", "-f", action="store_true")
    sp.add_argument("nodes", nargs="+", metavar="NODE")
    sp = cmd(node, "inspect", cmd_node_inspect, "show nodes in detail")
    sp.add_argument("-f", "--format", help="Go-style template")
    sp.add_argument("--pretty", action="store_true", help="human-readable")
    sp.add_argument("nodes", nargs="+", metavar="NODE")
    sp = cmd(node, "ps", cmd_node_ps, "list the tasks of nodes (default: this one)")
    listing_flags(sp)
    filter_flag(sp, TASK_FILTERS)
    sp.add_argument("--no-trunc", action="store_true")
    sp.add_argument("nodes", nargs="*", metavar="NODE")
    sp = cmd(node, "update", cmd_node_update, "update a node's availability or labels")
    sp.add_argument("--availability", choices=["active", "pause", "drain"])
    sp.add_argument("--label-add", action="append", metavar="KEY=VAL")
    sp.add_argument("--label-rm", action="append", metavar="KEY")
    sp.add_argument("node", metavar="NODE")
