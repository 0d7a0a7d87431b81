"""Records of the write-ahead log: framing, encryption at rest, and the body of each type.

Frame, big-endian::

    length u32 | crc u32 | type u8 | payload (length bytes)

``crc`` is ``zlib.crc32`` of the length, type and payload bytes. The payload is
``nonce (12) | AES-256-GCM ciphertext and tag`` of the msgpack body, with a random nonce per
record and the associated data ``b"shoal-wal-1" | type u8 | segment seq u64 | offset u64``, so a
record decrypts only as the type it was written as, in the segment and at the offset it was
written at.

The checksum and the encryption answer different questions. A frame whose checksum fails was
not completely written (a torn write) or was damaged afterwards; `read_frames` tells the two
apart by position. A frame whose checksum holds but which does not decrypt was written whole
with another key (`wrong data key?`) or altered on purpose.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.manager.raft.messages import Entry, EntryType, HardState, Snapshot

from .errors import StorageCorrupt

__all__ = [
    "FORMAT_VERSION",
    "Frame",
    "RecordType",
    "Sealer",
    "SegmentHeader",
    "decode_body",
    "encode_compact",
    "encode_entry",
    "encode_hard_state",
    "encode_snapshot_marker",
    "frame",
    "read_frames",
]

FORMAT_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
FRAME_HEAD = struct.Struct(">IIB")
MIN_PAYLOAD = NONCE_BYTES + TAG_BYTES
MAX_PAYLOAD = 2**31
_AAD = struct.Struct(">11sBQQ")
_AAD_MAGIC = b"shoal-wal-1"


class RecordType(IntEnum):
    HEADER = 1  # first record of every segment: the state the segment starts from
    ENTRY = 2  # a log entry; it replaces any stored entries at its index and above
    HARD_STATE = 3
    SNAPSHOT = 4  # a snapshot file became current (replacing the log, or taken from it)
    COMPACT = 5  # entries up to an index were discarded


_TYPES = frozenset(int(t) for t in RecordType)


class Sealer:
    """AES-256-GCM with the data key, bound to a record's type and position."""

    def __init__(self, data_key: bytes) -> None:
        if not isinstance(data_key, bytes) or len(data_key) != KEY_BYTES:
            raise ValueError(f"the raft data key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(data_key)

    def seal(self, rtype: RecordType, seq: int, offset: int, body: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        aad = _AAD.pack(_AAD_MAGIC, rtype, seq, offset)
        return nonce + self._aead.encrypt(nonce, body, aad)

    def open(self, rtype: int, seq: int, offset: int, payload: bytes) -> bytes:
        """The body of a payload; `cryptography.exceptions.InvalidTag` if it does not decrypt."""
        aad = _AAD.pack(_AAD_MAGIC, rtype, seq, offset)
        return self._aead.decrypt(payload[:NONCE_BYTES], payload[NONCE_BYTES:], aad)

    def seal_blob(self, aad: bytes, body: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, body, aad)

    def open_blob(self, aad: bytes, sealed: bytes) -> bytes:
        return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)


def frame(rtype: RecordType, payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a raft log record is limited to {MAX_PAYLOAD} bytes")
    length = len(payload).to_bytes(4, "big")
    crc = zlib.crc32(payload, zlib.crc32(bytes([rtype]), zlib.crc32(length)))
    return FRAME_HEAD.pack(len(payload), crc, rtype) + payload


@dataclass(frozen=True, slots=True)
class Frame:
    offset: int
    rtype: int
    payload: bytes

    @property
    def end(self) -> int:
        return self.offset + FRAME_HEAD.size + len(self.payload)


def _frame_at(data: memoryview, offset: int) -> Frame | None:
    """The whole, intact frame at `offset`, or None."""
    if len(data) - offset < FRAME_HEAD.size:
        return None
    length, crc, rtype = FRAME_HEAD.unpack_from(data, offset)
    start = offset + FRAME_HEAD.size
    if rtype not in _TYPES or length < MIN_PAYLOAD or start + length > len(data):
        return None
    payload = data[start : start + length]
    head_crc = zlib.crc32(data[offset + 8 : start], zlib.crc32(data[offset : offset + 4]))
    if zlib.crc32(payload, head_crc) != crc:
        return None
    return Frame(offset, rtype, bytes(payload))


def _intact_frame_after(data: memoryview, offset: int) -> int | None:
    """The offset of an intact frame starting after `offset`, or None if there is none."""
    if len(data) - offset >= FRAME_HEAD.size:
        length = int.from_bytes(data[offset : offset + 4], "big")
        claimed_end = offset + FRAME_HEAD.size + length
        if claimed_end < len(data) and _frame_at(data, claimed_end) is not None:
            return claimed_end  # the usual case: a damaged record with a sound length
    for pos in range(offset + 1, len(data) - FRAME_HEAD.size - MIN_PAYLOAD + 1):
        if _frame_at(data, pos) is not None:
            return pos
    return None


def read_frames(data: bytes, path: Path) -> tuple[list[Frame], int | None]:
    """The intact frames of a segment, and the offset of its torn tail (None if none).

    The rule: a frame that is incomplete or fails its checksum is a torn write when no intact
    frame follows it anywhere in the file, and the file is cut there; when an intact frame
    follows it, a record that had been written (and fsync'd) since was damaged: StorageCorrupt.
    """
    view = memoryview(data)
    frames: list[Frame] = []
    offset = 0
    while offset < len(view):
        found = _frame_at(view, offset)
        if found is None:
            later = _intact_frame_after(view, offset)
            if later is not None:
                raise StorageCorrupt(
                    path,
                    offset,
                    f"a record fails its checksum and an intact record follows at byte {later}",
                )
            return frames, offset
        frames.append(found)
        offset = found.end
    return frames, None


# ---------------------------------------------------------------------------- bodies


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """The state a segment starts from: replaying a segment needs none of the older ones
    except for the entries ``(base.index, tail.index]``, which later records must cover."""

    seq: int
    hard_state: HardState
    snapshot: Snapshot  # metadata only: data is in the snapshot file
    base: tuple[int, int]  # (index, term) the log starts after
    tail: tuple[int, int]  # (index, term) of the last entry when the segment was created

    def encode(self) -> bytes:
        hs, snap = self.hard_state, self.snapshot
        return _pack(
            [
                FORMAT_VERSION,
                self.seq,
                [hs.term, hs.vote, hs.commit],
                [snap.index, snap.term, list(snap.voters)],
                list(self.base),
                list(self.tail),
            ]
        )


def encode_entry(e: Entry) -> bytes:
    return _pack([e.term, e.index, e.type.value, e.data])


def encode_hard_state(hs: HardState) -> bytes:
    return _pack([hs.term, hs.vote, hs.commit])


def encode_snapshot_marker(snap: Snapshot, replaces_log: bool) -> bytes:
    return _pack([snap.index, snap.term, list(snap.voters), replaces_log])


def encode_compact(index: int, term: int) -> bytes:
    return _pack([index, term])


def _pack(obj: object) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def decode_body(rtype: int, body: bytes) -> Any:
    """The value of a record body: Entry, HardState, SegmentHeader, (Snapshot, replaces_log)
    or (index, term) for COMPACT. Raises ValueError when the body is not of that shape."""
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:
        raise ValueError(f"undecodable body: {exc}") from None
    if rtype == RecordType.ENTRY:
        term, index, kind, data = _fields(obj, 4)
        if kind not in (EntryType.Normal.value, EntryType.ConfChange.value):
            raise ValueError(f"unknown entry type {kind!r}")
        return Entry(_uint(term), _uint(index), EntryType(kind), _bin(data))
    if rtype == RecordType.HARD_STATE:
        return _hard_state(obj)
    if rtype == RecordType.SNAPSHOT:
        index, term, voters, replaces = _fields(obj, 4)
        if type(replaces) is not bool:
            raise ValueError("snapshot marker flag is not a bool")
        return Snapshot(_uint(index), _uint(term), _voters(voters)), replaces
    if rtype == RecordType.COMPACT:
        index, term = _fields(obj, 2)
        return _uint(index), _uint(term)
    if rtype == RecordType.HEADER:
        version, seq, hs, snap, base, tail = _fields(obj, 6)
        if version != FORMAT_VERSION:
            raise ValueError(f"format version {version!r}, this shoal reads {FORMAT_VERSION}")
        s_index, s_term, s_voters = _fields(snap, 3)
        return SegmentHeader(
            _uint(seq),
            _hard_state(hs),
            Snapshot(_uint(s_index), _uint(s_term), _voters(s_voters)),
            _pair(base),
            _pair(tail),
        )
    raise ValueError(f"unknown record type {rtype}")


def _fields(obj: object, n: int) -> list[Any]:
    if type(obj) is not list or len(obj) != n:
        raise ValueError(f"expected a list of {n} fields")
    return obj


def _uint(value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"expected an unsigned integer, got {value!r}")
    return value


def _bin(value: object) -> bytes:
    if type(value) is not bytes:
        raise ValueError("expected bytes")
    return value


def _pair(obj: object) -> tuple[int, int]:
    a, b = _fields(obj, 2)
    return _uint(a), _uint(b)


def _voters(obj: object) -> tuple[str, ...]:
    if type(obj) is not list or not all(type(v) is str for v in obj):
        raise ValueError("voters are not a list of node ids")
    return tuple(obj)


def _hard_state(obj: object) -> HardState:
    term, vote, commit = _fields(obj, 3)
    if vote is not None and type(vote) is not str:
        raise ValueError("vote is not a node id")
    return HardState(_uint(term), vote, _uint(commit))
