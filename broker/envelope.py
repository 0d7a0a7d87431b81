"""The versioned msgpack envelope around every internal message.

Wire form: a msgpack array ``[version, type, sender, seq, re, body]``:
``type`` names the message ("hello", "renew", ...), ``sender`` is the sending node's id,
``seq`` counts up per sender, ``re`` is the ``seq`` of the request being answered (0 when the
message is not an answer) and ``body`` is any msgpack value.

Decoding never trusts its input. Anything that is not exactly that shape is an
:class:`EnvelopeError` with a reason; :class:`Rejections` counts and logs them so a receiver
can drop the message and carry on.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgpack

from broker.errors import EnvelopeError

__all__ = ["MAX_MESSAGE_BYTES", "VERSION", "Envelope", "Rejections", "decode", "encode"]

VERSION = 1
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_MAX_NAME = 64

log = logging.getLogger("shoal.envelope")


@dataclass(frozen=True, slots=True)
class Envelope:
    type: str
    sender: str
    seq: int
    body: Any = None
    re: int = 0


def encode(env: Envelope) -> bytes:
    try:
        return msgpack.packb(
            [VERSION, env.type, env.sender, env.seq, env.re, env.body], use_bin_type=True
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise EnvelopeError(f"cannot encode {env.type!r} message: {exc}") from exc


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
        raise EnvelopeError(f"{what} must be a string of 1-{_MAX_NAME} characters")
    return value


def _count(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value < 2**63:
        raise EnvelopeError(f"{what} must be a non-negative integer")
    return value


def decode(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Envelope:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EnvelopeError("payload is not bytes")
    if len(data) > max_bytes:
        raise EnvelopeError(f"message of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    if not data:
        raise EnvelopeError("empty message")
    try:
        obj = msgpack.unpackb(
            bytes(data),
            raw=False,
            strict_map_key=True,
            use_list=True,
        )
    except msgpack.ExtraData as exc:
        raise EnvelopeError("trailing bytes after the message") from exc
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise EnvelopeError(f"not valid msgpack: {type(exc).__name__}") from exc
    except Exception as exc:  # msgpack raises a few undocumented types on hostile input
        raise EnvelopeError(f"not valid msgpack: {type(exc).__name__}") from exc
    if not isinstance(obj, list) or len(obj) != 6:
        raise EnvelopeError("not an envelope: expected a 6-element array")
    version, typ, sender, seq, re, body = obj
    if version != VERSION or type(version) is not int:
        raise EnvelopeError(
            f"unsupported envelope version {version!r} (this node speaks {VERSION})"
        )
    return Envelope(
        type=_name(typ, "type"),
        sender=_name(sender, "sender"),
        seq=_count(seq, "seq"),
        re=_count(re, "re"),
        body=body,
    )


@dataclass
class Rejections:
    """Counts rejected messages by reason, logging each one (rate-limited by reason)."""

    counts: Counter[str] = field(default_factory=Counter)

    def reject(self, topic: str, reason: str) -> None:
        self.counts[reason] += 1
        n = self.counts[reason]
        if n <= 10 or n % 1000 == 0:
            log.warning("rejected message on %s: %s (seen %d times)", topic, reason, n)

    @property
    def total(self) -> int:
        return sum(self.counts.values())
