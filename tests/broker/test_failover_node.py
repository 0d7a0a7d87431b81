"""A real node whose list of broker servers holds a dead one where it starts fails over to the
live one, and stays ready."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from agent.paths import process_alive
from broker.servers import start_index
from tests.harness import free_port, info_of, new_cluster, shoal, start_daemon, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_a_node_whose_first_broker_server_is_dead_joins_and_stays_ready(tmp_path: Path) -> None:
    dead = free_port()
    with new_cluster(tmp_path) as (c, _):
        live, gone = f"127.0.0.1:{c.port}", f"127.0.0.1:{dead}"
        data = tmp_path / "w1"
        shoal(
            "swarm", "join", "--token", c.token(), "--hostname", "w1", "--driver", "process",
            "--enroll-port", str(c.enroll_port), f"mqtts://{live},mqtts://{gone}", data=data,
        )  # fmt: skip
        c.nodes.append(data)
        node = json.loads((data / "node.json").read_text())
        assert node["broker_addresses"] == [live, gone]
        # put the dead server where this node starts, and start the node again
        pid = int((data / "shoal.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not process_alive(pid), 20, "the node's daemon to stop")
        order = [live, live]
        order[start_index(node["node_id"], 2)] = gone
        order[1 - start_index(node["node_id"], 2)] = live
        node["broker_addresses"] = order
        (data / "node.json").write_text(json.dumps(node))
        start_daemon(data)
        info = wait_for(
            lambda: (i := info_of(data)) and i.get("connected") and i,
            30,
            "the node connected to the live server",
        )
        assert info["Broker"] == live
        assert info["BrokerAddresses"] == order
        wait_for(
            lambda: any(n["hostname"] == "w1" and n["status"] == "ready" for n in c.node_ls()),
            30,
            "w1 ready in node ls",
        )
        assert info_of(data)["connects"] == 1  # type: ignore[index]
        restarted = (data / "shoal.log").read_text().rsplit("(worker) started", 1)[-1]
        assert f"left {gone} (" in restarted and f"trying {live}" in restarted
