"""Backend choice for a published port: smooth weighted round robin with backends marked down.

Selection is smooth weighted round robin (nginx's algorithm): with equal weights it is plain
round robin, with weights it interleaves rather than bursts. A backend whose connect fails is
marked down for ``down_for`` seconds and tried only after every backend that is up, so a client
is refused only when no backend at all accepts it. A pure core: no sockets; time comes from a
clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agent.net.errors import MeshError

__all__ = ["Backend", "Balancer", "Clock", "is_port"]

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Backend:
    """One address that receives a published port's traffic: a healthy, running task."""

    host: str
    port: int
    weight: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise MeshError(f"backend host must be a non-empty string, got {self.host!r}")
        if not is_port(self.port):
            raise MeshError(f"backend port must be 1-65535, got {self.port!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) or self.weight < 1:
            raise MeshError(f"backend weight must be a positive integer, got {self.weight!r}")

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


def is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


class Balancer:
    """Smooth weighted round robin over a replaceable set, trying backends marked down last.

    A pure core: no sockets; time comes from ``clock``.
    """

    def __init__(self, *, down_for: float = 2.0, clock: Clock = time.monotonic) -> None:
        self.down_for = down_for
        self._clock = clock
        self._backends: list[Backend] = []
        self._members: dict[tuple[str, int], Backend] = {}
        self._current: dict[tuple[str, int], int] = {}
        self._down_until: dict[tuple[str, int], float] = {}

    @property
    def backends(self) -> tuple[Backend, ...]:
        return tuple(self._backends)

    def __bool__(self) -> bool:
        return bool(self._backends)

    def __contains__(self, backend: object) -> bool:
        return isinstance(backend, Backend) and backend.address in self._members

    def set(self, backends: Iterable[Backend]) -> set[tuple[str, int]]:
        """Replace the set (a backend listed twice gets both weights); return removed addresses."""
        merged: dict[tuple[str, int], Backend] = {}
        for b in backends:
            seen = merged.get(b.address)
            merged[b.address] = (
                b if seen is None else Backend(b.host, b.port, seen.weight + b.weight)
            )
        removed = set(self._members) - set(merged)
        self._members = merged
        self._backends = list(merged.values())
        self._current = {a: self._current.get(a, 0) for a in merged}
        self._down_until = {a: t for a, t in self._down_until.items() if a in merged}
        return removed

    def is_down(self, backend: Backend) -> bool:
        until = self._down_until.get(backend.address)
        return until is not None and until > self._clock()

    def mark_down(self, backend: Backend) -> bool:
        """Keep ``backend`` out of first choice for ``down_for`` seconds; True if it was up."""
        if backend.address not in self._members:
            return False
        was_up = not self.is_down(backend)
        self._down_until[backend.address] = self._clock() + self.down_for
        return was_up

    def order(self) -> list[Backend]:
        """Backends to try for one new connection, in order: the next pick first."""
        now = self._clock()
        up: list[Backend] = []
        down: list[Backend] = []
        for b in self._backends:
            until = self._down_until.get(b.address)
            (down if until is not None and until > now else up).append(b)
        pool = up or down
        if not pool:
            return []
        best = pool[0]
        best_weight = None
        total = 0
        current = self._current
        for b in pool:
            w = current[b.address] + b.weight
            current[b.address] = w
            total += b.weight
            if best_weight is None or w > best_weight:
                best, best_weight = b, w
        current[best.address] -= total
        i = pool.index(best)
        return pool[i:] + pool[:i] + (down if up else [])
