"""`shoal secret|config create|ls|inspect|rm`, as in Docker."""

from __future__ import annotations

import argparse
import base64
import sys
import time
from collections.abc import Callable
from typing import Any

from agent import control
from agent.cli.flagvalues import parse_labels
from agent.cli.output import for_each, format_inspect, human_duration, inspect_json, render
from agent.cli.services import filter_flag
from agent.model.errors import ShoalError
from agent.model.stamps import parse_stamp
from agent.paths import DataDir

__all__ = ["register"]

_MAX = 500 * 1024
_COLUMNS = {
    "secret": [
        ("ID", "short_id"),
        ("NAME", "name"),
        ("DRIVER", "driver"),
        ("CREATED", "created_at"),
        ("UPDATED", "updated_at"),
    ],
    "config": [
        ("ID", "short_id"),
        ("NAME", "name"),
        ("CREATED", "created_at"),
        ("UPDATED", "updated_at"),
    ],
}


def ago(stamp: str, now: float) -> str:
    """A store stamp as Docker's listings show it: "2 minutes ago"."""
    if not stamp:
        return ""
    return f"{human_duration(now - parse_stamp(stamp, now))} ago"


def object_rows(rows: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    for r in rows:
        r["short_id"] = r["id"][:25]
        r.setdefault("driver", "")
        r["created_at"] = ago(str(r.get("created") or ""), now)
        r["updated_at"] = ago(str(r.get("updated") or ""), now)
    return rows


def _read(source: str) -> bytes:
    if source == "-":
        data = sys.stdin.buffer.read(_MAX + 1)
    else:
        try:
            with open(source, "rb") as f:
                data = f.read(_MAX + 1)
        except OSError as exc:
            raise ShoalError(f"cannot read {source}: {exc.strerror}") from None
    if len(data) > _MAX:
        raise ShoalError(f"{source} is larger than 500 KB, the most a secret or config may hold")
    return data


def _commands(kind: str) -> dict[str, Callable[[argparse.Namespace, DataDir], int]]:
    def create(a: argparse.Namespace, data: DataDir) -> int:
        payload = _read(a.file)
        args = {
            "name": a.name,
            "data": base64.b64encode(payload).decode(),
            "labels": parse_labels(a.label),
        }
        print(control.call(data.socket, f"{kind}-create", args)["id"])
        return 0

    def ls(a: argparse.Namespace, data: DataDir) -> int:
        args = {"filters": a.filter or []}
        rows = object_rows(control.call(data.socket, f"{kind}-ls", args), time.time())
        print(render(rows, _COLUMNS[kind], a.format, quiet_key="id", quiet=a.quiet))
        return 0

    def inspect(a: argparse.Namespace, data: DataDir) -> int:
        objs = [control.call(data.socket, f"{kind}-inspect", {"ref": r}) for r in a.refs]
        if a.pretty:
            for o in objs:
                spec = o["Spec"]
                print(f"ID:              {o['ID']}\nName:            {spec['Name']}")
                if spec["Labels"]:
                    labels = sorted(spec["Labels"].items())
                    print("Labels:\n" + "\n".join(f" - {k}={v}" for k, v in labels))
                print(f"Created at:      {o['CreatedAt']}\nUpdated at:      {o['UpdatedAt']}")
                if kind == "config":
                    print("Data:\n" + base64.b64decode(spec["Data"]).decode("utf-8", "replace"))
            return 0
        print(format_inspect(objs, a.format) if a.format else inspect_json(objs))
        return 0

    def rm(a: argparse.Namespace, data: DataDir) -> int:
        def rm_one(ref: str) -> None:
            control.call(data.socket, f"{kind}-rm", {"ref": ref})
            print(ref)

        return for_each(a.refs, rm_one)

    return {"create": create, "ls": ls, "inspect": inspect, "rm": rm}


def register(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    for kind in ("secret", "config"):
        fns = _commands(kind)
        group = sub.add_parser(kind, help=f"manage {kind}s").add_subparsers(
            dest="sub", metavar="COMMAND", required=True
        )
        sp = cmd(group, "create", fns["create"], f"create a {kind} from a file or stdin (-)")
        sp.add_argument("-l", "--label", action="append", metavar="KEY=VALUE")
        sp.add_argument("name", metavar=kind.upper())
        sp.add_argument("file", metavar="FILE|-")
        sp = cmd(group, "ls", fns["ls"], f"list {kind}s")
        sp.add_argument("--format", help="table (default), json, or a Go-style template")
        sp.add_argument("-q", "--quiet", action="store_true", help="only display ids")
        filter_flag(sp, "id, label, name")
        sp = cmd(group, "inspect", fns["inspect"], f"show {kind}s in detail")
        sp.add_argument("-f", "--format", help="Go-style template")
        sp.add_argument("--pretty", action="store_true", help="human-readable")
        sp.add_argument("refs", nargs="+", metavar=kind.upper())
        sp = cmd(group, "rm", fns["rm"], f"remove {kind}s (refused while a service uses one)")
        sp.add_argument("refs", nargs="+", metavar=kind.upper())
