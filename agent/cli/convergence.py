"""Docker's convergence progress for `service create|update|scale|rollback` without --detach.

:func:`assess` is pure: from the service (as `service-inspect` returns it, in Docker's
shape) and its tasks (as `service-ps` returns them) it says how far the service is, whether
it has converged, and whether it cannot converge (and why). :func:`follow` polls and prints.
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
    after: list[str] = field(default_factory=list)  # printed once it has converged


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
    kind, replicas = _mode(service)
    status = _update_status(service)
    state = str(status.get("state", ""))
    live = [t for t in tasks if t["desired_state"] == "running"]
    global_mode = kind in ("global", "global-job")
    goal = "complete" if kind.endswith("job") else "running"
    # a global service's nodes, as the managers see them: every ready, active node its
    # placement allows gets a task (None from a manager that does not say)
    eligible = (service.get("Shoal") or {}).get("EligibleNodes") if kind == "global" else None
    if eligible is not None:
        live = [t for t in live if t.get("node_id") in eligible]

    by_slot: dict[str, dict[str, Any]] = {}
    for t in live:
        by_slot.setdefault(_slot(t), t)  # service-ps lists the newest task of a slot first
    if eligible is not None:
        p.desired = len(eligible)
    else:
        p.desired = len(by_slot) if global_mode else replicas
    p.running = sum(1 for t in by_slot.values() if t["state"] == goal)
    rolling_back = expect in ("update", "rollback") and state.startswith("rollback")
    p.lines = _progress_lines(p, by_slot, global_mode, rolling_back)

    p.error = _failure(tasks, live, status, since, failures)
    if p.error:
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
    if expect == "rollback" and state.startswith("rollback"):
        p.lines.insert(0, f"rollback: {MANUAL_ROLLBACK}")
        if state == "rollback_completed":
            p.after = [f"rollback: {status.get('message') or 'rollback completed'}"]
    if eligible is not None and not eligible and time.time() - since > 5:
        p.error = NO_ELIGIBLE
        return p
    p.converged = (
        state in settled
        and (bool(by_slot) or not global_mode)  # a global service's tasks are not made yet
        and settled_now
    )
    return p


MANUAL_ROLLBACK = "manually requested rollback"  # the reason Swarm gives a `service rollback`
NO_ELIGIBLE = (
    "no node can run this global service's tasks now (none is ready, active and allowed by its"
    " placement); each node that becomes so gets one"
)


def _progress_lines(
    p: Progress, by_slot: dict[str, dict[str, Any]], global_mode: bool, rolling_back: bool
) -> list[str]:
    if global_mode and not by_slot:
        return ["overall progress: waiting for new tasks"]  # none is made yet
    total = max(p.desired, len(by_slot))
    noun = "tasks" if total != 1 else "task"
    prefix = "rolling back update: " if rolling_back else ""
    lines = [f"overall progress: {prefix}{p.running} out of {p.desired} {noun}"]
    for i, (_, t) in enumerate(sorted(by_slot.items(), key=lambda kv: _order(kv[0]))):
        label = t["node"][:12] if global_mode else f"{i + 1}/{total}"
        st = t["state"]
        why = (t["error"] or t["message"]) if st in ("failed", "rejected", "pending") else ""
        lines.append(f"{label}: {st:<9} {why or _bar(st)}".rstrip())
    return lines


def _failure(
    tasks: list[dict[str, Any]],
    live: list[dict[str, Any]],
    status: dict[str, Any],
    since: float,
    failures: dict[str, set[str]],
) -> str:
    """Why the service cannot converge ("" while it may): a paused update, a slot whose tasks
    keep failing, a task that fits on no node for more than 5 s."""
    for t in tasks:
        if t["state"] in ("failed", "rejected") and parse_stamp(str(t["updated"])) >= since:
            failures.setdefault(_slot(t), set()).add(t["id"])
    if str(status.get("state", "")) in ("paused", "rollback_paused"):
        return str(status.get("message") or "update paused")
    for slot, failed in sorted(failures.items()):
        if len(failed) >= _GIVE_UP_FAILURES:
            last = next((t for t in tasks if t["id"] in failed and t["error"]), None)
            why = last["error"] if last else "tasks keep failing"
            return f"{len(failed)} tasks of slot {slot} failed: {why}"
    stuck = [t for t in live if t["state"] == "pending" and "no suitable node" in t["message"]]
    if stuck and time.time() - since > 5:
        return str(stuck[0]["message"])
    return ""


def _mode(service: dict[str, Any]) -> tuple[str, int]:
    """The mode's kind and replicas (total completions for a job) from Docker's Spec.Mode."""
    mode = (service.get("Spec") or {}).get("Mode") or {}
    if "Global" in mode:
        return "global", 0
    if "GlobalJob" in mode:
        return "global-job", 0
    if "ReplicatedJob" in mode:
        return "replicated-job", int(mode["ReplicatedJob"].get("TotalCompletions", 1))
    return "replicated", int((mode.get("Replicated") or {}).get("Replicas", 1))


def _update_status(service: dict[str, Any]) -> dict[str, str]:
    """State, message and (when a failed update rolled itself back) reason of the last
    update, from Docker's UpdateStatus and shoal's own UpdateReason."""
    status = service.get("UpdateStatus") or {}
    if not status:
        return {}
    return {
        "state": str(status.get("State", "")),
        "message": str(status.get("Message", "")),
        "reason": str((service.get("Shoal") or {}).get("UpdateReason", "")),
    }


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
            for line in p.after:
                print(line, file=out)
            return 0
        if time.monotonic() > deadline:
            print("Error: the service did not converge in time", file=out)
            return 1
        time.sleep(poll)
