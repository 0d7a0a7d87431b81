"""Swarm's restart policy as plain functions: should an exited task run again, and when."""

from __future__ import annotations

from collections.abc import Sequence

from agent.model.spec import SECOND, RestartPolicy
from agent.model.tasks import TaskState

__all__ = ["restart_delay", "restarts_left", "should_restart"]


def restarts_left(policy: RestartPolicy, restarts: Sequence[float], now: float) -> int | None:
    """Restarts still allowed (None: unlimited), counting only those inside the window."""
    if not policy.max_attempts:
        return None
    window = policy.window_ns / SECOND
    recent = [t for t in restarts if not window or now - t <= window]
    return max(0, policy.max_attempts - len(recent))


def should_restart(
    policy: RestartPolicy, state: TaskState, restarts: Sequence[float], now: float
) -> bool:
    """``state`` is how the task ended: complete or failed (rejections are never restarted)."""
    if state not in (TaskState.COMPLETE, TaskState.FAILED):
        return False
    if policy.condition == "none":
        return False
    if policy.condition == "on-failure" and state is TaskState.COMPLETE:
        return False
    left = restarts_left(policy, restarts, now)
    return left is None or left > 0


def restart_delay(policy: RestartPolicy) -> float:
    return policy.delay_ns / SECOND
