"""`shoal events`: the cluster's events as `docker events` prints them, followed until Ctrl-C
or, with ``--until``, until then."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from agent import control
from agent.cli.template import Template
from agent.model.events import ClusterEvent, EventFilter
from agent.model.logs import parse_since
from agent.paths import DataDir

__all__ = ["register"]


def register(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    sp = cmd(sub, "events", cmd_events, "get real time events from the swarm")
    sp.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="FILTER",
        help="filter output based on conditions provided (type, event, service, node,"
        " secret, config, network, scope)",
    )
    sp.add_argument("--format", help="format output using a custom template or json")
    sp.add_argument("--since", help="show all events created since timestamp or duration")
    sp.add_argument("--until", help="stream events until this timestamp or duration")


def request(a: argparse.Namespace, now_ns: int) -> dict[str, Any]:
    """What the daemon is asked: the filters and the range in ns since the epoch."""
    return {
        "filters": EventFilter.parse(a.filter).to_wire(),
        "since": None if a.since is None else max(parse_since(a.since, now_ns), 0),
        "until": None if a.until is None else max(parse_since(a.until, now_ns, "--until"), 0),
    }


def renderer(fmt: str | None) -> Callable[[dict[str, Any]], str]:
    """How one event (Docker's JSON shape) prints: Docker's line, JSON, or a template."""
    if fmt is None or not fmt.strip():
        return lambda doc: ClusterEvent.from_dict(doc).line()
    if fmt.strip() == "json":
        return lambda doc: json.dumps(doc, separators=(",", ":"))
    template = Template(fmt)
    return template.execute


def cmd_events(a: argparse.Namespace, data: DataDir) -> int:
    show = renderer(a.format)
    items = control.stream(data.socket, "events", request(a, time.time_ns()))
    try:
        for batch in items:
            text = "".join(show(doc) + "\n" for doc in batch.get("events", []))
            sys.stdout.write(text)
            sys.stdout.flush()
            if batch.get("dropped"):
                print(
                    f"error: {batch['dropped']} events were dropped (this follower was slow)",
                    file=sys.stderr,
                    flush=True,
                )
    except KeyboardInterrupt:  # Ctrl-C is how following ends
        return 0
    finally:
        items.close()
    return 0
