"""The durable `Storage` of a manager: `DiskStorage`, implemented in `agent.manager.wal`.

It lives outside this package because the Raft core does no I/O. The driver persists each
Ready with one call, durable when it returns, before sending the Ready's messages::

    storage.save(rd.hard_state, rd.entries, rd.snapshot)

`DiskStorage` also has `MemoryStorage`'s writes (`apply_snapshot`, `append`, `set_hardstate`,
`create_snapshot`, `compact`), each durable when it returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.manager.wal import KEEP_SNAPSHOTS, SEGMENT_BYTES, DiskStorage, StorageCorrupt

if TYPE_CHECKING:
    from .storage import Storage

    def _implements_the_protocol(storage: DiskStorage) -> Storage:
        return storage


__all__ = ["KEEP_SNAPSHOTS", "SEGMENT_BYTES", "DiskStorage", "StorageCorrupt"]
