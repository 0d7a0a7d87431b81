"""Enrollment attempts are bounded per client, for all clients together and in flight, and
requests are checked for shape and size before any work is done."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from agent.manager.enrollment import (
    MAX_CSR_BYTES,
    EnrollLimiter,
    Limits,
    RateLimited,
    TokenBucket,
    parse_request,
)
from agent.model.errors import ShoalError
from tests.manager.test_decoders import _maybe, values


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_gives_its_burst_then_refills_at_its_rate() -> None:
    b = TokenBucket(rate=2.0, burst=3, stamp=0.0)
    for _ in range(3):
        assert b.wait(0.0) == 0
        b.take(0.0)
    assert b.wait(0.0) == pytest.approx(0.5)
    assert b.wait(0.5) == 0


def test_one_client_is_limited_and_told_when_to_try_again() -> None:
    clock = Clock()
    limiter = EnrollLimiter(clock, Limits(per_client_rate=0.2, per_client_burst=3))
    for _ in range(3):
        limiter.admit("j1")
    with pytest.raises(RateLimited, match="too many attempts from this client") as info:
        limiter.admit("j1")
    assert info.value.retry_after == 5
    limiter.admit("j2")  # another client is not held back
    clock.now += 5
    limiter.admit("j1")


def test_many_clients_together_are_limited_by_the_global_bucket() -> None:
    clock = Clock()
    limiter = EnrollLimiter(clock, Limits(global_rate=10, global_burst=20))
    for i in range(20):
        limiter.admit(f"j{i}")
    with pytest.raises(RateLimited, match="too many nodes are trying to join") as info:
        limiter.admit("fresh")
    assert info.value.retry_after >= 1 and limiter.refused == 1
    clock.now += 0.11
    limiter.admit("fresh")


def test_refused_attempts_take_no_tokens() -> None:
    clock = Clock()
    limiter = EnrollLimiter(clock, Limits(global_rate=1, global_burst=1, per_client_burst=1))
    limiter.admit("a")
    for _ in range(100):
        with pytest.raises(RateLimited):
            limiter.admit("b")
    clock.now += 1
    limiter.admit("b")


def test_enrollments_in_flight_are_bounded() -> None:
    limiter = EnrollLimiter(Clock(), Limits(in_flight=2))
    limiter.in_flight = 2
    with pytest.raises(RateLimited, match="busy"):
        limiter.admit("j1")


def test_the_clients_remembered_are_bounded() -> None:
    limiter = EnrollLimiter(Clock(), Limits(clients=100, global_burst=10_000))
    for i in range(1000):
        limiter.admit(f"j{i}")
    assert len(limiter._clients) == 100


GOOD = {"token": "SHOAL-1-x-y", "csr": b"-----BEGIN CERTIFICATE REQUEST-----", "hostname": "h"}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"token": None}, "token and csr are required"),
        ({"csr": "text"}, "token and csr are required"),
        ({"token": "S" * 10_000}, "token is over"),
        ({"csr": b"x" * (MAX_CSR_BYTES + 1)}, "CSR is over"),
        ({"hostname": 7}, "bad hostname"),
        ({"hostname": "h" * 254}, "bad hostname"),
        ({"role": "admin"}, "role must be"),
    ],
)
def test_malformed_requests_say_what_is_wrong(change: dict[str, object], reason: str) -> None:
    with pytest.raises(ShoalError, match=reason):
        parse_request({**GOOD, **change})


@settings(max_examples=400)
@given(values)
def test_a_request_from_any_value_is_a_request_or_a_shoal_error(obj: object) -> None:
    with _maybe(ShoalError):
        parse_request(obj)


def test_the_broker_bounds_enrollment_connections_and_every_message_size() -> None:
    from pathlib import Path

    from broker.envelope import MAX_MESSAGE_BYTES
    from broker.mosquitto_conf import BrokerFiles, ListenSpec, render_config

    text = render_config(BrokerFiles(Path("/b")), ListenSpec("127.0.0.1", 8883, 8884), user="m")
    lines = text.splitlines()
    enroll = lines[lines.index("listener 8884 127.0.0.1") :]
    assert "max_connections 256" in enroll
    assert f"message_size_limit {MAX_MESSAGE_BYTES}" in lines
    packet = next(int(x.split()[1]) for x in lines if x.startswith("max_packet_size "))
    assert MAX_MESSAGE_BYTES < packet <= MAX_MESSAGE_BYTES + 64 * 1024


async def test_a_joiner_that_finds_the_listener_closing_at_once_retries_then_says_it_is_full() -> (
    None
):
    import asyncio
    import time

    from agent.join import enroll
    from certs import JoinToken, new_private_key

    accepted = 0

    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    token = str(JoinToken.new("0" * 64))
    start = time.monotonic()
    async with server:
        with pytest.raises(ShoalError, match="full") as info:
            await enroll("127.0.0.1", port, token, new_private_key(), hostname="h", timeout=3)
    assert accepted >= 2 and 2 < time.monotonic() - start < 6  # it retried until its timeout
    assert "try again later" in str(info.value)


def test_renewals_of_one_node_are_bounded_and_say_so() -> None:
    from agent.manager.enrollment import RENEW_LIMITS

    clock = Clock()
    limiter = EnrollLimiter(clock, RENEW_LIMITS, what="certificate renewal")
    for _ in range(5):
        limiter.admit("node1")
    with pytest.raises(RateLimited, match="certificate renewal is rate limited"):
        limiter.admit("node1")
    clock.now += 5
    limiter.admit("node1")


@pytest.mark.parametrize(
    ("body", "wait"),
    [
        ({"ok": False, "error": "enrollment is rate limited: ...", "retry_after": 5}, 5.0),
        ({"ok": False, "error": "x", "retry_after": 0.5}, 0.5),
        ({"ok": False, "error": "bad token"}, None),
        ({"ok": True, "retry_after": 5}, None),
        ({"ok": False, "retry_after": True}, None),
        ({"ok": False, "retry_after": 10_000}, None),
        ({"ok": False, "retry_after": -1}, None),
        ("x", None),
    ],
)
def test_a_joiner_waits_only_as_long_as_a_sane_rate_limited_answer_says(
    body: object, wait: float | None
) -> None:
    from agent.join import _retry_after

    assert _retry_after(body) == wait
