"""The pieces of a swarm on a NATS cluster that need no server: the servers' plan, the
split configuration, the enrollment endpoint's frames."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.manager.nats_host import plan_servers
from agent.model.errors import ShoalError
from broker.enroll_wire import MAX_FRAME, FrameError, decode_frame, encode_frame, read_frame
from broker.nats_conf import NatsFiles, render_nats_server, render_nats_users


def test_local_servers_get_the_cluster_port_first_and_free_ports_for_the_rest() -> None:
    servers = plan_servers(3, [], mqtt_port=8883, free_ports=range(9000, 9009))
    assert [s.mqtt_port for s in servers] == [8883, 9004, 9007]
    assert {s.host for s in servers} == {"127.0.0.1"}
    assert len({p for s in servers for p in (s.client_port, s.cluster_port)}) == 6


def test_servers_on_hosts_need_one_distinct_host_each() -> None:
    servers = plan_servers(3, ["a", "b", "c"], mqtt_port=8883)
    assert [(s.host, s.mqtt_port) for s in servers] == [("a", 8883), ("b", 8883), ("c", 8883)]
    with pytest.raises(ShoalError, match="names 2 host"):
        plan_servers(3, ["a", "b"], mqtt_port=8883)
    with pytest.raises(ShoalError, match="named twice"):
        plan_servers(2, ["a", "a"], mqtt_port=8883)


def test_the_server_config_includes_the_users_file() -> None:
    files = NatsFiles(Path("/var/lib/shoal/broker/nats-0"))
    servers = plan_servers(3, [], mqtt_port=8883, free_ports=range(9000, 9009))
    text = render_nats_server(files, servers, 0, cluster_id="c1")
    assert text.rstrip().endswith('include "users.conf"')
    assert "authorization" not in text
    assert render_nats_users([]).count("authorization") == 1


def test_a_frame_round_trips_and_an_oversized_or_broken_one_is_refused() -> None:
    body = {"token": "t", "csr": b"\x00" * 10}
    frame = encode_frame(body)

    async def read(data: bytes) -> dict[str, object]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_frame(reader)

    assert asyncio.run(read(frame)) == body
    with pytest.raises(FrameError, match="over the"):
        asyncio.run(read((MAX_FRAME + 1).to_bytes(4, "big")))
    with pytest.raises(FrameError, match="middle of a frame"):
        asyncio.run(read(frame[:-1]))
    with pytest.raises(FrameError, match="map"):
        decode_frame(b"\x01")


def test_a_server_alone_has_no_cluster_block() -> None:
    files = NatsFiles(Path("/var/lib/shoal/broker/nats-0"))
    alone = plan_servers(1, [], mqtt_port=8883, free_ports=range(9000, 9003))
    assert "cluster:" not in render_nats_server(files, alone, 0, cluster_id="c1")
    three = plan_servers(3, [], mqtt_port=8883, free_ports=range(9000, 9009))
    assert "cluster:" in render_nats_server(files, three, 0, cluster_id="c1")
