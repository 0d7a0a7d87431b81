"""shoal's Raft: a pure (sans-I/O) Raft state machine after etcd-io/raft.

`RaftNode` is fed ticks, messages and proposals and hands the driver a `Ready` to persist,
send and apply; see `core` for the driver contract, `storage` for the storage contract and
`messages` for the wire format.
"""

from .core import Config, ProgressInfo, RaftNode, Ready, SoftState, Status
from .describe import (
    describe_entry,
    describe_hard_state,
    describe_message,
    describe_ready,
    describe_snapshot,
)
from .errors import (
    Compacted,
    InvalidConfChange,
    NotLeader,
    ProposalDropped,
    ProposalError,
    RaftError,
    RaftWireError,
    SnapshotOutOfDate,
    StorageError,
    Unavailable,
)
from .messages import (
    WIRE_TYPES,
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    from_wire,
    to_wire,
)
from .progress import ProgressState
from .state import StateType
from .storage import MemoryStorage, Storage, bootstrap_state

__all__ = [
    "WIRE_TYPES",
    "Compacted",
    "ConfChange",
    "ConfChangeType",
    "Config",
    "Entry",
    "EntryType",
    "HardState",
    "InvalidConfChange",
    "MemoryStorage",
    "Message",
    "MessageType",
    "NotLeader",
    "ProgressInfo",
    "ProgressState",
    "ProposalDropped",
    "ProposalError",
    "RaftError",
    "RaftNode",
    "RaftWireError",
    "ReadState",
    "Ready",
    "Snapshot",
    "SnapshotOutOfDate",
    "SoftState",
    "StateType",
    "Status",
    "Storage",
    "StorageError",
    "Unavailable",
    "bootstrap_state",
    "describe_entry",
    "describe_hard_state",
    "describe_message",
    "describe_ready",
    "describe_snapshot",
    "from_wire",
    "to_wire",
]
