"""`shoal service logs`: Docker's flags and output, lines of all tasks in time order."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from agent import control
from agent.model.errors import ShoalError
from agent.model.logs import LogLine, format_line, parse_since, task_name
from agent.paths import DataDir

__all__ = ["add_logs_flags", "cmd_service_logs"]


def add_logs_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-f", "--follow", action="store_true", help="follow log output")
    sp.add_argument(
        "--since",
        help="show logs since a timestamp (2026-12-03T09:00:00Z) or a"
        " duration back from now (10m, 1h30m)",
    )
    sp.add_argument("-n", "--tail", help="lines from the end of each task's output (default all)")
    sp.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    sp.add_argument("--raw", action="store_true", help="no task and node prefix")
    sp.add_argument("--no-trunc", action="store_true", help="full task ids")
    sp.add_argument("--no-task-ids", action="store_true", help="no task ids in the prefix")
    sp.add_argument("service", metavar="SERVICE")


def _args(a: argparse.Namespace) -> dict[str, Any]:
    tail = None if a.tail in (None, "all") else a.tail
    if tail is not None and not tail.isdigit():
        raise ShoalError(f'invalid argument "{a.tail}" for "--tail" flag: expected a number or all')
    since = parse_since(a.since, time.time_ns()) if a.since is not None else 0
    return {
        "service": a.service,
        "tail": int(tail) if tail is not None else None,
        "since": max(since, 0),
        "follow": bool(a.follow),
    }


def render_rows(a: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        task = task_name(
            r["service"], r["slot"], r["task_id"], no_trunc=a.no_trunc, with_id=not a.no_task_ids
        )
        line = LogLine(int(r["ns"]), str(r["text"]))
        out.append(format_line(line, task, r["node"], timestamps=a.timestamps, raw=a.raw) + "\n")
    return "".join(out)


def _print(a: argparse.Namespace, batch: dict[str, Any]) -> None:
    sys.stdout.write(render_rows(a, batch.get("lines", [])))
    sys.stdout.flush()
    for error in batch.get("errors", []):
        print(f"error: {error}", file=sys.stderr, flush=True)


def cmd_service_logs(a: argparse.Namespace, data: DataDir) -> int:
    args = _args(a)
    if not a.follow:
        batch = control.call(data.socket, "service-logs", args)
        _print(a, batch)
        errors, tasks = batch.get("errors", []), batch.get("tasks", [])
        return 1 if errors and len(errors) == len(tasks) else 0
    items = control.stream(data.socket, "service-logs", args)
    try:
        for batch in items:
            _print(a, batch)
    except KeyboardInterrupt:  # Ctrl-C is how a follow ends
        return 0
    finally:
        items.close()
    return 0
