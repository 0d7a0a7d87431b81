"""The envelope decoder never trusts its input: every malformed message is an EnvelopeError."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.envelope import MAX_MESSAGE_BYTES, Envelope, Rejections, decode, encode
from broker.errors import EnvelopeError


def test_round_trip_keeps_every_field() -> None:
    env = Envelope(type="renew", sender="abc", seq=7, body={"csr": b"\x00\x01", "n": [1, 2]}, re=3)
    assert decode(encode(env)) == env


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty message"),
        (b"\xc1", "not valid msgpack"),
        (msgpack.packb([1, "t", "s", 1, 0]), "6-element array"),
        (msgpack.packb({"type": "x"}), "6-element array"),
        (msgpack.packb([2, "t", "s", 1, 0, None]), "unsupported envelope version 2"),
        (msgpack.packb([True, "t", "s", 1, 0, None]), "unsupported envelope version"),
        (msgpack.packb([1, "", "s", 1, 0, None]), "type must be"),
        (msgpack.packb([1, "t", "x" * 65, 1, 0, None]), "sender must be"),
        (msgpack.packb([1, "t", "s", -1, 0, None]), "seq must be"),
        (msgpack.packb([1, "t", "s", 1.5, 0, None]), "seq must be"),
        (msgpack.packb([1, "t", "s", 1, "0", None]), "re must be"),
        (msgpack.packb([1, "t", "s", 1, 0, None]) + b"\x00", "trailing bytes"),
        (msgpack.packb([1, "t", "s", 1, 0, None])[:-2], "not valid msgpack"),
    ],
)
def test_malformed_messages_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError, match=reason):
        decode(data)


def test_oversized_message_is_rejected_before_parsing() -> None:
    with pytest.raises(EnvelopeError, match="exceeds"):
        decode(b"\x00" * (MAX_MESSAGE_BYTES + 1))


def test_encoding_an_unencodable_body_is_an_envelope_error() -> None:
    with pytest.raises(EnvelopeError, match="cannot encode"):
        encode(Envelope(type="t", sender="s", seq=1, body=object()))


def test_rejections_are_counted_by_reason() -> None:
    r = Rejections()
    r.reject("a/b", "garbage")
    r.reject("a/b", "garbage")
    r.reject("a/c", "unknown node")
    assert r.total == 3 and r.counts["garbage"] == 2


@settings(max_examples=500)
@given(st.binary(max_size=512))
def test_no_bytes_crash_the_decoder(data: bytes) -> None:
    try:
        decode(data)
    except EnvelopeError:
        pass


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=500)
@given(st.lists(_values, max_size=8))
def test_no_msgpack_value_crashes_the_decoder(items: list[object]) -> None:
    try:
        env = decode(msgpack.packb(items))
    except EnvelopeError:
        return
    assert isinstance(env.type, str) and isinstance(env.seq, int)


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=200))
def test_mutated_valid_messages_never_crash(noise: bytes, at: int) -> None:
    good = encode(Envelope(type="state", sender="n1", seq=1, body={"status": "ready"}))
    at = at % len(good)
    for data in (good[:at], good[:at] + noise + good[at:], good[:at] + noise):
        try:
            decode(data)
        except EnvelopeError:
            pass
