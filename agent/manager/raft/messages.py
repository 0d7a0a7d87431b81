"""Value types of shoal's Raft: entries, messages, snapshots, hard state, conf changes.

Everything here is an immutable (frozen, slotted) dataclass, safe to share between the core and
the driver. Node ids are non-empty printable strings (a manager's node id).

Wire format
-----------
`to_wire(msg)` turns a `Message` into a dict made only of msgpack-friendly types (int, str,
bytes, bool, list, dict, None); `from_wire(obj)` turns such a dict back into a `Message` and
raises `RaftWireError` -- and never any other exception -- for anything malformed, so the
transport can count and drop bad input. Keys are short because managers may sit on cellular
links::

    {"v": 1, "t": "MsgApp", "to": "n2", "fr": "n1", "tm": 5,    # always present
     "lt": 4, "ix": 17, "cm": 16, "rj": True, "rh": 12,         # omitted when 0 / False
     "en": [[term, index, kind, data], ...],                    # omitted when empty
     "sn": {"ix": 9, "tm": 3, "vo": ["n1", "n2"], "da": b"..."},  # only in MsgSnap
     "cx": b"..."}                                              # omitted when empty

Only messages that travel between nodes are accepted (`WIRE_TYPES`); local message types
(`MsgHup`, `MsgBeat`, ...) are refused by both functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from .errors import RaftError, RaftWireError

__all__ = [
    "WIRE_TYPES",
    "ConfChange",
    "ConfChangeType",
    "Entry",
    "EntryType",
    "HardState",
    "Message",
    "MessageType",
    "ReadState",
    "Snapshot",
    "from_wire",
    "to_wire",
    "validate_node_id",
]

WIRE_VERSION = 1
MAX_UINT = 2**63 - 1
MAX_NODE_ID_LEN = 256


class MessageType(Enum):
    # local: never on the wire
    Hup = "MsgHup"
    Beat = "MsgBeat"
    Prop = "MsgProp"
    TransferLeader = "MsgTransferLeader"
    CheckQuorum = "MsgCheckQuorum"
    # between nodes
    Vote = "MsgVote"
    VoteResp = "MsgVoteResp"
    PreVote = "MsgPreVote"
    PreVoteResp = "MsgPreVoteResp"
    App = "MsgApp"
    AppResp = "MsgAppResp"
    Heartbeat = "MsgHeartbeat"
    HeartbeatResp = "MsgHeartbeatResp"
    Snap = "MsgSnap"
    TimeoutNow = "MsgTimeoutNow"
    ReadIndex = "MsgReadIndex"
    ReadIndexResp = "MsgReadIndexResp"


WIRE_TYPES = frozenset(
    {
        MessageType.Vote,
        MessageType.VoteResp,
        MessageType.PreVote,
        MessageType.PreVoteResp,
        MessageType.App,
        MessageType.AppResp,
        MessageType.Heartbeat,
        MessageType.HeartbeatResp,
        MessageType.Snap,
        MessageType.TimeoutNow,
        MessageType.ReadIndex,
        MessageType.ReadIndexResp,
    }
)
_TYPE_BY_NAME = {t.value: t for t in WIRE_TYPES}


class EntryType(Enum):
    Normal = 0
    ConfChange = 1


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    type: EntryType = EntryType.Normal
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """State machine image at `index` (whose entry had `term`), with the voters at that index."""

    index: int
    term: int
    voters: tuple[str, ...] = ()
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before messages go out: current term, vote in it, commit index."""

    term: int = 0
    vote: str | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read with context `ctx` may be served once applied >= `index`."""

    index: int
    ctx: bytes


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    to: str
    frm: str
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""


class ConfChangeType(Enum):
    AddNode = "add-node"
    RemoveNode = "remove-node"


_CC_BY_NAME = {t.value: t for t in ConfChangeType}


def validate_node_id(node_id: object) -> str:
    """Return `node_id` if it is a valid node id, else raise `RaftWireError`."""
    if (
        type(node_id) is not str
        or not node_id
        or len(node_id) > MAX_NODE_ID_LEN
        or not node_id.isprintable()
    ):
        raise RaftWireError(f"invalid node id {node_id!r}")
    return node_id


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A single-server membership change, carried as the data of an `EntryType.ConfChange`."""

    kind: ConfChangeType
    node_id: str

    def __post_init__(self) -> None:
        try:
            validate_node_id(self.node_id)
        except RaftWireError as exc:
            raise RaftError(str(exc)) from None

    def encode(self) -> bytes:
        return f"{self.kind.value}:{self.node_id}".encode()

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        """Parse `encode()`'s output; raise `RaftWireError` for anything else."""
        try:
            kind, sep, node_id = data.decode("utf-8").partition(":")
        except (UnicodeDecodeError, AttributeError) as exc:
            raise RaftWireError("conf change is not UTF-8 text") from exc
        if not sep or kind not in _CC_BY_NAME:
            raise RaftWireError(f"malformed conf change {data!r}")
        return cls(_CC_BY_NAME[kind], validate_node_id(node_id))


# ---------------------------------------------------------------------------- wire encoding


