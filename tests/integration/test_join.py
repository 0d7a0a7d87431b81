"""Joining over MQTT as a user would, with `shoal swarm join`: the happy paths and every
refusal, each with a one-line error and no half-joined state left behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from certs import JoinToken
from tests.harness import Cluster, free_port, shoal, wait_for

pytestmark = pytest.mark.integration


def _join(cluster: Cluster, data: Path, token: str, *extra: str, port: int | None = None):  # type: ignore[no-untyped-def]
    return shoal(
        "swarm",
        "join",
        "--token",
        token,
        "--hostname",
        data.name,
        "--timeout",
        "5",
        "--enroll-port",
        str(port or cluster.enroll_port),
        *extra,
        f"mqtts://127.0.0.1:{port or cluster.port}",
        data=data,
        check=False,
    )


def _refused(proc, data: Path) -> str:  # type: ignore[no-untyped-def]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert not (data / "node.json").exists()
    assert not (data / "tls").exists()
    assert not (data / "shoal.pid").exists()
    return lines[0]


def test_worker_and_manager_join_with_their_tokens(cluster: Cluster) -> None:
    w = cluster.join("w1")
    m = cluster.join("m2", role="manager")
    assert cluster.info(w)["role"] == "worker"
    assert cluster.info(m)["role"] == "manager"
    nodes = {n["hostname"]: n for n in cluster.node_ls()}
    assert set(nodes) == {"mgr", "w1", "m2"}
    assert nodes["w1"]["role"] == "worker" and nodes["m2"]["role"] == "manager"
    wait_for(lambda: all(n["status"] == "ready" for n in cluster.node_ls()), 5, "all ready")
    # the certificate carries the role the token granted
    out = shoal("info", "--format", "json", data=w).stdout
    assert '"connected": true' in out


def test_join_token_prints_the_join_command(cluster: Cluster) -> None:
    out = shoal("swarm", "join-token", "worker", data=cluster.manager).stdout
    assert "To add a worker to this swarm, run the following command:" in out
    assert re.search(r"shoal swarm join --token SHOAL-1-[0-9a-f]{64}-[a-z2-7]{32} mqtts://", out)
    quiet = shoal("swarm", "join-token", "-q", "manager", data=cluster.manager).stdout.strip()
    JoinToken.parse(quiet)


def test_wrong_token_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    real = JoinToken.parse(cluster.token())
    forged = str(JoinToken.new(real.ca_digest))
    line = _refused(_join(cluster, tmp_path / "n", forged), tmp_path / "n")
    assert "not valid for this swarm" in line and "shoal swarm join-token" in line


def test_rotated_token_is_refused_and_the_new_one_works(cluster: Cluster, tmp_path: Path) -> None:
    old = cluster.token()
    out = shoal("swarm", "join-token", "--rotate", "worker", data=cluster.manager).stdout
    assert "Successfully rotated worker join token." in out
    line = _refused(_join(cluster, tmp_path / "n", old), tmp_path / "n")
    assert "rotated" in line
    ok = _join(cluster, tmp_path / "n", cluster.token())
    assert ok.returncode == 0, ok.stderr
    cluster.nodes.append(tmp_path / "n")
    assert "This node joined a swarm as a worker." in ok.stdout


def test_token_for_the_other_role_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    line = _refused(
        _join(cluster, tmp_path / "n", cluster.token("worker"), "--role", "manager"), tmp_path / "n"
    )
    assert "this is a worker join token, but the node asked to join as a manager" in line
    line = _refused(
        _join(cluster, tmp_path / "n", cluster.token("manager"), "--role", "worker"), tmp_path / "n"
    )
    assert "this is a manager join token, but the node asked to join as a worker" in line


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("SWMTKN-1-abc-def", "must start with 'SHOAL-'"),
        ("SHOAL-2-" + "a" * 64 + "-" + "a" * 32, "version"),
        ("SHOAL-1-" + "a" * 63 + "-" + "a" * 32, "digest"),
        ("SHOAL-1-" + "a" * 64 + "-" + "1" * 32, "secret"),
        ("SHOAL-1-" + "a" * 64, "parts"),
    ],
)
def test_malformed_token_is_refused_before_contacting_anyone(
    tmp_path: Path, token: str, expected: str
) -> None:
    port = free_port()  # nothing listens there: the token is checked before any connection
    proc = shoal(
        "swarm",
        "join",
        "--token",
        token,
        f"mqtts://127.0.0.1:{port}",
        data=tmp_path / "n",
        check=False,
    )
    line = _refused(proc, tmp_path / "n")
    assert expected in line
    assert "cannot reach" not in line


def test_joiner_refuses_a_broker_whose_ca_does_not_match_the_token(
    cluster: Cluster, tmp_path: Path
) -> None:
    real = JoinToken.parse(cluster.token())
    other = str(JoinToken(ca_digest="0" * 64, secret=real.secret))
    log = cluster.manager / "broker" / "mosquitto.log"
    before = log.read_text()
    line = _refused(_join(cluster, tmp_path / "n", other), tmp_path / "n")
    assert "does not present the CA that the join token names" in line
    assert "Nothing was sent" in line
    # the broker saw a TLS connection but no MQTT client, so not even a CONNECT was sent
    new = log.read_text()[len(before) :]
    assert "New connection from" in new
    assert "New client connected" not in new


def test_unreachable_broker_is_reported(tmp_path: Path) -> None:
    port = free_port()
    proc = shoal(
        "swarm",
        "join",
        "--token",
        "SHOAL-1-" + "a" * 64 + "-" + "a" * 32,
        "--enroll-port",
        str(port),
        f"mqtts://127.0.0.1:{port - 1 if port > 1025 else port + 1}",
        data=tmp_path / "n",
        check=False,
    )
    line = _refused(proc, tmp_path / "n")
    assert "cannot reach the swarm's enrollment listener" in line


def test_joining_twice_is_refused(cluster: Cluster) -> None:
    w = cluster.join("w1")
    proc = _join(cluster, w, cluster.token())
    assert proc.returncode == 1 and "already part of a swarm" in proc.stderr


def test_leave_then_join_again(cluster: Cluster) -> None:
    w = cluster.join("w1")
    first_id = cluster.info(w)["node_id"]
    out = shoal("swarm", "leave", data=w).stdout
    assert "Node left the swarm." in out
    assert not (w / "node.json").exists()
    wait_for(
        lambda: {n["id"]: n["status"] for n in cluster.node_ls()}.get(first_id) == "down",
        5,
        "the left node to show as down",
    )
    w2 = cluster.join("w1")
    assert cluster.info(w2)["node_id"] != first_id


def test_manager_leave_needs_force(cluster: Cluster) -> None:
    proc = shoal("swarm", "leave", data=cluster.manager, check=False)
    assert proc.returncode == 1 and "--force" in proc.stderr
    assert cluster.info(cluster.manager)["connected"] is True
