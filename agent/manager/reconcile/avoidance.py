"""Which nodes to avoid for a service: where its tasks were recently rejected or kept failing.

As in Swarm, a node where tasks of a service keep failing becomes a last resort for that
service; the counts are per service version (an update starts afresh) and per node, over a
window that ends at the time the caller gives (nothing here reads a clock).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from agent.manager.store.objects import Task
from agent.model import TaskState

__all__ = [
    "AVOID_AFTER",
    "AVOID_WINDOW",
    "History",
    "avoidance",
    "counted",
    "is_avoided",
    "recent_endings",
    "window",
]

# How many tasks of one service version that ended so on a node, within AVOID_WINDOW seconds,
# make the scheduler avoid that node for the service. A rejection is the node saying it cannot
# run this spec at all (no overlay networks, no iptables, an image its driver cannot run), a
# lasting reason: one is enough. A failure may be the program's own fault, so it takes Swarm's
# five.
AVOID_AFTER = {TaskState.REJECTED: 1, TaskState.FAILED: 5}
AVOID_WINDOW = 300.0


History = dict[tuple[str, int], dict[str, Counter[TaskState]]]  # (service, version) -> node


def recent_endings(tasks: Sequence[Task], now: float | None) -> History:
    """Per service version and node, its tasks that ended rejected or failed in the window."""
    history: History = {}
    if now is None:
        return history
    for task in tasks:
        status = task.status
        if status is None or status.state not in AVOID_AFTER or not task.node_id:
            continue
        if status.timestamp < now - AVOID_WINDOW:  # one a little ahead (a node's clock) counts
            continue
        nodes = history.setdefault((task.service_id, task.spec_version), {})
        nodes.setdefault(task.node_id, Counter())[status.state] += 1
    return history


def is_avoided(counts: Counter[TaskState]) -> bool:
    return any(counts[state] >= limit for state, limit in AVOID_AFTER.items())


def window() -> str:
    minutes, seconds = divmod(int(AVOID_WINDOW), 60)
    return f"{minutes}m" if not seconds else f"{int(AVOID_WINDOW)}s"


def counted(counts: Counter[TaskState]) -> str:
    parts = [f"{n} {state.value}" for state in AVOID_AFTER if (n := counts[state])]
    total = sum(counts[state] for state in AVOID_AFTER)
    tasks = "1 task" if total == 1 else f"{total} tasks"
    if len(parts) == 1:
        return f"{tasks} of this service {parts[0].split(' ', 1)[1]} there"
    return f"{tasks} of this service ended there ({', '.join(parts)})"


def avoidance(avoided: Mapping[str, tuple[str, Counter[TaskState]]]) -> str:
    """``avoided node w1: 2 tasks of this service rejected there in the last 5m``."""
    return "; ".join(
        f"avoided node {name}: {counted(counts)} in the last {window()}"
        for name, counts in avoided.values()
    )
