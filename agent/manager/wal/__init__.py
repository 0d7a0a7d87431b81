"""shoal's write-ahead log: durable, encrypted storage for a manager's Raft state.

`DiskStorage` implements the Raft `Storage` protocol and `MemoryStorage`'s writes in a
directory; see `disk_storage` for the layout, the write and recovery rules, and `records` for the
record format and the torn-write rule, `synced` for the rule that tells lost entries from a
torn write.

It lives outside the Raft package because the Raft core does no I/O. The driver persists each
Ready with one call, durable when it returns, before sending the Ready's messages::

    storage.save(rd.hard_state, rd.entries, rd.snapshot)
"""

from .disk_storage import KEEP_SNAPSHOTS, SEGMENT_BYTES, DiskStorage
from .errors import StorageCorrupt, StorageLost

__all__ = ["KEEP_SNAPSHOTS", "SEGMENT_BYTES", "DiskStorage", "StorageCorrupt", "StorageLost"]
