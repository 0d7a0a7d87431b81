"""One-line, deterministic descriptions of messages, entries, snapshots and Readies.

Used by the transcript tests and handy in the driver's debug logs, e.g.::

    1->2 MsgApp Term:2 Log:2/3 Commit:3 Entries:[2/4 EntryNormal "x"]
"""

from __future__ import annotations

from collections.abc import Callable

from .config import Ready
from .errors import RaftWireError
from .messages import ConfChange, Entry, EntryType, HardState, Message, MessageType, Snapshot

__all__ = [
    "describe_entry",
    "describe_hard_state",
    "describe_message",
    "describe_ready",
    "describe_snapshot",
]


def _quote(data: bytes) -> str:
    return '"' + data.decode("utf-8", "backslashreplace").replace('"', '\\"') + '"'


def describe_entry(e: Entry) -> str:
    if e.type is EntryType.ConfChange:
        try:
            cc = ConfChange.decode(e.data)
            body = f"{cc.kind.value} {cc.node_id}"
        except RaftWireError:
            body = _quote(e.data)
        return f"{e.term}/{e.index} EntryConfChange {body}"
    return f"{e.term}/{e.index} EntryNormal {_quote(e.data)}"


def describe_snapshot(s: Snapshot) -> str:
    return f"Index:{s.index} Term:{s.term} Voters:[{' '.join(s.voters)}] Data:{_quote(s.data)}"


def describe_hard_state(hs: HardState) -> str:
    vote = hs.vote if hs.vote is not None else "-"
    return f"HardState Term:{hs.term} Vote:{vote} Commit:{hs.commit}"


def describe_message(m: Message, entry_fmt: Callable[[Entry], str] = describe_entry) -> str:
    out = f"{m.frm}->{m.to} {m.type.value} Term:{m.term} Log:{m.log_term}/{m.index}"
    if m.reject:
        out += f" Rejected (Hint: {m.reject_hint})"
    if m.commit:
        out += f" Commit:{m.commit}"
    if m.entries:
        out += " Entries:[" + ", ".join(entry_fmt(e) for e in m.entries) + "]"
    if m.snapshot is not None:
        out += " Snapshot: " + describe_snapshot(m.snapshot)
    if m.context and m.type is not MessageType.Vote:
        out += f" Context:{_quote(m.context)}"
    elif m.context:
        out += " (transfer)"
    return out


def describe_ready(rd: Ready) -> list[str]:
    lines = ["Ready:"]
    if rd.soft_state is not None:
        lead = rd.soft_state.leader if rd.soft_state.leader is not None else "-"
        lines.append(f"{rd.soft_state.state.value} Lead:{lead}")
    if rd.hard_state is not None:
        lines.append(describe_hard_state(rd.hard_state))
    if rd.snapshot is not None:
        lines.append("Snapshot " + describe_snapshot(rd.snapshot))
    if rd.entries:
        lines.append("Entries:")
        lines.extend(describe_entry(e) for e in rd.entries)
    if rd.committed_entries:
        lines.append("CommittedEntries:")
        lines.extend(describe_entry(e) for e in rd.committed_entries)
    if rd.messages:
        lines.append("Messages:")
        lines.extend(describe_message(m) for m in rd.messages)
    if rd.read_states:
        lines.append("ReadStates:")
        lines.extend(f"Index:{rs.index} Context:{_quote(rs.ctx)}" for rs in rd.read_states)
    return lines
