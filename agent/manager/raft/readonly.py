"""Read-index requests waiting for a quorum of heartbeat acknowledgements (leader side).

A linearizable read with context `ctx` arrives at the leader; the leader records its commit
index, sends a heartbeat round carrying `ctx`, and once a quorum has acknowledged that round
the read (and every read queued before it) is answered with the recorded index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ReadOnly", "ReadRequest"]


@dataclass(slots=True)
class ReadRequest:
    index: int
    ctx: bytes
    frm: str
    acks: set[str] = field(default_factory=set)


class ReadOnly:
    __slots__ = ("_pending", "_queue")

    def __init__(self) -> None:
        self._pending: dict[bytes, ReadRequest] = {}
        self._queue: list[bytes] = []

    def __len__(self) -> int:
        return len(self._queue)

    def last_pending_ctx(self) -> bytes:
        return self._queue[-1] if self._queue else b""

    def add_request(self, index: int, ctx: bytes, frm: str) -> bool:
        """Queue a read; False if a read with the same context is already pending."""
        if ctx in self._pending:
            return False
        self._pending[ctx] = ReadRequest(index, ctx, frm)
        self._queue.append(ctx)
        return True

    def recv_ack(self, frm: str, ctx: bytes) -> set[str] | None:
        """Record `frm`'s acknowledgement of the round for `ctx`; the acks so far, or None."""
        req = self._pending.get(ctx)
        if req is None:
            return None
        req.acks.add(frm)
        return req.acks

    def advance(self, ctx: bytes) -> list[ReadRequest]:
        """Pop and return every request up to and including the one for `ctx`."""
        if ctx not in self._pending:
            return []
        n = self._queue.index(ctx) + 1
        done = [self._pending.pop(c) for c in self._queue[:n]]
        del self._queue[:n]
        return done
