"""The order in which a session tries the broker's servers and the pauses between attempts."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from broker.servers import Address, AddressError, Rotation, parse_address, start_index

A, B, C = Address("10.0.0.1", 8883), Address("10.0.0.2", 8883), Address("10.0.0.3", 8884)


def rotation(addresses: list[Address], client: str = "node-1") -> Rotation:
    return Rotation(addresses, client, backoff_min=0.2, backoff_max=15.0, rng=random.Random(7))


def test_addresses_parse_as_host_and_port_including_ipv6() -> None:
    assert parse_address("10.0.0.1:8883") == A
    assert parse_address("[::1]:8883") == Address("::1", 8883)
    assert str(Address("::1", 8883)) == "[::1]:8883"
    assert str(A) == "10.0.0.1:8883"


@pytest.mark.parametrize("text", ["10.0.0.1", "host:", ":8883", "host:0", "host:99999", "a b:1"])
def test_a_bad_address_is_refused_with_what_is_wrong(text: str) -> None:
    with pytest.raises(AddressError, match="bad broker address"):
        parse_address(text)


def test_a_client_starts_at_the_same_server_every_time() -> None:
    first = rotation([A, B, C], "node-x").current
    assert all(rotation([A, B, C], "node-x").current == first for _ in range(5))


def test_clients_spread_over_the_servers() -> None:
    counts = Counter(start_index(f"node-{i}", 3) for i in range(300))
    assert set(counts) == {0, 1, 2}
    assert min(counts.values()) > 70


def test_a_failure_moves_on_to_the_next_server_almost_at_once() -> None:
    r = rotation([A, B, C])
    start = r.addresses.index(r.current)
    wait = r.failed()
    assert r.current == r.addresses[(start + 1) % 3]
    assert wait < 0.1
    assert r.failed() < 0.1
    assert r.current == r.addresses[(start + 2) % 3]


def test_the_backoff_is_applied_once_per_full_round_and_doubles() -> None:
    r = rotation([A, B, C])
    waits = [r.failed() for _ in range(9)]
    rounds = [waits[2], waits[5], waits[8]]
    assert all(w < 0.05 for i, w in enumerate(waits) if i % 3 != 2)
    assert 0.1 <= rounds[0] <= 0.3
    assert 0.2 <= rounds[1] <= 0.6
    assert 0.4 <= rounds[2] <= 1.2


def test_the_backoff_stops_at_its_maximum() -> None:
    r = rotation([A])
    waits = [r.failed() for _ in range(20)]
    assert max(waits) <= 15.0 * 1.5
    assert waits[-1] >= 15.0 * 0.5


def test_one_server_backs_off_after_every_failure_as_before() -> None:
    r = rotation([A])
    waits = [r.failed() for _ in range(3)]
    assert r.current == A
    assert 0.1 <= waits[0] <= 0.3 and 0.2 <= waits[1] <= 0.6 and 0.4 <= waits[2] <= 1.2


def test_a_connection_starts_a_fresh_round_of_servers() -> None:
    r = rotation([A, B, C])
    r.failed()
    r.failed()  # two servers down; the third takes the connection
    r.connected()
    assert r.failed() < 0.05  # it drops: the next server is tried at once, not after a backoff


def test_a_server_that_drops_every_connection_at_once_still_backs_off() -> None:
    r = rotation([A])
    for _ in range(5):
        r.connected()
        wait = r.failed(up_for=0.1)
    assert wait >= 0.2 * 2**4 * 0.5


def test_a_connection_that_stayed_up_brings_the_backoff_back_to_its_minimum() -> None:
    r = rotation([A])
    for _ in range(6):
        r.failed()
    r.connected()
    assert r.failed(up_for=60.0) <= 0.3


def test_a_new_list_keeps_the_server_in_use_when_it_is_still_listed() -> None:
    r = rotation([A, B])
    current = r.current
    r.replace([C, current])
    assert r.current == current
    assert r.addresses == (C, current)


def test_a_new_list_without_the_server_in_use_starts_where_the_hash_puts_the_client() -> None:
    r = rotation([A], "node-y")
    r.replace([B, C])
    assert r.current == (B, C)[start_index("node-y", 2)]


def test_an_empty_list_is_refused() -> None:
    with pytest.raises(AddressError):
        rotation([])
