"""Every decoder of the managers' inputs either returns a valid object or raises its package's
own error: arbitrary bytes, arbitrary msgpack values, mutated valid messages and oversized
values never raise anything else, never hang, and the live handlers count a rejection and
carry on."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.manager.dispatcher import StatusLog
from agent.manager.raft import (
    ConfChange,
    Entry,
    EntryType,
    Message,
    MessageType,
    RaftError,
    Snapshot,
    from_wire,
    to_wire,
)
from agent.model import StatusError, TaskState, TaskStatus
from broker.envelope import Envelope, Rejections, decode, encode
from broker.errors import EnvelopeError
from certs import CertError, ClusterCA, JoinToken, TokenError, make_csr, new_private_key
from stacks import StackError, load_stack_text

# msgpack values as the envelope decoder hands them to a handler (lists, str keys or not)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.text(max_size=8), inner, max_size=6)
        | st.dictionaries(st.integers(-3, 3), inner, max_size=3)
    ),
    max_leaves=25,
)


def mutate(good: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """``good`` with one key replaced by an arbitrary value, removed, or an extra key added."""
    out = dict(good)
    key = data.draw(st.sampled_from([*sorted(good), "extra"]))
    if data.draw(st.booleans()) and key in out:
        del out[key]
    else:
        out[key] = data.draw(values)
    return out


# --- task status (node -> managers) ----------------------------------------------------------

GOOD_STATUS = TaskStatus(
    task_id="t1", state=TaskState.RUNNING, message="started", timestamp=1.5
).to_dict()


@settings(max_examples=400)
@given(values)
def test_task_status_from_any_value_is_a_status_or_a_status_error(obj: object) -> None:
    try:
        st_ = TaskStatus.from_dict(obj)
    except StatusError:
        return
    assert st_.to_dict() == TaskStatus.from_dict(st_.to_dict()).to_dict()


@settings(max_examples=400)
@given(st.data())
def test_mutated_task_statuses_are_a_status_or_a_status_error(data: st.DataObject) -> None:
    with _maybe(StatusError):
        TaskStatus.from_dict(mutate(GOOD_STATUS, data))


class _maybe:
    """Context manager: the body may raise ``error`` (swallowed) and nothing else."""

    def __init__(self, error: type[BaseException] | tuple[type[BaseException], ...]) -> None:
        self.error = error

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        return kind is None or (isinstance(kind, type) and issubclass(kind, self.error))


class FakeSession:
    def __init__(self) -> None:
        self.rejections = Rejections()


def env(type_: str, body: object) -> Envelope:
    return Envelope(type=type_, sender="n1", seq=1, body=body)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["status", "describe", "heartbeat", "other"]), values)
async def test_the_status_handler_counts_what_it_rejects_and_carries_on(
    kind: str, body: object
) -> None:
    session = FakeSession()
    log = StatusLog(session)  # type: ignore[arg-type]
    await log.on_status("shoal/c1/node/n1/status", env(kind, body))
    await log.on_status("shoal/c1/node/n1/status", env("status", {"tasks": [GOOD_STATUS]}))
    assert log.latest["t1"][0] == "n1"  # still working after whatever came first
    if kind == "other":
        assert session.rejections.total >= 1


async def test_a_node_cannot_make_a_manager_remember_unbounded_task_statuses() -> None:
    session = FakeSession()
    log = StatusLog(session)  # type: ignore[arg-type]
    for batch in range(20):
        tasks = [dict(GOOD_STATUS, task_id=f"t{batch}-{i}") for i in range(1000)]
        await log.on_status("shoal/c1/node/n1/status", env("status", {"tasks": tasks}))
    assert len(log.latest) <= StatusLog.MAX_TASKS_PER_NODE
    assert "t19-999" in log.latest  # the newest are kept


async def test_oversized_status_texts_are_cut_to_a_bounded_size() -> None:
    session = FakeSession()
    log = StatusLog(session)  # type: ignore[arg-type]
    huge = dict(GOOD_STATUS, message="m" * 1_000_000, err="e" * 1_000_000)
    await log.on_status("shoal/c1/node/n1/status", env("status", {"tasks": [huge]}))
    doc = log.latest["t1"][1]
    assert len(doc.message) <= 4096 and len(doc.err) <= 4096


async def test_a_status_envelope_on_a_topic_of_no_node_is_rejected() -> None:
    session = FakeSession()
    log = StatusLog(session)  # type: ignore[arg-type]
    await log.on_status("shoal/c1/mon/x", env("status", {"tasks": [GOOD_STATUS]}))
    assert session.rejections.total == 1 and not log.latest


# --- raft messages (managers -> managers) ------------------------------------------------------

GOOD_RAFT = to_wire(
    Message(
        type=MessageType.App,
        to="m2",
        frm="m1",
        term=3,
        log_term=2,
        index=4,
        commit=4,
        entries=(Entry(3, 5, EntryType.Normal, b"x"),),
    )
)
GOOD_SNAP = to_wire(
    Message(
        type=MessageType.Snap, to="m2", frm="m1", term=3, snapshot=Snapshot(9, 2, ("m1",), b"s")
    )
)


@settings(max_examples=400)
@given(values)
def test_raft_from_wire_of_any_value_is_a_message_or_a_raft_error(obj: object) -> None:
    with _maybe(RaftError):
        assert isinstance(from_wire(obj), Message)


@settings(max_examples=400)
@given(st.sampled_from([GOOD_RAFT, GOOD_SNAP]), st.data())
def test_mutated_raft_messages_are_a_message_or_a_raft_error(
    good: dict[str, Any], data: st.DataObject
) -> None:
    with _maybe(RaftError):
        from_wire(mutate(good, data))


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_conf_changes_from_any_bytes_are_a_change_or_a_raft_error(data: bytes) -> None:
    with _maybe(RaftError):
        ConfChange.decode(data)


def test_an_oversized_raft_message_decodes_in_bounded_time() -> None:
    entries = [[3, 5 + i, 0, b"x" * 8] for i in range(200_000)]
    obj = dict(GOOD_RAFT, en=entries)
    payload = encode(Envelope("raft", "m1", 1, obj))
    assert len(payload) < 4 * 1024 * 1024
    start = time.monotonic()
    msg = from_wire(decode(payload).body)
    assert len(msg.entries) == 200_000 and time.monotonic() - start < 5


# --- the envelope under oversized and deeply nested input --------------------------------------


def test_deeply_nested_msgpack_is_an_envelope_error() -> None:
    depth = 100_000
    data = b"\x96\x01\xa1t\xa1s\x01\x00" + b"\x91" * depth + b"\xc0"
    with pytest.raises(EnvelopeError):
        decode(data)


@pytest.mark.parametrize(
    "header",
    [
        b"\xdd\xff\xff\xff\xff",
        b"\xdf\xff\xff\xff\xff",
        b"\xdb\xff\xff\xff\xf0",
        b"\xc6\x7f\xff\xff",
    ],
    ids=["array32", "map32", "str32", "bin32"],
)
def test_length_prefixes_larger_than_the_message_are_an_envelope_error(header: bytes) -> None:
    start = time.monotonic()
    with pytest.raises(EnvelopeError):
        decode(b"\x96\x01\xa1t\xa1s\x01\x00" + header)
    assert time.monotonic() - start < 1


# --- enrollment requests and tokens -------------------------------------------------------------


@settings(max_examples=300)
@given(st.text(max_size=120) | st.from_regex(r"SHOAL-1-[0-9a-f]{0,70}-[A-Z2-7]{0,40}"))
def test_join_tokens_from_any_text_are_a_token_or_a_token_error(text: str) -> None:
    with _maybe(TokenError):
        JoinToken.parse(text)


@pytest.fixture(scope="module")
def ca() -> ClusterCA:
    return ClusterCA.create("k3v9x2m7q8w1e5r4t6y0u2i3o")


@pytest.fixture(scope="module")
def csr() -> bytes:
    return make_csr(new_private_key())


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=2000), st.booleans())
def test_mutated_csrs_are_signed_or_a_cert_error(
    ca: ClusterCA, csr: bytes, noise: bytes, at: int, cut: bool
) -> None:
    from certs import Role

    at = at % len(csr)
    data = csr[:at] if cut else csr[:at] + noise + csr[at + len(noise) :]
    with _maybe(CertError):
        ca.issue(data, node_id="q2c8x9v7b6n5m4l3k2j1h0g9f", role=Role.WORKER)


# --- the stack topic ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_a_stack_file_from_any_bytes_is_a_stack_or_a_stack_error(data: bytes) -> None:
    with _maybe(StackError):
        load_stack_text(data, stack_name="web", filename="web.yml")


@pytest.mark.parametrize(
    "text",
    [
        b"\xff\xfe\x00garbage",
        b"[" * 50_000,
        b"{a: " * 20_000,
        b"services: " + b"x" * 1_000_000,
        b"version: '3.8'\nservices:\n  web:\n    image: x\n    labels: {" + b"a: b, " * 50_000,
    ],
    ids=["not-utf8", "nested-lists", "nested-maps", "one-long-value", "many-labels"],
)
def test_hostile_stack_files_are_stack_errors_in_bounded_time(text: bytes) -> None:
    start = time.monotonic()
    with _maybe(StackError):
        load_stack_text(text, stack_name="web", filename="web.yml")
    assert time.monotonic() - start < 20


def test_msgpack_helpers_used_above_produce_what_they_say() -> None:
    assert msgpack.unpackb(encode(Envelope("t", "s", 1, GOOD_STATUS)))[5] == GOOD_STATUS


async def test_a_huge_status_report_is_refused_at_once_and_a_long_one_lets_others_run() -> None:
    session = FakeSession()
    log = StatusLog(session)  # type: ignore[arg-type]
    huge = [dict(GOOD_STATUS, task_id=f"t{i}") for i in range(StatusLog.MAX_TASKS_PER_NODE + 1)]
    start = time.monotonic()
    await log.on_status("shoal/c1/node/n1/status", env("status", {"tasks": huge}))
    assert time.monotonic() - start < 0.05 and not log.latest
    assert session.rejections.counts["status of more tasks than a node may have"] == 1

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(ticker())
    await log.on_status("shoal/c1/node/n1/status", env("status", {"tasks": huge[:5000]}))
    other.cancel()
    assert len(log.latest) == 5000 and ticks >= 5  # the loop ran other work meanwhile
