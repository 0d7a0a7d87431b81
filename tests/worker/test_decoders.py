"""Every decoder of what a node receives either returns a valid object or raises its own
error: assignment sets, routing tables (and the ingress ports and names taken from them), DNS
queries and the peer names a PROXY header is written from. Arbitrary values, mutated valid
messages and oversized input never raise anything else, and the live handlers count a
rejection and carry on."""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.model import Assignment, AssignmentError, parse_configs, parse_secrets
from agent.model import check_table as _check
from agent.net.agent import NetAgent
from agent.net.dns import DnsError, parse_query, reject
from agent.net.errors import MeshError
from agent.net.mesh import parse_ingress
from agent.net.tcp import proxy_header
from broker.errors import EnvelopeError
from tests.manager.test_decoders import _maybe, mutate, values
from tests.worker.helpers import assignment

GOOD_ASSIGNMENT = assignment("t1").to_dict()

GOOD_TABLE: dict[str, Any] = {
    "node": "n1",
    "version": "5c0f7e2a9b41d3e8",
    "networks": {
        "net-backend": {
            "name": "shop_backend",
            "subnet": "10.0.1.0/24",
            "gateway": "10.0.1.1",
            "vni": 4097,
            "local": {"t1": "10.0.1.3"},
            "remote": [
                {
                    "task": "t2",
                    "address": "10.0.1.4",
                    "node": "n2",
                    "via": ["192.0.2.7"],
                    "reachable": True,
                },
            ],
            "vips": [{"service": "api", "vip": "10.0.1.2", "backends": ["10.0.1.3"]}],
            "dns": {"api": ["10.0.1.2"], "tasks.api": ["10.0.1.3", "10.0.1.4"]},
        },
    },
    "ingress": {
        "subnet": "10.254.0.0/16",
        "gateway": "10.254.0.1",
        "vni": 4096,
        "node_address": "10.254.0.9",
        "local": {"t1": "10.254.0.3"},
        "remote": [],
        "ports": [
            {
                "protocol": "tcp",
                "published": 8080,
                "target": 80,
                "service": "api",
                "vip": "10.254.0.2",
                "proxy_protocol": False,
                "backends": [
                    {
                        "task": "t2",
                        "address": "10.254.0.4",
                        "node": "n2",
                        "via": ["192.0.2.7"],
                        "reachable": True,
                    }
                ],
            },
        ],
    },
    "host_ports": [
        {
            "task": "t1",
            "service": "api",
            "protocol": "tcp",
            "published": 9000,
            "target": 9000,
            "proxy_protocol": False,
            "address": "10.0.1.3",
        },
    ],
    "tasks": {"t1": [{"network": "net-backend", "address": "10.0.1.3"}]},
}


# --- assignment sets --------------------------------------------------------------------------


@settings(max_examples=400)
@given(values)
def test_an_assignment_from_any_value_is_an_assignment_or_an_assignment_error(obj: object) -> None:
    with _maybe(AssignmentError):
        a = Assignment.from_dict(obj)
        assert Assignment.from_dict(a.to_dict()) == a


@settings(max_examples=400)
@given(st.data())
def test_mutated_assignments_are_an_assignment_or_an_assignment_error(
    data: st.DataObject,
) -> None:
    with _maybe(AssignmentError):
        Assignment.from_dict(mutate(GOOD_ASSIGNMENT, data))


@settings(max_examples=400)
@given(st.data())
def test_mutated_task_specs_are_an_assignment_or_an_assignment_error(
    data: st.DataObject,
) -> None:
    spec = GOOD_ASSIGNMENT["spec"]
    part = data.draw(st.sampled_from(sorted(k for k in spec if isinstance(spec[k], dict))))
    obj = dict(GOOD_ASSIGNMENT, spec=dict(spec, **{part: mutate(spec[part], data)}))
    with _maybe(AssignmentError):
        Assignment.from_dict(obj)


@settings(max_examples=300)
@given(values)
def test_secret_and_config_lists_from_any_value_parse_or_raise_assignment_error(
    obj: object,
) -> None:
    with _maybe(AssignmentError):
        parse_secrets(obj)
    with _maybe(AssignmentError):
        parse_configs(obj)


def test_an_oversized_assignment_set_is_read_in_bounded_time() -> None:
    raw = [dict(GOOD_ASSIGNMENT, task_id=f"t{i}") for i in range(5000)]
    start = time.monotonic()
    parsed = [Assignment.from_dict(r) for r in raw]
    assert len(parsed) == 5000 and time.monotonic() - start < 10


# --- routing tables ---------------------------------------------------------------------------


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[NetAgent]:
    a = NetAgent(
        "n1", underlay=lambda: "192.0.2.1", kernel=None, dns_port=0, resolv_conf=tmp_path / "none"
    )
    yield a
    await a.close()


def use_table(a: NetAgent, table: object) -> None:
    """What the agent does with a table _check accepted: none of it may raise."""
    assert isinstance(table, dict)
    a.table = table
    a._index_names()
    a._state(table, "192.0.2.1")
    a._state(table, "2001:db8::1")
    with _maybe(MeshError):
        parse_ingress({"ingress": a._ports(table)})
    for task_address in ("10.0.1.3", "10.254.0.3", "1.2.3.4"):
        a.lookup(task_address, "api")


