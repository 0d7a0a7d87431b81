"""The routing mesh's userspace proxy against docker-proxy and a direct connection.

    python bench/mesh.py [--connections 64] [--duration 10] [--warmup 1] [--rounds 1]
                         [--new-connections] [--no-docker-proxy] [--one-backend-process]

Starts three tiny HTTP/1.1 backends (one process each, like three containers, or all in one
process with ``--one-backend-process``; keep-alive, a fixed 13-byte body), then
measures requests per second and latency percentiles of a closed-loop load (N connections,
each sending its next request when the previous answer arrived) against:

  direct         backend 1, no proxy in between
  docker-proxy   /usr/sbin/docker-proxy (what `docker run -p` starts) to backend 1
  mesh 1         shoal's PortProxy (agent/net/proxy.py, its own process) to backend 1
  mesh 3         shoal's PortProxy, round robin over the three backends
  mesh 3 pp      the same with the PROXY protocol header (backends skip the line)

With ``--new-connections`` every request opens its own connection (``Connection: close``), which
measures the proxy's accept-and-dial path instead of its forwarding. The load generator is an
asyncio protocol in this process (wrk is not installed here); it shares the machine's cores with
the proxies and backends, so compare rows of one run, not figures across machines. The proxy's
CPU time over the measured window is shown as a share of one core.

Target: mesh >= docker-proxy in requests/s, and p99 no worse.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"
BODY = b"Hello, world\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
)
CLOSING = RESPONSE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: shoal-bench\r\n\r\n"
REQUEST_CLOSE = REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)


# --- roles run in child processes ---------------------------------------------------------------


class HttpBackend(asyncio.Protocol):
    """Answers every request (GET, no body) with RESPONSE; skips a PROXY protocol line."""

    def __init__(self) -> None:
        self.buffer = b""
        self.first = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if self.first and buffer.startswith(b"PROXY "):
            end = buffer.find(b"\r\n")
            if end < 0:
                self.buffer = buffer
                return
            buffer = buffer[end + 2 :]
        self.first = False
        count = buffer.count(b"\r\n\r\n")
        if not count:
            self.buffer = buffer
            return
        self.buffer = buffer[buffer.rindex(b"\r\n\r\n") + 4 :]
        if b"Connection: close" in buffer:
            self.transport.write(CLOSING)
            self.transport.close()
        else:
            self.transport.write(RESPONSE * count)


async def serve_backends(ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    for port in ports:
        await loop.create_server(HttpBackend, HOST, port, backlog=1024)
    await asyncio.Event().wait()


async def serve_proxy(port: int, backends: list[int], proxy_protocol: bool) -> None:
    from agent.net.balancer import Backend
    from agent.net.proxy import PortProxy

    proxy = PortProxy(
        port,
        host=HOST,
        backends=[Backend(HOST, p) for p in backends],
        proxy_protocol=proxy_protocol,
    )
    async with proxy:
        await asyncio.Event().wait()


# --- load ---------------------------------------------------------------------------------------


@dataclass
class Result:
    requests: int
    seconds: float
    latencies: list[float]
    errors: int
    cpu: float | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


class KeepAlive(asyncio.Protocol):
    def __init__(self, load: Load) -> None:
        self.load = load
        self.got = 0
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        self.sent_at = time.perf_counter()
        self.transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        size = len(RESPONSE)
        while self.got >= size:
            self.got -= size
            now = time.perf_counter()
            self.load.done(now - self.sent_at, now)
            if now < self.load.stop_at:
                self.send()
            else:
                self.transport.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.ended()


class OneShot(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[int]) -> None:
        self.got = 0
        self.result = done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(REQUEST_CLOSE)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.got += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.result.done():
            self.result.set_result(self.got)


class Load:
    def __init__(self, start_at: float, stop_at: float) -> None:
        self.start_at = start_at
        self.stop_at = stop_at
        self.latencies: list[float] = []
        self.errors = 0
        self.open = 0
        self.finished = asyncio.get_running_loop().create_future()

    def done(self, latency: float, now: float) -> None:
        if self.start_at <= now <= self.stop_at:
            self.latencies.append(latency)

    def ended(self) -> None:
        self.open -= 1
        if self.open == 0 and not self.finished.done():
            self.finished.set_result(None)


async def keep_alive_load(port: int, connections: int, warmup: float, duration: float) -> Result:
    loop = asyncio.get_running_loop()
    start = time.perf_counter() + warmup
    load = Load(start, start + duration)
    for _ in range(connections):
        load.open += 1
        await loop.create_connection(lambda: KeepAlive(load), HOST, port)
    await asyncio.wait_for(load.finished, warmup + duration + 30)
    return Result(len(load.latencies), duration, load.latencies, load.errors)


async def new_connection_load(
    port: int, connections: int, warmup: float, duration: float
) -> Result:
    loop = asyncio.get_running_loop()
    start = time.perf_counter() + warmup
    stop = start + duration
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while (began := time.perf_counter()) < stop:
            done: asyncio.Future[int] = loop.create_future()
            try:
                await loop.create_connection(partial(OneShot, done), HOST, port)
                got = await done
            except OSError:
                errors += 1
                continue
            now = time.perf_counter()
            if got != len(CLOSING):
                errors += 1
            elif start <= now <= stop:
                latencies.append(now - began)

    await asyncio.gather(*(worker() for _ in range(connections)))
    return Result(len(latencies), duration, latencies, errors)


# --- orchestration ------------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind((HOST, 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.02)
    raise SystemExit(f"nothing listens on {HOST}:{port} after {timeout} s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def role(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--role", *args], cwd=ROOT)


def start_docker_proxy(path: str, port: int, backend: int) -> subprocess.Popen[bytes]:
    """docker-proxy as dockerd starts it: it reports "0\n" (or "1\n<error>") on fd 3."""
    r, w = os.pipe()
    argv = [path, "-proto", "tcp", "-host-ip", HOST, "-host-port", str(port)]
    argv += ["-container-ip", HOST, "-container-port", str(backend)]
    child = subprocess.Popen(argv, pass_fds=(3,), preexec_fn=lambda: os.dup2(w, 3))
    os.close(w)
    with os.fdopen(r, "rb") as status:
        answer = status.read()
    if not answer.startswith(b"0"):
        child.kill()
        raise SystemExit(f"docker-proxy failed: {answer.decode(errors='replace')}")
    return child


def measure(name: str, port: int, pid: int | None, args: argparse.Namespace) -> Result:
    wait_listening(port)
    load = new_connection_load if args.new_connections else keep_alive_load
    before = cpu_seconds(pid) if pid else 0.0
    result = asyncio.run(load(port, args.connections, args.warmup, args.duration))
    if pid:
        result.cpu = (cpu_seconds(pid) - before) / (args.warmup + args.duration)
    cpu = f"{result.cpu * 100:5.0f}%" if result.cpu is not None else "     -"
    print(
        f"{name:<14} {result.rate:>9.0f} {result.percentile(0.5):>8.2f} "
        f"{result.percentile(0.99):>8.2f} {result.percentile(0.999):>8.2f} {cpu} "
        f"{result.errors:>6}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--new-connections", action="store_true")
    parser.add_argument("--no-docker-proxy", action="store_true")
    parser.add_argument(
        "--one-backend-process",
        action="store_true",
        help="serve the three backends from one process (isolates the proxy's own cost)",
    )
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role:
        what, port, *rest = args.role
        if what == "backend":
            asyncio.run(serve_backends([int(port), *map(int, rest)]))
        else:
            pp = rest[0] == "pp"
            asyncio.run(serve_proxy(int(port), [int(p) for p in rest[1:]], pp))
        return

    docker_proxy = shutil.which("docker-proxy") or "/usr/sbin/docker-proxy"
    use_docker = not args.no_docker_proxy and os.access(docker_proxy, os.X_OK)
    ports = free_ports(8)
    backends, (dp_port, mesh1, mesh3, mesh3pp) = ports[:3], ports[3:7]
    if args.one_backend_process:
        children = [role("backend", *map(str, backends))]
    else:
        children = [role("backend", str(p)) for p in backends]
    mode = "new connection per request" if args.new_connections else "keep-alive"
    print(
        f"{args.connections} connections, {mode}, {args.duration:.0f} s after {args.warmup:.0f} s"
        f" warm-up, {os.cpu_count()} cores; docker-proxy: "
        f"{docker_proxy if use_docker else 'not used'}"
    )
    try:
        servers: list[tuple[str, int, subprocess.Popen[bytes] | None]] = [
            ("direct", backends[0], None)
        ]
        if use_docker:
            dp = start_docker_proxy(docker_proxy, dp_port, backends[0])
            children.append(dp)
            servers.append(("docker-proxy", dp_port, dp))
        for name, port, pp, to in (
            ("mesh 1", mesh1, "plain", backends[:1]),
            ("mesh 3", mesh3, "plain", backends),
            ("mesh 3 pp", mesh3pp, "pp", backends),
        ):
            child = role("proxy", str(port), pp, *map(str, to))
            children.append(child)
            servers.append((name, port, child))
        for p in backends:
            wait_listening(p)
        heads = ("req/s", "p50 ms", "p99 ms", "p99.9")
        print(f"{'':<14} " + " ".join(f"{h:>8}" for h in heads) + f" {'cpu':>6} {'errors':>6}")
        results: dict[str, list[Result]] = {name: [] for name, _, _ in servers}
        for _ in range(args.rounds):
            for name, port, server in servers:
                results[name].append(measure(name, port, server.pid if server else None, args))
        if args.rounds > 1:
            print(f"medians of {args.rounds} rounds:")
            for name, runs in results.items():
                rate = statistics.median(r.rate for r in runs)
                p99 = statistics.median(r.percentile(0.99) for r in runs)
                print(f"{name:<14} {rate:>8.0f} req/s  p99 {p99:.2f} ms")
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(10)


if __name__ == "__main__":
    main()
