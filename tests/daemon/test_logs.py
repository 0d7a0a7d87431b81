"""`service logs`: reading engines' timestamped lines, --since, merging, Docker's prefixes,
the rate limit and message sizes of followed tasks, and the lease that stops a node's stream
once its follower is gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.logs import NodeLogs
from agent.model.errors import ShoalError
from agent.model.logs import (
    LogLine,
    RateLimit,
    batches,
    format_line,
    merge,
    parse_rfc3339,
    parse_since,
    parse_stamped,
    stamp,
    task_name,
)
from broker.envelope import Envelope
from broker.topics import Topics

T0 = parse_rfc3339("2026-12-03T09:00:00Z") or 0


def test_a_timestamp_round_trips_with_nanoseconds_in_utc() -> None:
    ns = T0 + 123_456_789
    assert stamp(ns) == "2026-12-03T09:00:00.123456789Z"
    assert parse_rfc3339(stamp(ns)) == ns
    assert parse_rfc3339("2026-12-03T10:00:00.5+01:00") == T0 + 500_000_000
    assert parse_rfc3339("yesterday") is None


def test_engine_lines_split_into_timestamp_and_text_and_unstamped_lines_are_kept() -> None:
    data = (
        b"2026-12-03T09:00:00.000000001Z hello world\n"
        b"no stamp here\n"
        b"2026-12-03T09:00:01.000000000Z \n"
    )
    assert parse_stamped(data) == [
        LogLine(T0 + 1, "hello world"),
        LogLine(T0 + 1, "no stamp here"),
        LogLine(T0 + 1_000_000_000, ""),
    ]


@pytest.mark.parametrize(
    ("text", "back"),
    [("10m", 600), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("500ms", 0.5)],
)
def test_since_takes_a_duration_back_from_now(text: str, back: float) -> None:
    now = T0 + 3600 * 1_000_000_000
    assert parse_since(text, now) == now - int(back * 1_000_000_000)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2026-12-03T09:00:00Z", T0),
        ("2026-12-03T09:00:00.25Z", T0 + 250_000_000),
        ("2026-12-03T10:00:00+01:00", T0),
        ("2026-12-03T09:00:00", T0),
        ("2026-12-03T09:00", T0),
        ("2026-12-03", T0 - 9 * 3600 * 1_000_000_000),
        (str(T0 // 1_000_000_000), T0),
        (f"{T0 // 1_000_000_000}.5", T0 + 500_000_000),
    ],
)
def test_since_takes_a_timestamp_as_docker_does(text: str, ns: int) -> None:
    assert parse_since(text, 0) == ns


@pytest.mark.parametrize("bad", ["", "yesterday", "10", "10x", "1h-3m", "2026-13-40T00:00:00Z"])
def test_since_refuses_what_is_neither_a_time_nor_a_duration(bad: str) -> None:
    if bad == "10":  # a bare number is a Unix timestamp, as in Docker
        assert parse_since(bad, 0) == 10_000_000_000
        return
    with pytest.raises(ShoalError, match="--since"):
        parse_since(bad, T0)


def test_lines_of_several_tasks_merge_in_time_order_each_keeping_its_own() -> None:
    a = [(LogLine(1, "a1"), "a"), (LogLine(5, "a2"), "a"), (LogLine(5, "a3"), "a")]
    b = [(LogLine(2, "b1"), "b"), (LogLine(5, "b2"), "b"), (LogLine(9, "b3"), "b")]
    assert [line.text for line, _ in merge([a, b])] == ["a1", "b1", "a2", "a3", "b2", "b3"]


def test_lines_carry_dockers_prefix_and_timestamps_come_first_in_the_text() -> None:
    tid = "x" * 25
    assert task_name("web", "2", tid, no_trunc=False, with_id=True) == "web.2." + "x" * 12
    assert task_name("web", "2", tid, no_trunc=True, with_id=True) == "web.2." + tid
    assert task_name("web", "2", tid, no_trunc=False, with_id=False) == "web.2"
    line = LogLine(T0, "hi")
    assert format_line(line, "web.2", "n1", timestamps=False, raw=False) == "web.2@n1    | hi"
    assert (
        format_line(line, "web.2", "n1", timestamps=True, raw=False)
        == "web.2@n1    | 2026-12-03T09:00:00.000000000Z hi"
    )
    assert format_line(line, "web.2", "n1", timestamps=True, raw=True) == (
        "2026-12-03T09:00:00.000000000Z hi"
    )


def test_the_rate_limit_lets_a_seconds_worth_through_and_counts_the_rest() -> None:
    limit = RateLimit(100, now=0.0)
    assert limit.take(150, now=0.0) == 100 and limit.dropped == 50
    assert limit.take(10, now=0.05) == 5  # half a tenth of a second refills 5
    assert limit.take(1000, now=10.0) == 100  # never more than a burst of one second


def test_batches_stay_under_the_byte_limit_and_keep_every_line_in_order() -> None:
    lines = [LogLine(i, "x" * 100) for i in range(50)]
    groups = list(batches(lines, limit=1000))
    assert [x for g in groups for x in g] == lines
    assert all(sum(len(x.text) + 32 for x in g) <= 1000 for g in groups)
    assert list(batches([LogLine(0, "y" * 5000)], limit=1000)) == [[LogLine(0, "y" * 5000)]]


# the node's streams -------------------------------------------------------------------------


class _Session:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []

    async def send(self, topic: str, type: str, body: Any = None, **kw: Any) -> int:
        self.sent.append((topic, type, body))
        return len(self.sent)


class _Executor:
    """A task whose output never ends: a line now and then."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    async def _lines(self) -> AsyncIterator[bytes]:
        try:
            while True:
                yield f"{stamp(T0)} tick\n".encode()
                await asyncio.sleep(0.01)
        finally:
            self.closed.set()

    def logs(self, task_id: str, **kw: Any) -> AsyncIterator[bytes]:
        return self._lines()


