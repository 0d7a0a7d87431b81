"""A linearizability checker for histories of single-key registers (Wing & Gong, with Lowe's
memoization): a depth-first search over the orders in which operations may take effect,
remembering every (set of linearized operations, register value) already explored.

Operations on different keys are independent (linearizability is local), so a history is
checked one key at a time. An operation whose outcome is unknown (it timed out) may take
effect at any point after its invocation, or never.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Operation", "check_history", "check_register"]

INFINITY = float("inf")


@dataclass(frozen=True)
class Operation:
    """`put` writes `value`; `get` returned `value` (None: the key was never written).

    `ret` is None when the outcome is unknown; an unknown `get` tells nothing and is ignored.
    """

    key: str
    kind: Literal["put", "get"]
    value: str | None
    call: int
    ret: int | None


def check_history(ops: Iterable[Operation], initial: str | None = None) -> list[str]:
    """Keys whose sub-history is not linearizable (sorted); empty when all are."""
    by_key: dict[str, list[Operation]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    return [key for key in sorted(by_key) if not check_register(by_key[key], initial)]


def check_register(ops: Sequence[Operation], initial: str | None = None) -> bool:
    ops = _prune(ops)
    n = len(ops)
    calls = [op.call for op in ops]
    rets = [op.ret if op.ret is not None else INFINITY for op in ops]
    required = 0
    for i, op in enumerate(ops):
        if op.ret is not None:
            required |= 1 << i
    seen: set[tuple[int, str | None]] = set()
    stack: list[tuple[int, str | None]] = [(0, initial)]
    while stack:
        done, value = stack.pop()
        if done & required == required:
            return True
        if (done, value) in seen:
            continue
        seen.add((done, value))
        # The next operation to take effect must have been invoked before every pending
        # operation that has already returned.
        horizon = min((rets[i] for i in range(n) if not done >> i & 1), default=INFINITY)
        for i in range(n):
            if done >> i & 1 or calls[i] > horizon:
                continue
            op = ops[i]
            if op.kind == "put":
                stack.append((done | 1 << i, op.value))
            elif op.value == value:
                stack.append((done | 1 << i, value))
    return False


def _prune(ops: Sequence[Operation]) -> list[Operation]:
    """Drop what cannot matter: unknown gets, and unknown puts whose value nobody read
    (such a put can always be taken to have had no effect)."""
    read = {op.value for op in ops if op.kind == "get" and op.ret is not None}
    kept = [op for op in ops if op.ret is not None or (op.kind == "put" and op.value in read)]
    return sorted(kept, key=lambda op: op.call)
