"""The enrollment endpoint's wire format: one request and one answer per TLS connection, each
a 4-byte big-endian length and a msgpack map of at most MAX_FRAME bytes.

A NATS cluster's MQTT listener always asks for a client certificate, so a node that has none
yet cannot enroll over MQTT there; it enrolls on this endpoint instead, which a manager runs on
the enroll port. The server picks the ALPN protocol `ENROLL_ALPN`, which is how a joiner tells
it from mosquitto's anonymous MQTT listener on the same port.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgpack

from broker.errors import BrokerError

__all__ = ["ENROLL_ALPN", "MAX_FRAME", "FrameError", "decode_frame", "encode_frame", "read_frame"]

ENROLL_ALPN = "shoal-enroll/1"
MAX_FRAME = 64 * 1024
_LENGTH = struct.Struct(">I")


class FrameError(BrokerError):
    """A frame that is too large, cut short or not a msgpack map (the peer's fault)."""


def encode_frame(body: dict[str, Any]) -> bytes:
    data = msgpack.packb(body, use_bin_type=True)
    if len(data) > MAX_FRAME:
        raise FrameError(f"a frame of {len(data):,} bytes is over the {MAX_FRAME:,}-byte limit")
    return _LENGTH.pack(len(data)) + data


def decode_frame(data: bytes) -> dict[str, Any]:
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise FrameError(f"not a msgpack message: {exc}") from None
    if not isinstance(body, dict):
        raise FrameError("expected a msgpack map")
    return body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    """One frame; FrameError when it is too large, cut short or malformed."""
    try:
        (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
        if length > MAX_FRAME:
            raise FrameError(f"a frame of {length:,} bytes is over the {MAX_FRAME:,}-byte limit")
        return decode_frame(await reader.readexactly(length))
    except asyncio.IncompleteReadError:
        raise FrameError("the connection ended in the middle of a frame") from None