def to_wire(msg: Message) -> dict[str, Any]:
    """Encode a message for the transport (see the module docstring for the layout)."""
    if msg.type not in WIRE_TYPES:
        raise RaftError(f"{msg.type.value} is a local message and never goes on the wire")
    out: dict[str, Any] = {
        "v": WIRE_VERSION,
        "t": msg.type.value,
        "to": msg.to,
        "fr": msg.frm,
        "tm": msg.term,
    }
    for key, value in (
        ("lt", msg.log_term),
        ("ix", msg.index),
        ("cm", msg.commit),
        ("rh", msg.reject_hint),
    ):
        if value:
            out[key] = value
    if msg.reject:
        out["rj"] = True
    if msg.entries:
        out["en"] = [[e.term, e.index, e.type.value, e.data] for e in msg.entries]
    if msg.snapshot is not None:
        s = msg.snapshot
        out["sn"] = {"ix": s.index, "tm": s.term, "vo": list(s.voters), "da": s.data}
    if msg.context:
        out["cx"] = msg.context
    return out


_MSG_KEYS = frozenset({"v", "t", "to", "fr", "tm", "lt", "ix", "cm", "rj", "rh", "en", "sn", "cx"})
_SNAP_KEYS = frozenset({"ix", "tm", "vo", "da"})


def from_wire(obj: object) -> Message:
    """Decode and validate a message; raise `RaftWireError` for any malformed input."""
    try:
        return _from_wire(obj)
    except RaftWireError:
        raise
    except Exception as exc:  # defence in depth: the contract is "only RaftWireError"
        raise RaftWireError(f"malformed message: {exc!r}") from exc


def _uint(obj: dict[Any, Any], key: str, default: int | None = 0) -> int:
    value = obj.get(key, default)
    if type(value) is not int or not 0 <= value <= MAX_UINT:
        raise RaftWireError(f"field {key!r} must be an unsigned integer, got {value!r}")
    return value


def _bytes(value: object, what: str) -> bytes:
    if type(value) is not bytes:
        raise RaftWireError(f"{what} must be bytes, got {type(value).__name__}")
    return value


def _from_wire(obj: object) -> Message:
    if type(obj) is not dict:
        raise RaftWireError(f"message must be a dict, got {type(obj).__name__}")
    unknown = [k for k in obj if k not in _MSG_KEYS]
    if unknown:
        raise RaftWireError(f"unknown message fields {sorted(map(repr, unknown))}")
    if obj.get("v") != WIRE_VERSION or type(obj.get("v")) is not int:
        raise RaftWireError(f"unsupported wire version {obj.get('v')!r}")
    name = obj.get("t")
    if type(name) is not str or name not in _TYPE_BY_NAME:
        raise RaftWireError(f"unknown message type {name!r}")
    mtype = _TYPE_BY_NAME[name]
    to = validate_node_id(obj.get("to"))
    frm = validate_node_id(obj.get("fr"))
    term = _uint(obj, "tm", None)
    if term == 0:
        raise RaftWireError("a message between nodes must carry a term")
    reject = obj.get("rj", False)
    if type(reject) is not bool:
        raise RaftWireError("field 'rj' must be a bool")
    context = _bytes(obj.get("cx", b""), "field 'cx'")
    msg = Message(
        type=mtype,
        to=to,
        frm=frm,
        term=term,
        log_term=_uint(obj, "lt"),
        index=_uint(obj, "ix"),
        entries=_entries(obj.get("en", [])),
        commit=_uint(obj, "cm"),
        reject=reject,
        reject_hint=_uint(obj, "rh"),
        snapshot=_snapshot(obj["sn"]) if "sn" in obj else None,
        context=context,
    )
    _check_semantics(msg)
    return msg


def _entries(raw: object) -> tuple[Entry, ...]:
    if type(raw) is not list:
        raise RaftWireError("field 'en' must be a list")
    out = []
    for item in raw:
        if type(item) is not list or len(item) != 4:
            raise RaftWireError("an entry must be a list [term, index, kind, data]")
        fields = {"term": item[0], "index": item[1], "kind": item[2]}
        term, index, kind = (_uint(fields, k, None) for k in ("term", "index", "kind"))
        if kind not in (EntryType.Normal.value, EntryType.ConfChange.value):
            raise RaftWireError(f"unknown entry kind {kind}")
        out.append(Entry(term, index, EntryType(kind), _bytes(item[3], "entry data")))
    return tuple(out)


def _snapshot(raw: object) -> Snapshot:
    if type(raw) is not dict or set(raw) != _SNAP_KEYS:
        raise RaftWireError("field 'sn' must be a dict with keys ix, tm, vo, da")
    voters = raw["vo"]
    if type(voters) is not list:
        raise RaftWireError("snapshot voters must be a list")
    ids = tuple(validate_node_id(v) for v in voters)
    if len(set(ids)) != len(ids):
        raise RaftWireError("snapshot voters repeat a node id")
    return Snapshot(_uint(raw, "ix", None), _uint(raw, "tm", None), ids, _bytes(raw["da"], "da"))


def _check_semantics(msg: Message) -> None:
    if msg.entries and msg.type is not MessageType.App:
        raise RaftWireError(f"{msg.type.value} cannot carry entries")
    if msg.entries:
        expected, prev_term = msg.index + 1, msg.log_term
        for e in msg.entries:
            if e.index != expected or e.term < prev_term or e.term > msg.term:
                raise RaftWireError("entries are not a valid continuation of the log")
            expected, prev_term = expected + 1, e.term
    if msg.log_term > msg.term:
        raise RaftWireError("log term is newer than the message term")
    if (msg.snapshot is not None) != (msg.type is MessageType.Snap):
        raise RaftWireError("a snapshot travels in MsgSnap and only there")
    if msg.snapshot is not None and (msg.snapshot.index == 0 or msg.snapshot.term > msg.term):
        raise RaftWireError("invalid snapshot metadata")
