"""What a node does once it learns the swarm removed it (`shoal node rm`): its certificate is
revoked, which the broker says when it refuses the node. That verdict is definite, unlike a
lost connection (an outage, a partition), which leaves every task running (edge autonomy).

The node stops and removes its tasks (each with its grace period), clears its saved
assignments, removes its overlay network devices, stops trying to reach the broker, and says
so in `shoal info` and its log. It keeps a record of that (``<data dir>/removed.json``): a
daemon that starts again after its removal does the same at once, without the broker, and
stops whatever still ran here (containers outlive the daemon, and so do process tasks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agent.worker.saved import write_atomic

if TYPE_CHECKING:
    from agent.worker.node import NodeAgent

__all__ = ["REMOVED_FILE", "Removal", "load_removal", "remove_tasks", "save_removal"]

log = logging.getLogger("shoal.removal")

REMOVED_FILE = "removed.json"


@dataclass(frozen=True, slots=True)
class Removal:
    """The record of this node's removal from the swarm and of what it did about it."""

    at: str  # ISO 8601, UTC
    reason: str
    stopped: tuple[str, ...] = ()  # the tasks stopped and removed
    left_running: tuple[str, ...] = ()  # tasks that would not stop in time (retried)

    def describe(self) -> str:
        done = f"stopped and removed {_count(self.stopped)}"
        if self.left_running:
            done += (
                f"; {_count(self.left_running)} did not stop in time"
                f" ({', '.join(self.left_running)}) and will be stopped when the node next starts"
            )
        return (
            f"this node was removed from the swarm ({self.reason}) at {self.at}: it {done},"
            " cleared its saved assignments, removed its overlay network devices and no longer"
            " connects to the broker; run `shoal swarm leave` before joining a swarm again"
        )


def _count(tasks: Sequence[str]) -> str:
    return f"{len(tasks)} task" + ("" if len(tasks) == 1 else "s")


def load_removal(path: Path) -> Removal | None:
    """The saved record, or None when there is none (or it cannot be read: it is written
    again by the next removal, which the broker's refusal triggers)."""
    try:
        raw = json.loads(path.read_text())
        return Removal(
            at=str(raw["at"]),
            reason=str(raw["reason"]),
            stopped=tuple(map(str, raw.get("stopped", ()))),
            left_running=tuple(map(str, raw.get("left_running", ()))),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring the unreadable removal record %s: %s", path, exc)
        return None


def save_removal(path: Path, removal: Removal) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(asdict(removal)).encode())


async def remove_tasks(
    agent: NodeAgent, reason: str, before: Removal | None = None, timeout: float = 60.0
) -> Removal:
    """Stop and remove every task of this node (adopted ones too) and clear its saved
    assignments; assignment sets that arrive meanwhile are ignored. The agent must be
    running (its executor adopts what runs here, then stops it). ``before`` is the record of
    an earlier start's removal, whose facts the new record keeps."""
    agent.leaving = True
    started = time.monotonic()
    executor = agent.executor
    held = executor.known()
    await executor.set_assignments([])  # before a starting executor restores the saved set
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(executor.adopted.wait(), timeout)
    held |= executor.known()
    await executor.wait_empty(max(0.0, timeout - (time.monotonic() - started)))
    left = executor.known()
    stopped = held - left
    removal = Removal(
        at=before.at if before else datetime.now(UTC).isoformat(timespec="seconds"),
        reason=before.reason if before else reason,
        stopped=tuple(sorted(stopped | set(before.stopped if before else ()))),
        left_running=tuple(sorted(left)),
    )
    log.warning("%s (in %.1f s)", removal.describe(), time.monotonic() - started)
    return removal
