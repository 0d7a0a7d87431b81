"""Enrollment requests: their shape, checked before any work, and how many are let through.

The enrollment listener is open to anyone who can reach it, so the leader bounds what a
flood can cost it. :class:`EnrollLimiter` admits an attempt only if a per-client bucket and a
bucket for all clients both have a token (MQTT does not tell the manager a client's address;
the client id is what an attempt names, and the global bucket caps what many ids can do), and
only while few enrollments are in flight. Refusals say when to try again. A request is then
checked by :func:`parse_request` (sizes and types) and its token compared, all before the
expensive part (signing a certificate, a Raft commit), so bad tokens cost microseconds.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from agent.model.errors import ShoalError

__all__ = [
    "MAX_CSR_BYTES",
    "RENEW_LIMITS",
    "EnrollLimiter",
    "EnrollRequest",
    "Limits",
    "RateLimited",
    "TokenBucket",
    "parse_request",
]

MAX_CSR_BYTES = 16 * 1024
_MAX_TOKEN = 256
_MAX_HOSTNAME = 253


class RateLimited(ShoalError):
    """An enrollment attempt refused for now; ``retry_after`` seconds until one would pass."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(slots=True)
class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; time comes from the caller."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0: one is there now)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1


@dataclass(frozen=True, slots=True)
class Limits:
    per_client_rate: float = 0.2  # one attempt every 5 s per client id ...
    per_client_burst: float = 3  # ... after 3 at once
    global_rate: float = 20.0  # attempts per second from all clients together
    global_burst: float = 40
    in_flight: int = 4  # enrollments being signed and committed at once
    clients: int = 4096  # client ids remembered (the least recent are forgotten)


RENEW_LIMITS = Limits(per_client_rate=0.2, per_client_burst=5, global_rate=20, global_burst=40)


class EnrollLimiter:
    """Admission of enrollments (by client id), or of renewals (by node id) with
    ``RENEW_LIMITS`` and ``what="certificate renewal"``."""

    def __init__(
        self,
        clock: Callable[[], float],
        limits: Limits | None = None,
        *,
        what: str = "enrollment",
    ) -> None:
        self.clock = clock
        self.what = what
        self.limits = limits or Limits()
        self.all = TokenBucket(self.limits.global_rate, self.limits.global_burst, stamp=clock())
        self._clients: OrderedDict[str, TokenBucket] = OrderedDict()
        self.in_flight = 0
        self.refused = 0

    def admit(self, client: str) -> None:
        """Take a token for ``client`` or raise :class:`RateLimited` (nothing is taken then)."""
        now, lim = self.clock(), self.limits
        bucket = self._clients.pop(client, None)
        if bucket is None:
            bucket = TokenBucket(lim.per_client_rate, lim.per_client_burst, stamp=now)
        self._clients[client] = bucket
        while len(self._clients) > lim.clients:
            self._clients.popitem(last=False)
        if self.in_flight >= lim.in_flight:
            self._refuse("the managers are busy enrolling other nodes", 1.0)
        mine, everyone = bucket.wait(now), self.all.wait(now)
        if mine:
            self._refuse("too many attempts from this client", mine)
        if everyone:
            self._refuse("too many nodes are trying to join at once", everyone)
        bucket.take(now)
        self.all.take(now)

    def _refuse(self, why: str, wait: float) -> None:
        self.refused += 1
        wait = max(1.0, math.ceil(wait))
        raise RateLimited(f"{self.what} is rate limited: {why}; try again in {wait:g} s", wait)


@dataclass(frozen=True, slots=True)
class EnrollRequest:
    token: str
    csr: bytes
    hostname: str
    role: str | None


def parse_request(body: object) -> EnrollRequest:
    """The request in an ``enroll`` envelope; ShoalError saying what is wrong otherwise."""
    if not isinstance(body, dict):
        raise ShoalError("malformed enrollment request: expected a mapping")
    token, csr = body.get("token"), body.get("csr")
    hostname, role = body.get("hostname", ""), body.get("role")
    if not isinstance(token, str) or not isinstance(csr, bytes):
        raise ShoalError("malformed enrollment request: token and csr are required")
    if len(token) > _MAX_TOKEN:
        raise ShoalError(f"malformed enrollment request: the token is over {_MAX_TOKEN} chars")
    if len(csr) > MAX_CSR_BYTES:
        raise ShoalError(f"malformed enrollment request: the CSR is over {MAX_CSR_BYTES} bytes")
    if not isinstance(hostname, str) or len(hostname) > _MAX_HOSTNAME:
        raise ShoalError("malformed enrollment request: bad hostname")
    if role is not None and role not in ("worker", "manager"):
        raise ShoalError("malformed enrollment request: role must be worker, manager or null")
    return EnrollRequest(token=token, csr=csr, hostname=hostname, role=role)
