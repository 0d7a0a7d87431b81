"""Log lines of tasks, as `service logs` reads, merges and prints them (pure: no I/O).

A line is (nanoseconds since the epoch, text without its newline). Engines hand lines over as
``<RFC 3339 nanosecond timestamp> <text>`` (Docker's logs API with ``timestamps=true``, and the
process driver's output file); :func:`parse_stamped` reads that, :func:`stamp` writes it.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.model.errors import ShoalError

__all__ = [
    "LINES_PER_SECOND",
    "MESSAGE_BYTES",
    "LogLine",
    "RateLimit",
    "batches",
    "format_line",
    "merge",
    "parse_rfc3339",
    "parse_since",
    "parse_stamped",
    "stamp",
    "task_name",
]

LINES_PER_SECOND = 1000  # what one followed task may send; more is dropped and counted
MESSAGE_BYTES = 256 * 1024  # at most this much text in one message of a followed task
LINE_BYTES = 64 * 1024  # a longer line is cut (Docker splits lines at 16 KiB)

_STAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3600_000_000_000,
}


@dataclass(frozen=True, slots=True, order=True)
class LogLine:
    ns: int
    text: str


def parse_rfc3339(text: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 timestamp, or None."""
    m = _STAMP.match(text)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        tz = UTC if zone == "Z" else datetime.strptime(zone.replace(":", ""), "%z").tzinfo
        base = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=tz)
    except ValueError:
        return None
    return int(base.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def stamp(ns: int) -> str:
    """RFC 3339 with nanoseconds in UTC, as Docker prints: 2026-12-03T09:07:41.123456789Z."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def parse_stamped(data: bytes) -> list[LogLine]:
    """Lines of ``<timestamp> <text>``; a line without a readable timestamp takes the one
    before it (0 at the start), so nothing an engine wrote is lost."""
    out: list[LogLine] = []
    last = 0
    for raw in data.decode("utf-8", "replace").splitlines():
        head, sep, rest = raw.partition(" ")
        ns = parse_rfc3339(head)
        if ns is None:
            out.append(LogLine(last, raw[:LINE_BYTES]))
            continue
        last = ns
        out.append(LogLine(ns, (rest if sep else "")[:LINE_BYTES]))
    return out


def parse_since(text: str, now_ns: int, flag: str = "--since") -> int:
    """``--since`` (or ``--until``: `flag`) as Docker takes it: an RFC 3339 timestamp (date
    only, or without zone, is UTC), a Unix timestamp with optional fraction, or a duration
    back from now (``10m``, ``1h30m``, ``90s``)."""
    value = text.strip()
    if not value:
        raise ShoalError(f'invalid value "" for "{flag}": give a timestamp or a duration')
    if _DURATION.sub("", value) == "" and _DURATION.match(value):
        total = sum(
            int(float(n) * _UNIT_NS[u]) for n, u in _DURATION.findall(value)
        )  # the whole text is durations
        return now_ns - total
    if re.fullmatch(r"\d+(\.\d{1,9})?", value):
        secs, _, frac = value.partition(".")
        return int(secs) * 1_000_000_000 + int(frac.ljust(9, "0") or "0")
    candidates = [value]
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        candidates.append(value + "T00:00:00Z")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?", value):
        candidates.append(value + ("Z" if value.count(":") == 2 else ":00Z"))
    for c in candidates:
        ns = parse_rfc3339(c)
        if ns is not None:
            return ns
    raise ShoalError(
        f'invalid value "{text}" for "{flag}": expected an RFC 3339 timestamp'
        " (2026-12-03T09:00:00Z), a Unix timestamp or a duration (10m, 1h30m)"
    )


def merge(streams: Iterable[Iterable[tuple[LogLine, str]]]) -> Iterator[tuple[LogLine, str]]:
    """Lines of several tasks (each stream in its own order) in one time order; lines with
    the same time keep their task's order."""
    return heapq.merge(*streams, key=lambda item: item[0].ns)


def task_name(service: str, slot: str, task_id: str, *, no_trunc: bool, with_id: bool) -> str:
    name = f"{service}.{slot}"
    if with_id:
        name += "." + (task_id if no_trunc else task_id[:12])
    return name


def format_line(line: LogLine, task: str, node: str, *, timestamps: bool, raw: bool) -> str:
    """One printed line: ``<task>@<node>    | [<timestamp> ]<text>`` (Docker's layout);
    with ``raw``, no prefix."""
    text = f"{stamp(line.ns)} {line.text}" if timestamps else line.text
    return text if raw else f"{task}@{node}    | {text}"


class RateLimit:
    """A token bucket: `per_second` lines a second, bursts up to one second's worth; the
    clock (seconds) comes from outside."""

    def __init__(self, per_second: int, now: float) -> None:
        self.per_second = per_second
        self.tokens = float(per_second)
        self.at = now
        self.dropped = 0

    def take(self, n: int, now: float) -> int:
        """How many of `n` lines may go now; the rest count as dropped."""
        elapsed = max(0.0, now - self.at)
        self.tokens = min(float(self.per_second), self.tokens + elapsed * self.per_second)
        self.at = max(self.at, now)
        allowed = max(0, min(n, int(self.tokens)))
        self.tokens -= allowed
        self.dropped += n - allowed
        return allowed


def batches(lines: list[LogLine], limit: int = MESSAGE_BYTES) -> Iterator[list[LogLine]]:
    """Consecutive groups of `lines` whose text adds up to at most `limit` bytes (a group
    always holds at least one line; a line is at most :data:`LINE_BYTES`)."""
    group: list[LogLine] = []
    size = 0
    for line in lines:
        n = len(line.text.encode()) + 32
        if group and size + n > limit:
            yield group
            group, size = [], 0
        group.append(line)
        size += n
    if group:
        yield group
