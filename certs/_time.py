"""Clock handling shared by the certs modules: time always comes in from the caller."""

from datetime import UTC, datetime

from .errors import CertError


def resolve_now(now: datetime | None) -> datetime:
    """Return `now` in UTC, or the current time when it is None.

    Naive datetimes are refused: a certificate's validity is an absolute instant.
    """
    if now is None:
        return datetime.now(UTC)
    return to_utc(now, "now")


def to_utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CertError(f"{name} must be a timezone-aware datetime, got {moment.isoformat()}")
    return moment.astimezone(UTC)


def format_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
