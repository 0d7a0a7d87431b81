"""Snapshot files: ``snap/<term>-<index>.snap`` (16 hex digits each), written atomically.

File, big-endian::

    b"SHOALSNP" | version u8 | crc32 u32 of what follows | nonce (12) | AES-256-GCM ciphertext

The ciphertext holds the msgpack list ``[index, term, voters, data]``; the associated data is
the magic, the version, the term and the index, so a file decrypts only under its own name.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import msgpack
from cryptography.exceptions import InvalidTag

from agent.manager.raft.messages import Snapshot

from .errors import StorageCorrupt
from .fileio import write_durably
from .records import FORMAT_VERSION, Sealer

__all__ = ["list_snapshots", "read_snapshot", "snapshot_path", "write_snapshot"]

_MAGIC = b"SHOALSNP"
_HEAD = struct.Struct(">8sBI")
_AAD = struct.Struct(">8sBQQ")
_NAME = re.compile(r"([0-9a-f]{16})-([0-9a-f]{16})\.snap")


def snapshot_path(directory: Path, term: int, index: int) -> Path:
    return directory / f"{term:016x}-{index:016x}.snap"


def list_snapshots(directory: Path) -> list[tuple[int, int, Path]]:
    """(index, term, path) of the snapshot files in `directory`, oldest first."""
    found = []
    for path in directory.iterdir():
        m = _NAME.fullmatch(path.name)
        if m:
            found.append((int(m.group(2), 16), int(m.group(1), 16), path))
    return sorted(found)


def write_snapshot(directory: Path, sealer: Sealer, snap: Snapshot) -> Path:
    body = msgpack.packb([snap.index, snap.term, list(snap.voters), snap.data], use_bin_type=True)
    sealed = sealer.seal_blob(_AAD.pack(_MAGIC, FORMAT_VERSION, snap.term, snap.index), body)
    path = snapshot_path(directory, snap.term, snap.index)
    write_durably(path, _HEAD.pack(_MAGIC, FORMAT_VERSION, zlib.crc32(sealed)) + sealed)
    return path


def read_snapshot(path: Path, sealer: Sealer, term: int, index: int) -> Snapshot:
    """The snapshot in `path`, which must be the one at (`term`, `index`); StorageCorrupt if
    the file is damaged."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StorageCorrupt(path, None, "the snapshot file is missing") from None
    if len(raw) < _HEAD.size:
        raise StorageCorrupt(path, None, "the snapshot file is truncated")
    magic, version, crc = _HEAD.unpack_from(raw)
    sealed = raw[_HEAD.size :]
    if magic != _MAGIC or version != FORMAT_VERSION:
        raise StorageCorrupt(path, 0, "not a shoal snapshot file of a known version")
    if zlib.crc32(sealed) != crc:
        raise StorageCorrupt(path, _HEAD.size, "the snapshot fails its checksum")
    try:
        body = sealer.open_blob(_AAD.pack(_MAGIC, FORMAT_VERSION, term, index), sealed)
    except InvalidTag:
        raise StorageCorrupt(path, _HEAD.size, "the snapshot does not decrypt") from None
    try:
        s_index, s_term, voters, data = msgpack.unpackb(body, raw=False)
        snap = Snapshot(s_index, s_term, tuple(voters), data)
    except Exception:
        raise StorageCorrupt(path, _HEAD.size, "the snapshot body is malformed") from None
    if (snap.index, snap.term) != (index, term) or type(snap.data) is not bytes:
        raise StorageCorrupt(path, _HEAD.size, "the snapshot is not the one its name says")
    return snap