def deep_mutate(table: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """``table`` with one value somewhere inside replaced, removed, or a key added."""
    out = copy.deepcopy(table)
    node: Any = out
    while True:
        if isinstance(node, dict) and node:
            key = data.draw(st.sampled_from(sorted(node, key=str)))
        elif isinstance(node, list) and node:
            key = data.draw(st.integers(0, len(node) - 1))
        else:
            return out
        child = node[key]
        if not isinstance(child, dict | list) or not child or data.draw(st.booleans()):
            if isinstance(node, dict) and data.draw(st.booleans()):
                del node[key]
            else:
                node[key] = data.draw(values)
            return out
        node = child


def test_the_example_table_is_accepted() -> None:
    assert _check(GOOD_TABLE) is None


@settings(max_examples=500, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
async def test_a_mutated_routing_table_is_refused_or_applies_without_error(
    agent: NetAgent, data: st.DataObject
) -> None:
    table = deep_mutate(GOOD_TABLE, data)
    before = agent.rejected
    await agent.on_table(table)
    if _check(table) is None:
        use_table(agent, table)
    else:
        assert agent.rejected == before + 1


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values)
async def test_a_routing_table_from_any_value_is_refused_or_applies_without_error(
    agent: NetAgent, obj: object
) -> None:
    await agent.on_table(obj)
    if _check(obj) is None:
        use_table(agent, obj)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("vni", float("inf")),
        ("vni", float("nan")),
        ("vni", 2**40),
        ("vni", -1),
        ("subnet", 10),
        ("gateway", b"\x00"),
    ],
)
async def test_out_of_range_network_fields_are_counted_rejections(
    agent: NetAgent, where: str, value: object
) -> None:
    table = copy.deepcopy(GOOD_TABLE)
    table["networks"]["net-backend"][where] = value
    await agent.on_table(table)
    assert agent.rejected == 1 and agent.table == {}


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("published", float("inf")),
        ("published", 70000),
        ("target", float("-inf")),
        ("target", 0),
        ("published", "80"),
    ],
)
async def test_out_of_range_ports_are_counted_rejections(
    agent: NetAgent, where: str, value: object
) -> None:
    table = copy.deepcopy(GOOD_TABLE)
    table["ingress"]["ports"][0][where] = value
    await agent.on_table(table)
    assert agent.rejected == 1 and agent.table == {}


async def test_a_remote_peer_with_a_malformed_via_is_a_counted_rejection(agent: NetAgent) -> None:
    table = copy.deepcopy(GOOD_TABLE)
    table["networks"]["net-backend"]["remote"][0]["via"] = 7
    await agent.on_table(table)
    assert agent.rejected == 1 and agent.table == {}


# --- DNS --------------------------------------------------------------------------------------


@settings(max_examples=1000)
@given(st.binary(max_size=600))
def test_a_dns_query_from_any_bytes_is_a_query_or_a_dns_error(data: bytes) -> None:
    try:
        q = parse_query(data)
    except DnsError as exc:
        answer = reject(data, exc.rcode)
        assert answer is None or len(answer) == 12
        return
    assert len(q.name) <= 255 * 4


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=32), st.integers(0, 64), st.booleans())
def test_mutated_dns_queries_are_a_query_or_a_dns_error(noise: bytes, at: int, cut: bool) -> None:
    good = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03api\x00\x00\x01\x00\x01"
    assert parse_query(good).name == "api"
    at %= len(good)
    data = good[:at] if cut else good[:at] + noise + good[at + len(noise) :]
    with _maybe(DnsError):
        parse_query(data)


def test_an_oversized_dns_message_is_read_in_bounded_time() -> None:
    data = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x3f" + b"a" * 63
    start = time.monotonic()
    with pytest.raises(DnsError):
        parse_query(data * 1000 + b"\x00" * 65535)
    assert time.monotonic() - start < 1


# --- the PROXY header -------------------------------------------------------------------------


peer = (
    st.none()
    | st.tuples(
        st.sampled_from(["10.0.0.1", "::1", "::ffff:10.0.0.2", "fe80::1%eth0", "x", ""])
        | st.text(),
        st.integers(-1, 70000) | st.text(max_size=5),
    )
    | st.tuples()
    | st.lists(values, max_size=3).map(tuple)
)


@settings(max_examples=500)
@given(peer, peer)
def test_a_proxy_header_from_any_peer_names_is_one_ascii_line(client: Any, local: Any) -> None:
    line = proxy_header(client, local)
    assert line.startswith(b"PROXY ") and line.endswith(b"\r\n") and line.count(b"\r\n") == 1
    assert len(line) <= 107  # the PROXY protocol v1 maximum
    if not line.startswith(b"PROXY UNKNOWN"):
        fields = line[:-2].split(b" ")
        assert len(fields) == 6 and all(0 <= int(p) <= 65535 for p in fields[4:])


# --- the live assignment handler ------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.data())
async def test_the_assignment_handler_applies_or_counts_a_rejection_and_keeps_going(
    data: st.DataObject,
) -> None:
    import tempfile

    from tests.worker.test_secrets import node_agent

    good = {"version": 5, "tasks": [GOOD_ASSIGNMENT], "secrets": [], "configs": []}
    with tempfile.TemporaryDirectory(prefix="fix-fuzz-") as tmp:
        agent, session = node_agent(Path(tmp))
        body = deep_mutate(good, data) if data.draw(st.booleans()) else data.draw(values)
        try:
            await session.deliver(body if isinstance(body, dict) else {"version": body})
        except EnvelopeError:
            return  # not even an envelope (int map keys): the session rejects it first
        applied = session.rejections.total == 0
        assert not applied or agent.assign_version == body["version"]  # type: ignore[index]
        assert applied or agent.assign_version == -1  # a refused set changes nothing
        before = session.rejections.total
        await session.deliver({**good, "version": 2**62})  # a good set still applies afterwards
        assert agent.assign_version == 2**62 and session.rejections.total == before
