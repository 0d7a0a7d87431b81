"""Messages on the wire: what `to_wire` makes, `from_wire` takes back; anything else is a
`RaftWireError` and nothing else."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.manager.raft import (
    WIRE_TYPES,
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    Message,
    MessageType,
    RaftError,
    RaftWireError,
    Snapshot,
    from_wire,
    to_wire,
)

ids = st.text(st.characters(codec="utf-8", categories=("L", "N", "P")), min_size=1, max_size=8)
uint = st.integers(min_value=0, max_value=2**63 - 1)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    mtype = draw(st.sampled_from(sorted(WIRE_TYPES, key=lambda t: t.value)))
    term = draw(st.integers(min_value=1, max_value=2**40))
    log_term = draw(st.integers(min_value=0, max_value=term))
    index = draw(st.integers(min_value=0, max_value=2**40))
    entries: tuple[Entry, ...] = ()
    if mtype is MessageType.App:
        n = draw(st.integers(min_value=0, max_value=4))
        t = log_term
        ents = []
        for i in range(n):
            t = draw(st.integers(min_value=t, max_value=term))
            kind = draw(st.sampled_from(list(EntryType)))
            ents.append(Entry(t, index + 1 + i, kind, draw(st.binary(max_size=16))))
        entries = tuple(ents)
    snapshot = None
    if mtype is MessageType.Snap:
        snapshot = Snapshot(
            draw(st.integers(min_value=1, max_value=2**40)),
            draw(st.integers(min_value=0, max_value=term)),
            tuple(draw(st.lists(ids, max_size=5, unique=True))),
            draw(st.binary(max_size=32)),
        )
    return Message(
        type=mtype,
        to=draw(ids),
        frm=draw(ids),
        term=term,
        log_term=log_term,
        index=index,
        entries=entries,
        commit=draw(uint),
        reject=draw(st.booleans()),
        reject_hint=draw(uint),
        snapshot=snapshot,
        context=draw(st.binary(max_size=16)),
    )


@given(messages())
def test_every_message_survives_the_wire(msg: Message) -> None:
    wire = to_wire(msg)
    assert from_wire(wire) == msg
    assert from_wire(msgpack.unpackb(msgpack.packb(wire, use_bin_type=True), raw=False)) == msg


junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=3) | st.integers(), children, max_size=6)
    ),
    max_leaves=20,
)


@given(junk)
def test_junk_is_refused_with_a_wire_error(obj: Any) -> None:
    try:
        from_wire(obj)
    except RaftWireError:
        pass


@settings(max_examples=300)
@given(messages(), st.data())
def test_a_damaged_message_is_refused_with_a_wire_error_or_decodes(
    msg: Message, data: st.DataObject
) -> None:
    wire = to_wire(msg)
    key = data.draw(st.sampled_from(sorted(wire)))
    wire[key] = data.draw(junk)
    try:
        decoded = from_wire(wire)
    except RaftWireError:
        return
    assert isinstance(decoded, Message)


def test_missing_required_fields_are_refused() -> None:
    wire = to_wire(Message(MessageType.Heartbeat, "2", "1", 3, commit=2))
    for key in ("v", "t", "to", "fr", "tm"):
        damaged = {k: v for k, v in wire.items() if k != key}
        with pytest.raises(RaftWireError):
            from_wire(damaged)


@pytest.mark.parametrize(
    "change",
    [
        {"tm": 0},
        {"tm": True},
        {"tm": -1},
        {"tm": 2**64},
        {"t": "MsgHup"},
        {"t": "MsgProp"},
        {"v": 2},
        {"to": ""},
        {"fr": 7},
        {"cx": "text"},
        {"rj": 1},
        {"extra": 1},
        {"en": [[3, 1, 0, b"x"]]},
        {"sn": {"ix": 1, "tm": 1, "vo": [], "da": b""}},
    ],
)
def test_invalid_fields_are_refused(change: dict[str, Any]) -> None:
    wire = to_wire(Message(MessageType.Heartbeat, "2", "1", 3, commit=2))
    wire.update(change)
    with pytest.raises(RaftWireError):
        from_wire(wire)


def test_entries_must_continue_the_log_the_message_names() -> None:
    good = Message(MessageType.App, "2", "1", 3, log_term=2, index=4, entries=(Entry(3, 5),))
    assert from_wire(to_wire(good)) == good
    for bad_entries in ([[3, 6, 0, b""]], [[1, 5, 0, b""]], [[4, 5, 0, b""]]):
        wire = to_wire(good)
        wire["en"] = bad_entries
        with pytest.raises(RaftWireError):
            from_wire(wire)


def test_local_messages_never_go_on_the_wire() -> None:
    with pytest.raises(RaftError):
        to_wire(Message(MessageType.Hup, "1", "1", 0))


def test_a_conf_change_round_trips_through_bytes() -> None:
    for kind in ConfChangeType:
        cc = ConfChange(kind, "node-7")
        assert ConfChange.decode(cc.encode()) == cc


@pytest.mark.parametrize("data", [b"", b"add-node", b"grow:4", b"add-node:", b"\xff\xfe:1"])
def test_a_malformed_conf_change_is_a_wire_error(data: bytes) -> None:
    with pytest.raises(RaftWireError):
        ConfChange.decode(data)


def test_a_conf_change_needs_a_valid_node_id() -> None:
    with pytest.raises(RaftError):
        ConfChange(ConfChangeType.AddNode, "")
