"""`shoal swarm join` takes one broker address or a clustered broker's servers, comma-separated."""

from __future__ import annotations

import pytest

from agent.join import parse_broker_urls
from agent.model.errors import ShoalError


def test_one_address_is_one_server() -> None:
    assert parse_broker_urls("mqtts://10.0.0.1:8883") == [("10.0.0.1", 8883)]


def test_comma_separated_addresses_are_every_server_in_order() -> None:
    got = parse_broker_urls("mqtts://a:8883, mqtts://b:8884,c")
    assert got == [("a", 8883), ("b", 8884), ("c", 8883)]


def test_a_server_listed_twice_is_kept_once() -> None:
    assert parse_broker_urls("mqtts://a:1,mqtts://b:2,mqtts://a:1") == [("a", 1), ("b", 2)]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("mqtts://a:1,,mqtts://b:2", "an empty address"),
        ("mqtts://a:1,", "an empty address"),
        ("mqtts://a:1,mqtt://b:2", "shoal only speaks TLS"),
        ("mqtts://a:1,mqtts://b:x", "bad broker address 'mqtts://b:x'"),
    ],
)
def test_a_bad_address_in_the_list_is_refused_naming_it(text: str, why: str) -> None:
    with pytest.raises(ShoalError, match=why):
        parse_broker_urls(text)
