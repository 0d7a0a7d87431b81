"""The sync mark: how far the log was known to be on disk, to tell a torn write from lost entries.

A crash during a `save` may leave a prefix of that save's records, and recovery cuts the rest
off: nothing acknowledged is lost, since nothing of that save had been acknowledged (a manager
answers only after the fsync). A cut, a deleted segment or a restored copy that removes records
that *had* been fsync'd looks the same from the log alone, yet those records may have been
acknowledged: a voter that forgets them breaks Raft's safety. The mark tells the two apart.

After every fsync of the log the storage overwrites the small file ``SYNCED`` with the segment,
the offset the log had reached, its last index and its commit index. The mark is written only
after the records it describes were fsync'd, so it never claims more than the disk held; it is
not fsync'd itself (the kernel writes it back soon, and on close). On opening, `lost` compares
the log that recovery found with the mark: a log that ends before the mark's offset or lacks
the mark's segment has lost entries that may have been acknowledged, and the storage refuses to
open. A manager also refuses a log that ends before its own commit index (`commit_beyond_log`;
the storage itself, like `MemoryStorage`, takes any hard state).

Mark, big-endian: ``b"SHSM" | version u8 | seq u64 | offset u64 | last u64 | commit u64 |
crc32 u32``. A mark that does not check out (never written, or from another version) is no
mark: opening goes on as before marks existed.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = ["MARK_NAME", "SyncMark", "commit_beyond_log", "lost"]

MARK_NAME = "SYNCED"
_MAGIC = b"SHSM"
_VERSION = 1
_BODY = struct.Struct(">4sBQQQQ")
_CRC = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class SyncMark:
    """The log was on disk up to `offset` of segment `seq`, holding entries up to `last`,
    committed up to `commit`."""

    seq: int
    offset: int
    last: int
    commit: int

    def encode(self) -> bytes:
        body = _BODY.pack(_MAGIC, _VERSION, self.seq, self.offset, self.last, self.commit)
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def decode(cls, data: bytes) -> SyncMark | None:
        """The mark in `data`, or None when it does not check out."""
        if len(data) != _BODY.size + _CRC.size:
            return None
        body = data[: _BODY.size]
        if _CRC.unpack(data[_BODY.size :])[0] != zlib.crc32(body):
            return None
        magic, version, seq, offset, last, commit = _BODY.unpack(body)
        if magic != _MAGIC or version != _VERSION:
            return None
        return cls(seq, offset, last, commit)


def lost(mark: SyncMark | None, seq: int, end: int, last: int) -> str | None:
    """What the recovered log lost of what `mark` says was on disk, or None if nothing.

    `seq` is the log's last segment, `end` the offset its intact records end at (where a torn
    tail is cut), `last` the last index the log recovered.
    """
    if mark is None:
        return None
    gone = f"entries {last + 1} to {mark.last}" if mark.last > last else "synced records"
    committed = f"the log had been committed up to {mark.commit}"
    if mark.seq > seq:
        return (
            f"segment number {mark.seq} and any later ones are missing "
            f"({gone} are gone; {committed})"
        )
    if mark.seq == seq and end < mark.offset:
        return (
            f"it ends at byte {end} but had been written and synced up to byte {mark.offset} "
            f"({gone} are gone; {committed})"
        )
    return None


def commit_beyond_log(last: int, commit: int) -> str | None:
    """A log whose hard state commits entries it does not hold has lost them."""
    if commit > last:
        return (
            f"the log ends at entry {last} but its hard state says entries up to {commit} "
            "are committed"
        )
    return None
