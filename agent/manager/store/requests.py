"""The table of recent control requests, kept in the replicated store.

Every control command carries a request id from where it enters the cluster; each run of it
by a leader is an *attempt* with its own id, and every transaction the run writes is tagged
with both (`current_request`). At apply, the first tagged write of a request claims it for its
attempt; a write of any other attempt of the same request is refused on every manager alike,
so a command resent to a new leader is never applied twice. The reply is recorded in the
request's row (with its last write, or in an entry of its own), so a resend gets the first
answer.

The table is part of the store's state (snapshots carry it) and bounded: the oldest rows go
first, at apply, so every manager keeps the same ones.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

__all__ = ["REQUEST_LIMIT", "RequestRecord", "Requests", "current_request"]

REQUEST_LIMIT = 10_000

# (request id, attempt id) of the control command this code runs for, if any
current_request: ContextVar[tuple[str, str] | None] = ContextVar("current_request", default=None)


@dataclass(slots=True)
class RequestRecord:
    attempt: str  # the attempt whose writes were applied
    index: int  # the log index of its first write
    reply: dict[str, Any] | None = None  # {"ok": ..., "result"/"error": ...} once answered


class Requests:
    """Request id -> what became of it, oldest first. Changed only by `Store.apply`."""

    def __init__(self, limit: int = REQUEST_LIMIT) -> None:
        self.limit = limit
        self._rows: dict[str, RequestRecord] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, request_id: str) -> RequestRecord | None:
        return self._rows.get(request_id)

    def admits(self, request: tuple[str, str]) -> bool:
        """Whether a write of this attempt may apply: the request is new, or it is this
        attempt's own."""
        row = self._rows.get(request[0])
        return row is None or row.attempt == request[1]

    def record(self, request: tuple[str, str], index: int, reply: Any) -> None:
        """Note an applied write of `request` (and its reply, when it carries one)."""
        rid, attempt = request
        row = self._rows.get(rid)
        if row is None:
            row = self._rows[rid] = RequestRecord(attempt, index)
            while len(self._rows) > self.limit:
                del self._rows[next(iter(self._rows))]
        if isinstance(reply, dict):
            row.reply = reply

    def to_wire(self) -> list[list[Any]]:
        return [[rid, r.attempt, r.index, r.reply] for rid, r in self._rows.items()]

    @classmethod
    def from_wire(cls, rows: Any, limit: int = REQUEST_LIMIT) -> Requests:
        """Rows as `to_wire` gives them; ValueError when malformed."""
        out = cls(limit)
        if not isinstance(rows, list):
            raise ValueError("the request table is not a list")
        for row in rows:
            if not (isinstance(row, list) and len(row) == 4):
                raise ValueError("malformed request row")
            rid, attempt, index, reply = row
            if not (isinstance(rid, str) and isinstance(attempt, str) and type(index) is int):
                raise ValueError("malformed request row")
            if reply is not None and not isinstance(reply, dict):
                raise ValueError("malformed request reply")
            out._rows[rid] = RequestRecord(attempt, index, reply)
        while len(out._rows) > out.limit:
            del out._rows[next(iter(out._rows))]
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Requests) and self.to_wire() == other.to_wire()

    __hash__ = None  # type: ignore[assignment]
