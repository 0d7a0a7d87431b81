"""Load for the enrollment flood test: connections held open on the enrollment listener,
bad-token enrollment requests, a latency probe of the cluster through a manager's control
socket, and the manager's CPU and memory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from agent import control
from agent.cli.createflags import spec_from_create
from agent.cli.main import build_parser
from broker.envelope import Envelope, decode, encode
from broker.tls import client_context
from broker.topics import enroll_req, enroll_resp

__all__ = ["Held", "Latency", "Usage", "bad_enrollments", "hold_connections"]


@dataclass
class Held:
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    refused: int = 0

    async def release(self, n: int) -> None:
        for w in self.writers[:n]:
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()
        del self.writers[:n]


async def _open(port: int, ca: Path) -> asyncio.StreamWriter | None:
    """One TLS connection to the listener that stays open (None if the broker closed it)."""
    ctx = client_context(ca)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ctx), 10
        )
    except (OSError, ssl.SSLError, TimeoutError):
        return None
    try:  # a refused connection is closed at once: it reads EOF
        if await asyncio.wait_for(reader.read(1), 0.5) == b"":
            writer.close()
            return None
    except TimeoutError:
        return writer
    except (OSError, ssl.SSLError):
        return None
    return writer


async def hold_connections(port: int, ca: Path, n: int) -> Held:
    held = Held()
    for batch in range(0, n, 50):
        got = await asyncio.gather(*(_open(port, ca) for _ in range(batch, min(n, batch + 50))))
        for w in got:
            if w is None:
                held.refused += 1
            else:
                held.writers.append(w)
    return held


async def _bad_enrollment(port: int, ca: Path, client: str, request: dict[str, Any]) -> str:
    """Send one enrollment request with a bad token; the answer's error ("" if none came)."""
    try:
        async with aiomqtt.Client(
            "127.0.0.1", port, identifier=client, tls_context=client_context(ca), timeout=10
        ) as c:
            await c.subscribe(enroll_resp(client), qos=1)
            await c.publish(enroll_req(client), encode(Envelope("enroll", client, 1, request)), 1)
            async with asyncio.timeout(15):
                async for m in c.messages:
                    body = decode(bytes(m.payload)).body  # type: ignore[arg-type]
                    return "ACCEPTED" if body.get("ok") else str(body.get("error"))
    except (aiomqtt.MqttError, TimeoutError):
        return ""
    return ""


async def bad_enrollments(
    port: int, ca: Path, ca_digest: str, n: int, *, at_once: int = 50
) -> list[str]:
    """``n`` requests, each from a client of its own, with a token that names the swarm's CA
    but holds a wrong secret (so it passes every cheap check but the comparison)."""
    token = f"SHOAL-1-{ca_digest}-{'a' * 32}"
    request = {"token": token, "csr": b"not a csr", "hostname": "flood", "role": None}
    answers: list[str] = []
    for start in range(0, n, at_once):
        answers += await asyncio.gather(
            *(
                _bad_enrollment(port, ca, f"jflood{i}", request)
                for i in range(start, min(n, start + at_once))
            )
        )
    return answers


class Latency:
    """Times commands through a manager's control socket in a thread: `node-ls`, and every
    fifth one a `service-create` (no replicas), a write through Raft (unless not ``writes``)."""

    def __init__(self, manager: Path, *, writes: bool = True) -> None:
        self.socket = manager / "shoal.sock"
        self.writes = writes
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._n = 0

    def _spec(self) -> dict[str, Any]:
        self._n += 1
        argv = ["service", "create", "--detach", "--name", f"lat{self._n}", "--replicas", "0"]
        a = build_parser().parse_args([*argv, "shoal/busybox:latest"])
        return spec_from_create(a).to_dict()

    def _loop(self) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            args = {"spec": self._spec()} if self.writes and i % 5 == 0 else {}
            start = time.monotonic()
            control.call(self.socket, "service-create" if args else "node-ls", args, timeout=30)
            self.samples.append(time.monotonic() - start)
            time.sleep(0.02)

    def start(self) -> None:
        self.samples = []
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> list[float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
        return list(self.samples)


def percentile(samples: list[float], p: float) -> float:
    if len(samples) < 2:
        return samples[0] if samples else 0.0
    return statistics.quantiles(samples, n=100, method="inclusive")[int(p) - 1]


@dataclass(frozen=True)
class Usage:
    cpu_s: float
    rss_mb: float

    @classmethod
    def of(cls, pid: int) -> Usage:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(stat[11]) + int(stat[12])) / ticks
        rss = next(
            int(line.split()[1]) / 1024
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
        return cls(cpu, rss)