async def _until(predicate: Any, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - a condition on plain state, polled
            await asyncio.sleep(0.01)


def _follow(sid: str, sender: str = "m1") -> Envelope:
    body = {"task_id": "t1", "stream": sid, "since": 0, "lease": 5}
    return Envelope(type="logs-follow", sender=sender, seq=7, body=body)


async def test_a_stream_whose_lease_is_not_renewed_stops_and_one_renewed_goes_on() -> None:
    now = [0.0]
    session, executor = _Session(), _Executor()
    logs = NodeLogs(session, Topics("c1"), "n1", executor, clock=lambda: now[0])  # type: ignore[arg-type]
    logs.on_message(_follow("s1"))
    await _until(lambda: logs.lines_sent > 0)
    assert session.sent[0][0] == "shoal/c1/node/n1/req"  # the answer to the request
    assert any(t == "shoal/c1/node/n1/logs/m1" and k == "logs-lines" for t, k, _ in session.sent)
    now[0] = 4.0
    logs.on_message(Envelope(type="logs-lease", sender="m2", seq=8, body={"streams": ["s1"]}))
    logs.on_message(Envelope(type="logs-lease", sender="m1", seq=9, body={"streams": ["s1"]}))
    now[0] = 8.0  # past the first lease, within the renewed one
    await asyncio.sleep(0.6)
    assert "s1" in logs.streams and not executor.closed.is_set()
    now[0] = 9.5  # the renewal ran out too: only m1 could renew it, and m2's did not count
    await _until(executor.closed.is_set)
    assert logs.streams == {}
    await logs.close()


async def test_a_follower_that_says_stop_ends_its_stream_at_once() -> None:
    session, executor = _Session(), _Executor()
    logs = NodeLogs(session, Topics("c1"), "n1", executor)  # type: ignore[arg-type]
    logs.on_message(_follow("s1"))
    await _until(lambda: "s1" in logs.streams)
    logs.on_message(Envelope(type="logs-stop", sender="m1", seq=9, body={"streams": ["s1"]}))
    await _until(executor.closed.is_set)
    assert logs.streams == {}
    await logs.close()


async def test_a_malformed_follow_request_is_answered_with_an_error_and_starts_nothing() -> None:
    session, executor = _Session(), _Executor()
    logs = NodeLogs(session, Topics("c1"), "n1", executor)  # type: ignore[arg-type]
    logs.on_message(Envelope(type="logs-follow", sender="m1", seq=3, body={"stream": "Bad/Id"}))
    await _until(lambda: session.sent)
    assert session.sent == [
        (
            "shoal/c1/node/n1/req",
            "logs-reply",
            {"ok": False, "error": "malformed logs-follow request"},
        )
    ]
    assert logs.streams == {}
    await logs.close()
