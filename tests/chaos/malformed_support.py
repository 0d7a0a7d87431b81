"""Hostile payloads for the malformed-input chaos tests, and the cluster probes they share."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import msgpack

from broker.envelope import MAX_MESSAGE_BYTES, Envelope, decode, encode
from broker.errors import EnvelopeError
from tests.harness import Cluster, shoal, wait_for

__all__ = [
    "confused_envelopes",
    "converge",
    "daemon_alive",
    "garbage",
    "is_envelope",
    "nodes_view",
    "services_view",
]

# bodies of the wrong shape for every message type a manager or node reads
_BODIES: list[Any] = [
    None,
    1,
    -(2**63),
    2**64 - 1,
    1.5,
    float("inf"),
    "x",
    b"\x00" * 10,
    [],
    [None] * 50,
    {},
    {"status": 5},
    {"status": "ready", "hostname": ["x"], "role": {"r": 1}},
    {"tasks": "x"},
    {"tasks": [{"task_id": 1, "state": "running"}, None, {"task_id": "t" * 70}]},
    {"tasks": [{"task_id": "made-up", "state": "running", "message": "m" * 100_000}]},
    {"csr": "not bytes"},
    {"csr": b"-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n"},
    {"token": 7, "csr": b""},
    {"token": "SHOAL-1-" + "0" * 64 + "-" + "A" * 32, "csr": b"x", "hostname": "h"},
    {"token": "S" * 100_000, "csr": b"x" * 100_000},
    {"cmd": "node-rm", "args": {"node": "x"}},
    {"platform": {"os": ["x"]}, "resources": {"nano_cpus": -1}, "addresses": ["x"] * 100},
    {"v": 1, "t": "MsgApp", "to": "x", "fr": "y", "tm": 2**64 - 1},
    {"k": {"k": {"k": {"k": [[[[[[]]]]]]}}}},
]
_TYPES = ["state", "status", "describe", "heartbeat", "renew", "enroll", "control", "raft", "x"]


def confused_envelopes(sender: str) -> list[bytes]:
    """Valid envelopes whose type and body do not go together (or are unknown)."""
    out = []
    for i, body in enumerate(_BODIES):
        for typ in _TYPES:
            out.append(encode(Envelope(typ, sender, seq=i + 1, body=body, re=(i * 7) % 3)))
    return out


def garbage(sender: str, rng: random.Random) -> list[bytes]:
    """Bytes that are not envelopes, truncated and mutated ones, and oversized ones (2 MB, and
    one byte over the limit, which the broker itself drops)."""
    good = encode(Envelope("status", sender, 1, {"tasks": []}))
    out = [
        b"",
        b"\xc1",
        b"\x00" * 64,
        b"{}",
        json.dumps({"status": "ready"}).encode(),
        good[:-1],
        good[: len(good) // 2],
        good + b"\x00",
        msgpack.packb([1, "status", sender, 1, 0]),
        msgpack.packb([2, "status", sender, 1, 0, None]),
        b"\x96\x01\xa1t\xa1s\x01\x00" + b"\x91" * 100_000 + b"\xc0",
        b"\x96\x01\xa1t\xa1s\x01\x00\xdd\xff\xff\xff\xff",
        rng.randbytes(2_000_000),
        encode(Envelope("status", sender, 2, {"tasks": [{"task_id": "x" * 2_000_000}]})),
        b"\x00" * (MAX_MESSAGE_BYTES + 1),
    ]
    for _ in range(40):
        at = rng.randrange(len(good))
        out.append(good[:at] + rng.randbytes(rng.randrange(1, 16)) + good[at + 1 :])
    out += [rng.randbytes(rng.randrange(1, 300)) for _ in range(40)]
    return out


def is_envelope(payload: bytes) -> bool:
    try:
        decode(payload)
    except EnvelopeError:
        return False
    return True


def daemon_alive(data: Path) -> bool:
    try:
        pid = int((data / "shoal.pid").read_text().strip())
        return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)
    except (OSError, ValueError):
        return False


def _state(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    return "?"


def nodes_view(c: Cluster) -> list[tuple[str, ...]]:
    """What must not change: every node's id, hostname, role, status and availability."""
    return sorted(
        (n["id"], n["hostname"], n["role"], n["status"], n["availability"]) for n in c.node_ls()
    )


def services_view(c: Cluster) -> list[str]:
    out = shoal("service", "ls", "--format", "json", data=c.manager).stdout
    return sorted(json.loads(line)["name"] for line in out.splitlines() if line.strip())


def converge(c: Cluster, name: str, replicas: int, timeout: float = 30.0) -> float:
    """Seconds until ``name`` has ``replicas`` running tasks."""
    start = time.monotonic()

    def running() -> bool:
        out = shoal("service", "ps", "--format", "json", name, data=c.manager).stdout
        tasks = [json.loads(line) for line in out.splitlines()]
        live = [t for t in tasks if t["desired_state"] == "running" and t["state"] == "running"]
        return len(live) == replicas

    wait_for(running, timeout, f"{replicas} running tasks of {name}")
    return time.monotonic() - start
