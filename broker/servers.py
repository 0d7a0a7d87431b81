"""Which broker server a session tries next, and how long it waits first.

A clustered broker has several servers; every node knows their addresses. A session starts
at the server picked by a stable hash of its client id (so the nodes spread over the
servers) and, when a connection fails or drops, moves on to the next one. The jittered
exponential backoff is applied per full round: a dead server costs a short pause at most
before the next one is tried, and only a round in which every server failed waits for the
backoff (which then doubles, up to its maximum). A connection that comes up starts a fresh
round; one that stayed up for the backoff's maximum also brings the backoff back to its
minimum (a server that drops every connection at once still backs off).

Pure: no sockets, no clock; the randomness comes in as an ``random.Random``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass

from broker.errors import BrokerError

__all__ = ["Address", "AddressError", "Rotation", "parse_address", "start_index"]


class AddressError(BrokerError, ValueError):
    """A broker address that is not HOST:PORT."""


@dataclass(frozen=True, slots=True, order=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """ "host:port" or "[v6]:port" (as node.json keeps them)."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise AddressError(f"bad broker address {text!r}: expected HOST:PORT")
    if any(ch.isspace() or ch in "/[]" for ch in host):
        raise AddressError(f"bad broker address {text!r}: {host!r} is not a host name")
    return Address(host, int(port))


def start_index(client_id: str, count: int) -> int:
    """Where in a list of `count` servers the client `client_id` starts: the same on every
    start of that client, spread evenly over the clients."""
    digest = hashlib.sha256(client_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


class Rotation:
    """The server to try (:attr:`current`) and the pause before each attempt."""

    def __init__(
        self,
        addresses: Iterable[Address],
        client_id: str,
        *,
        backoff_min: float,
        backoff_max: float,
        rng: random.Random,
    ) -> None:
        self.client_id = client_id
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.rng = rng
        self._addresses: tuple[Address, ...] = ()
        self._index = 0
        self._failed = 0  # attempts failed in this round
        self._delay = backoff_min
        self.replace(addresses)

    @property
    def addresses(self) -> tuple[Address, ...]:
        return self._addresses

    @property
    def current(self) -> Address:
        return self._addresses[self._index]

    def replace(self, addresses: Iterable[Address]) -> None:
        """Use a new list from the next attempt on; the server in use stays current when it
        is still listed, otherwise the client starts where its hash puts it."""
        new = tuple(dict.fromkeys(addresses))
        if not new:
            raise AddressError("a session needs at least one broker address")
        if new == self._addresses:
            return
        old = self._addresses[self._index] if self._addresses else None
        self._addresses = new
        self._index = new.index(old) if old in new else start_index(self.client_id, len(new))
        self._failed = 0

    def connected(self) -> None:
        """The current server took the connection: the next failure starts a fresh round."""
        self._failed = 0

    def failed(self, up_for: float | None = None) -> float:
        """The current server refused a connection, or dropped one that was up for `up_for`
        seconds: move on to the next server and return the seconds to wait before trying it."""
        if up_for is not None and up_for >= self.backoff_max:
            self._delay = self.backoff_min
        self._index = (self._index + 1) % len(self._addresses)
        self._failed += 1
        if self._failed < len(self._addresses):
            # another server is likely up: try it almost at once (a little jitter spreads the
            # clients of a dead server over time)
            return self.backoff_min * 0.25 * self.rng.random()
        self._failed = 0
        wait = self._delay * (0.5 + self.rng.random())
        self._delay = min(self._delay * 2, self.backoff_max)
        return wait
