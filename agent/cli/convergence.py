"""Docker's convergence progress for `service create|update|scale|rollback` without --detach.

:func:`assess` is pure: from the service (as `service-inspect` returns it) and its tasks (as
`service-ps` returns them) it says how far the service is, whether it has converged, and
whether it cannot converge (and why). :func:`follow` polls and prints.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from agent.model.stamps import parse_stamp

__all__ = ["Progress", "assess", "follow"]

_STAGES = ["new", "pending", "assigned", "accepted", "preparing", "starting", "running"]
_BAR = 50
_GIVE_UP_FAILURES = 3  # failed tasks in one slot during the wait


@dataclass(slots=True)
class Progress:
    lines: list[str] = field(default_factory=list)
    running: int = 0
    desired: int = 0
    converged: bool = False
    error: str = ""


def _bar(state: str) -> str:
    if state not in _STAGES:
        return ""
    done = int(_BAR * (_STAGES.index(state) + 1) / len(_STAGES))
    return "[" + "=" * (done - 1) + ">" + " " * (_BAR - done) + "]"


def assess(
    service: dict[str, Any],
    tasks: list[dict[str, Any]],
    *,
    since: float,
    failures: dict[str, set[str]],
    expect: str = "",
) -> Progress:
    """``expect`` is "update" or "rollback" when the command started one, else "".
    ``failures`` (slot -> failed task ids seen since the command started) is kept by the
    caller between calls."""
    p = Progress()
    spec = service.get("spec") or {}
    mode = spec.get("mode") or {}
    kind = mode.get("kind", "replicated")
    status = service.get("update_status") or {}
    state = str(status.get("state", ""))
    live = [t for t in tasks if t["desired_state"] == "running"]
    global_mode = kind in ("global", "global-job")
    goal = "complete" if kind.endswith("job") else "running"

    by_slot: dict[str, dict[str, Any]] = {}
    for t in live:
        by_slot.setdefault(_slot(t), t)  # service-ps lists the newest task of a slot first
    p.desired = len(by_slot) if global_mode else int(mode.get("replicas", 1))
    p.running = sum(1 for t in by_slot.values() if t["state"] == goal)
    total = max(p.desired, len(by_slot))
    noun = "tasks" if total != 1 else "task"
    p.lines.append(f"overall progress: {p.running} out of {p.desired} {noun}")
    for i, (_, t) in enumerate(sorted(by_slot.items(), key=lambda kv: _order(kv[0]))):
        label = t["node"][:12] if global_mode else f"{i + 1}/{total}"
        st = t["state"]
        why = (t["error"] or t["message"]) if st in ("failed", "rejected", "pending") else ""
        p.lines.append(f"{label}: {st:<9} {why or _bar(st)}".rstrip())

    for t in tasks:
        if t["state"] in ("failed", "rejected") and parse_stamp(str(t["updated"])) >= since:
            failures.setdefault(_slot(t), set()).add(t["id"])
    if state in ("paused", "rollback_paused"):
        p.error = str(status.get("message") or "update paused")
        return p
    for slot, failed in sorted(failures.items()):
        if len(failed) >= _GIVE_UP_FAILURES:
            last = next((t for t in tasks if t["id"] in failed and t["error"]), None)
            why = last["error"] if last else "tasks keep failing"
            p.error = f"{len(failed)} tasks of slot {slot} failed: {why}"
            return p
    stuck = [t for t in live if t["state"] == "pending" and "no suitable node" in t["message"]]
    if stuck and time.time() - since > 5:
        p.error = stuck[0]["message"]
        return p
    settled = {"update": ("completed",), "rollback": ("rollback_completed",)}.get(
        expect, ("", "completed", "rollback_completed", "paused", "rollback_paused")
    )
    settled_now = (
        p.running >= p.desired
        and len(by_slot) <= p.desired
        and all(t["state"] == goal for t in by_slot.values())
    )
    if expect == "update" and state.startswith("rollback"):
        p.lines.insert(0, f"rollback: {status.get('message', 'update rolled back')}")
        if state == "rollback_completed" and settled_now:
            p.error = f"rollback: {status.get('reason') or 'update rolled back'}"
        return p
    p.converged = (
        state in settled
        and (bool(by_slot) or not global_mode)  # a global service's tasks are not made yet
        and p.running >= p.desired
        and len(by_slot) <= p.desired
        and all(t["state"] == goal for t in by_slot.values())
    )
    return p


def _slot(t: dict[str, Any]) -> str:
    return str(t["slot"]) if t.get("slot") else str(t.get("node_id", ""))


def _order(slot: str) -> tuple[int, str]:
    return (int(slot), "") if slot.isdigit() else (0, slot)


def follow(
    fetch: Callable[[], tuple[dict[str, Any], list[dict[str, Any]]]],
    *,
    expect: str = "",
    out: TextIO = sys.stdout,
    poll: float = 0.1,
    timeout: float = 600.0,
) -> int:
    """Print progress until the service converges (0) or cannot (1, with the reason)."""
    since = time.time() - 1.0
    failures: dict[str, set[str]] = {}
    shown: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        service, tasks = fetch()
        p = assess(service, tasks, since=since, failures=failures, expect=expect)
        if p.lines != shown:
            for line in p.lines:
                if line not in shown or line.startswith("overall"):
                    print(line, file=out)
            shown = p.lines
            out.flush()
        if p.error:
            print(f"Error: {p.error}", file=out)
            return 1
        if p.converged:
            print("verify: Service converged", file=out)
            return 0
        if time.monotonic() > deadline:
            print("Error: the service did not converge in time", file=out)
            return 1
        time.sleep(poll)
