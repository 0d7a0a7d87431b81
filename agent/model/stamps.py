"""Timestamps kept in the store, and read by the CLI: ISO 8601 text in UTC with milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["now_text", "parse_stamp", "stamp_of"]


def stamp_of(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def parse_stamp(text: str, default: float = 0.0) -> float:
    """Seconds since the epoch; ``default`` for empty or malformed text."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return default
