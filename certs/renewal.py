"""When a node renews its certificate: at a random point between 50% and 80% of its lifetime.

The jitter spreads renewals of a fleet enrolled in one burst, so the CA is never asked to
re-sign thousands of certificates in the same minute.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ._time import format_utc, to_utc
from .errors import CertError

if TYPE_CHECKING:
    from .identity import Identity

RENEW_FROM = (5, 10)
"""Earliest renewal point, as a fraction of the lifetime (numerator, denominator)."""
RENEW_UNTIL = (8, 10)
"""Latest renewal point, as a fraction of the lifetime."""

_MICROSECOND = timedelta(microseconds=1)


def renewal_time(not_before: datetime, not_after: datetime, rng: random.Random) -> datetime:
    """A uniformly random instant in [50%, 80%] of the validity window, from `not_before`.

    Computed in whole microseconds (the resolution of datetime), so the result never falls
    outside the window through float rounding.
    """
    start = to_utc(not_before, "not_before")
    end = to_utc(not_after, "not_after")
    if end <= start:
        raise CertError(
            f"certificate validity ends ({format_utc(end)}) before it starts ({format_utc(start)})"
        )
    total = (end - start) // _MICROSECOND
    earliest = -(-total * RENEW_FROM[0] // RENEW_FROM[1])  # ceiling division
    latest = max(earliest, total * RENEW_UNTIL[0] // RENEW_UNTIL[1])
    return start + rng.randint(earliest, latest) * _MICROSECOND


def needs_renewal(identity: Identity, now: datetime, rng: random.Random) -> bool:
    """True when `now` is past a renewal time drawn from `rng` for this certificate.

    Each call draws a new point, so a loop that asks repeatedly renews earlier on average
    than one draw would; long-running code should call `renewal_time` once per certificate
    and keep the result.
    """
    return to_utc(now, "now") >= renewal_time(identity.not_before, identity.not_after, rng)
