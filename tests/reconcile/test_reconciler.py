"""The reconciler shell on its own: when it wakes, what it hands a pass, debounce, the retry
after a failed pass, per-key timers and work a pass queues for the next one. The store is an
in-memory one whose every proposal commits at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from agent.manager.reconcile.reconciler import EVERYTHING, Reconciler, everything
from agent.manager.store import Event, Secret, Service, Store, View
from tests.store.store_values import service_spec


class _Log:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.index = 1

    async def __call__(self, data: bytes) -> int:
        self.index += 1
        self.store.apply(self.index, data)
        return self.index


def _store() -> Store:
    s = Store()
    s.proposer = _Log(s)
    return s


async def _put(s: Store, *services: str) -> None:
    await s.update(
        lambda tx: [tx.put(Service(id=i, name=i, spec=service_spec(i))) for i in services]
    )


def _service_ids(ev: Event) -> Iterable[str]:
    return (ev.id,) if ev.kind == "service" else ()


class _Passes:
    """Records every pass's dirty keys; a pass fails while ``failing`` is above 0."""

    def __init__(self) -> None:
        self.seen: list[set[str]] = []
        self.failing = 0
        self.then: Callable[[set[str]], None] | None = None
        self.arrived = asyncio.Event()

    async def __call__(self, dirty: set[str]) -> bool:
        self.seen.append(set(dirty))
        self.arrived.set()
        if self.then is not None:
            self.then(dirty)
        if self.failing:
            self.failing -= 1
            return False
        return True

    async def count(self, n: int, timeout: float = 2.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.seen) < n:
                self.arrived.clear()
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def _running(shell: Reconciler[Any]) -> AsyncIterator[Reconciler[Any]]:
    runner = asyncio.ensure_future(shell.run())
    await asyncio.sleep(0)
    try:
        yield shell
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


def _shell(
    s: Store,
    passes: Callable[[set[str]], Awaitable[bool]],
    *,
    start: Callable[[View], Iterable[str]] = lambda view: (),
    **options: Any,
) -> Reconciler[str]:
    return Reconciler(s, ("service",), passes, start=start, note=_service_ids, **options)


async def test_it_wakes_at_start_with_the_keys_start_marked() -> None:
    s = _store()
    await _put(s, "a", "b")
    passes = _Passes()
    start = lambda view: [x.id for x in view.list(Service)]  # noqa: E731
    async with _running(_shell(s, passes, start=start)):
        await passes.count(1)
    assert passes.seen == [{"a", "b"}]


async def test_it_waits_for_a_commit_when_start_marked_nothing() -> None:
    s = _store()
    passes = _Passes()
    async with _running(_shell(s, passes)):
        await asyncio.sleep(0.05)
        assert passes.seen == []
        await _put(s, "a")
        await passes.count(1)
    assert passes.seen == [{"a"}]


async def test_a_commit_of_events_it_does_not_note_wakes_nothing() -> None:
    s = _store()
    passes = _Passes()
    shell: Reconciler[str] = Reconciler(
        s, ("service", "secret"), passes, start=lambda view: (), note=_service_ids
    )
    async with _running(shell):
        await s.update(lambda tx: tx.put(Secret(id="x", name="x")))
        await asyncio.sleep(0.05)
        assert passes.seen == []
        await _put(s, "a")
        await passes.count(1)
    assert passes.seen == [{"a"}]


async def test_a_burst_of_commits_within_the_debounce_makes_one_pass() -> None:
    s = _store()
    passes = _Passes()
    async with _running(_shell(s, passes, debounce=0.1)):
        for name in ("a", "b", "c"):
            await _put(s, name)
        await passes.count(1)
        await asyncio.sleep(0.15)
    assert passes.seen == [{"a", "b", "c"}]


async def test_without_debounce_each_commit_gets_its_pass() -> None:
    s = _store()
    passes = _Passes()
    async with _running(_shell(s, passes)):
        await _put(s, "a")
        await passes.count(1)
        await _put(s, "b")
        await passes.count(2)
    assert passes.seen == [{"a"}, {"b"}]


async def test_a_failed_pass_runs_again_with_its_keys_after_the_retry_delay() -> None:
    s = _store()
    passes = _Passes()
    passes.failing = 1
    async with _running(_shell(s, passes, retry_after=0.2)):
        await _put(s, "a")
        await passes.count(1)
        failed_at = asyncio.get_running_loop().time()
        await _put(s, "b")  # waits for the retry: no pass during the sleep
        await passes.count(2)
        waited = asyncio.get_running_loop().time() - failed_at
    assert passes.seen == [{"a"}, {"a", "b"}]
    assert waited >= 0.19


async def test_a_timer_marks_its_key_and_wakes_at_its_time() -> None:
    s = _store()
    passes = _Passes()
    now = [1000.0]
    shell = _shell(s, passes, clock=lambda: now[0])
    async with _running(shell):
        shell.wake_at("later", 1000.05)
        await asyncio.sleep(0.02)
        assert passes.seen == []
        await passes.count(1)
    assert passes.seen == [{"later"}]


async def test_a_later_timer_for_the_same_key_replaces_the_earlier_one() -> None:
    s = _store()
    passes = _Passes()
    shell = _shell(s, passes)
    async with _running(shell):
        now = shell.clock()
        shell.wake_at("k", now + 0.05)
        shell.wake_at("k", now + 0.15)
        shell.wake_at("other", now + 0.05)
        await passes.count(1)
        assert passes.seen == [{"other"}]
        await passes.count(2)
        await asyncio.sleep(0.1)
    assert passes.seen == [{"other"}, {"k"}]


async def test_timers_are_cancelled_when_the_loop_stops() -> None:
    s = _store()
    passes = _Passes()
    shell = _shell(s, passes)
    async with _running(shell):
        shell.wake_at("k", shell.clock() + 0.05)
    await asyncio.sleep(0.1)
    assert passes.seen == [] and shell.dirty == set()


async def test_keys_a_pass_marks_go_to_the_next_pass() -> None:
    s = _store()
    passes = _Passes()
    shell = _shell(s, passes)

    def more(dirty: set[str]) -> None:
        if dirty == {"a"}:
            shell.mark(["a-next"])
            shell.wake()

    passes.then = more
    async with _running(shell):
        await _put(s, "a")
        await passes.count(2)
    assert passes.seen == [{"a"}, {"a-next"}]


async def test_a_loop_over_everything_gets_the_one_key_for_any_change() -> None:
    s = _store()
    passes = _Passes()
    shell: Reconciler[str] = Reconciler(s, ("service",), passes, start=everything, note=everything)
    async with _running(shell):
        await passes.count(1)
        await _put(s, "a")
        await passes.count(2)
    assert passes.seen == [{EVERYTHING}, {EVERYTHING}]


async def test_first_at_once_skips_the_debounce_for_what_start_marked_only() -> None:
    s = _store()
    await _put(s, "a")
    passes = _Passes()
    start = lambda view: [x.id for x in view.list(Service)]  # noqa: E731
    loop = asyncio.get_running_loop()
    async with _running(_shell(s, passes, start=start, debounce=0.2, first_at_once=True)):
        began = loop.time()
        await passes.count(1)
        first = loop.time() - began
        await _put(s, "b")
        began = loop.time()
        await passes.count(2)
        second = loop.time() - began
    assert passes.seen == [{"a"}, {"b"}]
    assert first < 0.1 <= 0.19 <= second
