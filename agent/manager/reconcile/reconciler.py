"""The reconciler shell every leader loop runs in: watch the store, collect dirty keys, act.

A loop plugs its pure core into a :class:`Reconciler` with three functions:

- ``start(view)``: the keys dirty when the loop starts (read before the watch opens);
- ``note(event)``: the keys an event of the watched kinds makes dirty (none: the event does
  not matter to this loop);
- ``reconcile(dirty)``: one pass over the keys taken out of the dirty set; False when a write
  failed and the whole pass should run again after ``retry_after`` seconds.

The shell's rules, the same for every loop:

- after each commit (the ``Commit`` that ends a batch of events), it wakes if any key is dirty;
  it also wakes at start when ``start`` marked something;
- once woken it waits ``debounce`` seconds (none when 0) so a burst of commits makes one pass
  (the pass at start too, unless ``first_at_once``: then what ``start`` marked goes at once),
  then takes the dirty set (a key marked during the pass belongs to the next one) and runs
  ``reconcile``;
- a pass that fails puts its keys back and sleeps ``retry_after`` seconds before running
  again; commits during that sleep wait for it;
- :meth:`Reconciler.wake_at` asks for a key to be marked again at a time on the injected
  clock, one timer per key (a later call replaces the earlier one); :meth:`mark` and
  :meth:`wake` let a pass (or something outside the store) queue more work, as a core that
  worked in batches does for its next batch.

Loops whose pass always looks at everything use the one key :data:`EVERYTHING` (see
:func:`everything`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Generic, TypeVar

from agent.manager.store import Commit, Event, Store, View

__all__ = ["EVERYTHING", "Reconciler", "everything"]

K = TypeVar("K", bound=Hashable)

EVERYTHING = "*"  # the one key of a loop whose every pass looks at the whole store

TIMER_SLACK = 0.01  # a timer fires this long after its time, so the pass sees it due


def everything(_: object) -> tuple[str]:
    """``start`` and ``note`` of a loop for which every change matters to the whole pass."""
    return (EVERYTHING,)


class Reconciler(Generic[K]):
    """Owns the wake event, the dirty set, the store watch, the debounce, the retry after a
    failed pass and the per-key timers of one loop."""

    def __init__(
        self,
        store: Store,
        kinds: Sequence[str],
        reconcile: Callable[[set[K]], Awaitable[bool]],
        *,
        start: Callable[[View], Iterable[K]],
        note: Callable[[Event], Iterable[K]],
        clock: Callable[[], float] = time.time,
        debounce: float = 0.0,
        first_at_once: bool = False,
        retry_after: float = 0.5,
    ) -> None:
        self.store = store
        self.kinds = tuple(kinds)
        self.reconcile = reconcile
        self.start = start
        self.note = note
        self.clock = clock
        self.debounce = debounce
        self.first_at_once = first_at_once
        self.retry_after = retry_after
        self.dirty: set[K] = set()
        self._wake = asyncio.Event()
        self._timers: dict[K, asyncio.TimerHandle] = {}

    def mark(self, keys: Iterable[K]) -> None:
        self.dirty.update(keys)

    def wake(self) -> None:
        self._wake.set()

    def wake_at(self, key: K, when: float) -> None:
        """Mark ``key`` dirty and wake at ``when`` (on the clock), replacing its earlier timer."""
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        delay = max(when - self.clock(), 0.0) + TIMER_SLACK

        def fire() -> None:
            self._timers.pop(key, None)
            self.dirty.add(key)
            self._wake.set()

        self._timers[key] = asyncio.get_running_loop().call_later(delay, fire)

    async def run(self) -> None:
        self.mark(self.start(self.store.view()))
        async with self.store.watch(*self.kinds) as q:
            waiter = asyncio.ensure_future(self._events(q))
            settle = bool(self.debounce) and not (self.first_at_once and self.dirty)
            try:
                while True:
                    await self._wake.wait()
                    if settle:
                        await asyncio.sleep(self.debounce)
                    settle = bool(self.debounce)
                    self._wake.clear()
                    dirty, self.dirty = self.dirty, set()
                    if not await self.reconcile(dirty):
                        self.dirty.update(dirty)
                        await asyncio.sleep(self.retry_after)
                        self._wake.set()
            finally:
                waiter.cancel()
                for handle in self._timers.values():
                    handle.cancel()
                self._timers.clear()

    async def _events(self, q: asyncio.Queue[Event | Commit]) -> None:
        if self.dirty:
            self._wake.set()
        while True:
            item = await q.get()
            if isinstance(item, Commit):
                if self.dirty:
                    self._wake.set()
            else:
                self.dirty.update(self.note(item))
