"""The routing mesh (a published port) against Docker's ways of publishing one, end to end.

    python bench/ingress.py [--quick] [--connections 64] [--duration 10] [--threads 2]
                            [--warmup 1] [--rounds 1] [--no-swarm] [--no-docker]

Every row serves the same backend on the same Docker Engine: busybox httpd in
`shoal/busybox:latest`, run as

    sh -c 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8000 -h /www'

so each answer (13 bytes) names the container that gave it. The client connects to
127.0.0.1:PORT, the published port (picked free, below the ephemeral range, so that the clients'
own ports never hold it), and goes through whatever the mechanism puts there:

  shoal mesh      a one-node shoal swarm (its own broker on loopback, the docker driver;
                  bench/swarm_compare.py's `Shoal`), `service create --replicas 3 -p PORT:8000`.
                  A port published in ingress mode is served on every node by the node's
                  userspace proxy (agent/net/mesh.py, in the shoal daemon's process), which
                  forwards over the node's overlay bridge to the containers (`--network none`,
                  each given a veth by shoal); round robin over the 3 tasks.
  docker -p       `docker run -d -p PORT:8000` of one container: docker-proxy on loopback, one
                  backend (that is what `docker run -p` gives).
  swarm ingress   a one-node Docker Swarm (`docker swarm init --advertise-addr 127.0.0.1`),
                  `docker service create --replicas 3 -p PORT:8000` (the ingress network, IPVS);
                  the image is given by id so that Swarm does not try to pull it. It may not
                  answer at all on a given machine: after the tasks run it is probed for 20 s and
                  otherwise reported as "did not answer".
  swarm host      the same service with `--publish mode=host,published=PORT,target=8000` and 1
                  replica (host mode allows one task per node per port).

Each row is measured with wrk, a 1 s warm-up run and then
`wrk -t2 -c64 -d10s --latency http://127.0.0.1:PORT/`: requests/s and the 50% and 99% latency
of its distribution (median over `--rounds` runs), socket errors plus non-2xx answers, and the
CPU time of the process in the path over the measured run as a share of one core (the shoal
daemon, which holds the proxy; the docker-proxy processes of the port; "-" where the kernel
forwards). busybox httpd closes every connection after its answer, so every request is a new
connection: this measures the proxies' accept-and-dial path as much as their forwarding, and
httpd forks per connection, so the backends' CPU counts as well. Client, proxies and backends
share the machine's cores: compare rows of one run, not figures across machines.

busybox httpd listens with a short queue: at 64 connections every row loses SYNs at the
backends and its p99 is the kernel's 1 s SYN retransmission, whatever the proxy does (the p99
comparison is then a coin toss between ~1.0 and ~1.1 s). `--connections 8` stays below that and
measures the proxies' own latency.

Target: shoal mesh >= each other row in requests/s, and its p99 no worse. The table gives the
ratio of shoal's requests/s to each row's and whether the target is met against it.

Then the time from a task starting to it receiving traffic: with the service at 3 replicas and
a client hammering the published port (4 threads, a new connection per request, each answer's
hostname and arrival time recorded), `service scale web=4`; the new container is found (by the
service's labels), its start taken from `docker inspect -f '{{.State.StartedAt}}'` (RFC 3339,
nanoseconds, the host's clock) and compared with the first answer carrying its hostname. httpd's
own startup counts on both sides. Also shown: command to container start, and requests that
failed while scaling up and back down. Repeated `--rounds` times (scaled back to 3, the removed
task's container gone, between rounds), for shoal and for Swarm's ingress if it answered.

The shoal daemon is watched: this process makes itself a child subreaper, so the daemon becomes
its child once `shoal swarm init` exits, and a thread waits for it. Should it die, its row says
how (exit code or signal) instead of giving the figures of a dead port, with the daemon's
SIGPIPE disposition (read from /proc at start; it must be ignored, or the first write to a
connection its peer closed ends the daemon), `service ps`, the containers and the end of
shoal.log. A dead daemon's kernel devices and chains are removed with shoal's own teardown
(what `swarm leave` runs), unless another shoal daemon shares this network namespace.

`--quick` runs 3 s with 32 connections. The phases run one after the other (shoal, docker,
Swarm), each torn down before the next; every container, service, swarm and shoal daemon made
here is removed or stopped at the end, on failure and on Ctrl-C too. The engine must not be in a
swarm already (then the Swarm rows are skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import ctypes
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))

from swarm_compare import (
    IMAGE,
    Shoal,
    Side,
    Swarm,
    Timeout,
    docker,
    image_ref,
    machine,
    run,
    wait_until,
)

HOST = "127.0.0.1"
SERVE = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8000 -h /www"
COMMAND = ("sh", "-c", SERVE)
REQUEST = b"GET / HTTP/1.0\r\nHost: bench\r\nUser-Agent: shoal-bench\r\n\r\n"
SERVICE = "web"
HOST_SERVICE = "web-host"
REPLICAS = 3
PROBE = 20.0  # seconds of retries before a published port counts as not answering
CONVERGE = 120.0  # seconds allowed for a service to reach its replicas
FIRST_ANSWER = 30.0  # seconds a new task has to receive traffic
HAMMER_THREADS = 4
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}  # wrk's units, to ms


T0 = time.monotonic()


def say(text: str) -> None:
    print(f"  [{time.monotonic() - T0:6.1f} s] {text}", flush=True)


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    """wait_until, failing with what was waited for."""
    try:
        wait_until(pred, timeout)
    except Timeout:
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}") from None


def published_port() -> int:
    """A port free on every address, below the ephemeral range: the clients' own ports (tens of
    thousands per wrk run, lingering in TIME_WAIT) never take it before it is published."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for port in random.sample(range(max(1024, low - 12000), low), 500):
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


# --- the client side ---------------------------------------------------------------------------


def fetch(port: int, timeout: float) -> str | None:
    """GET / over a new connection; the body (a container's hostname), or None on failure."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(REQUEST)
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError:
        return None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[0].startswith(b"HTTP/") or status[1] != b"200":
        return None
    return body.decode(errors="replace").strip() or None


def answers(port: int, within: float) -> bool:
    """Whether the port gives a good answer within `within` seconds of retries."""
    deadline = time.monotonic() + within
    while True:
        if fetch(port, timeout=min(2.0, within)) is not None:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


class Hammer:
    """Threads doing GET / continuously, each on a new connection; the first arrival time
    (time.time_ns()) of an answer from each hostname, and counts of answers and failures."""

    def __init__(self, port: int, threads: int) -> None:
        self.port = port
        self.first: dict[str, int] = {}
        self.ok = 0
        self.failed = 0
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self.loop, daemon=True) for _ in range(threads)]

    def loop(self) -> None:
        while not self.halt.is_set():
            name = fetch(self.port, timeout=2.0)
            now = time.time_ns()
            with self.lock:
                if name is None:
                    self.failed += 1
                else:
                    self.ok += 1
                    self.first.setdefault(name, now)

    def seen(self, name: str) -> int | None:
        with self.lock:
            return self.first.get(name)

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return self.ok, self.failed

    def __enter__(self) -> Hammer:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        for t in self.threads:
            t.join(5)


# --- wrk -------------------------------------------------------------------------------------


@dataclass
class Load:
    rate: float
    p50: float  # ms
    p99: float  # ms
    requests: int
    errors: int
    cpu: float | None  # share of one core


def parse_wrk(out: str) -> Load:
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if rate is None:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{out}")
    latency: dict[str, float] = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m|h)\b", out, re.M):
        latency[pct] = float(value) * UNITS[unit]
    done = re.search(r"^\s*(\d+) requests in", out, re.M)
    errors = 0
    sockets = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sockets:
        errors += sum(int(x) for x in sockets.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    return Load(
        rate=float(rate.group(1)),
        p50=latency.get("50", float("nan")),
        p99=latency.get("99", float("nan")),
        requests=int(done.group(1)) if done else 0,
        errors=errors,
        cpu=None,
    )


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def docker_proxies(port: int) -> list[int]:
    """docker-proxy processes serving host port `port`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"docker-proxy") and str(port).encode() in argv:
            i = argv.index(str(port).encode())
            if i > 0 and argv[i - 1] == b"-host-port":
                pids.append(int(entry.name))
    return pids


def wrk(port: int, args: argparse.Namespace, pids: Callable[[], list[int]]) -> Load:
    url = f"http://{HOST}:{port}/"
    base = ["wrk", f"-t{args.threads}", f"-c{args.connections}"]
    if args.warmup > 0:
        run([*base, f"-d{args.warmup}s", url], timeout=args.warmup + 60)
    watched = pids()
    before = sum(cpu_seconds(p) for p in watched)
    t0 = time.monotonic()
    out = run([*base, f"-d{args.duration}s", "--latency", url], timeout=args.duration + 60)
    elapsed = time.monotonic() - t0
    load = parse_wrk(out)
    if watched:
        load.cpu = (sum(cpu_seconds(p) for p in watched) - before) / elapsed
    return load


# --- rows --------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    loads: list[Load] = field(default_factory=list)
    note: str = ""  # why there is no figure, or what happened after the figures

    @property
    def ok(self) -> bool:
        return bool(self.loads)

    def median(self, what: Callable[[Load], float]) -> float:
        return statistics.median(what(x) for x in self.loads)

    @property
    def rate(self) -> float:
        return self.median(lambda x: x.rate)

    @property
    def p50(self) -> float:
        return self.median(lambda x: x.p50)

    @property
    def p99(self) -> float:
        return self.median(lambda x: x.p99)

    @property
    def errors(self) -> int:
        return sum(x.errors for x in self.loads)

    @property
    def cpu(self) -> float | None:
        cpus = [x.cpu for x in self.loads if x.cpu is not None]
        return statistics.median(cpus) if cpus else None


@dataclass
class Trace:
    """One scale 3->4: command to container start, start to first answer, failures."""

    to_start: float | None = None
    to_traffic: float | None = None
    failed_up: int = 0
    failed_down: int = 0
    note: str = ""


def measure(
    row: Row,
    port: int,
    args: argparse.Namespace,
    pids: Callable[[], list[int]],
    check: Callable[[], None] = lambda: None,
) -> None:
    for _ in range(args.rounds):
        row.loads.append(wrk(port, args, pids))
        check()
    say(f"{row.name}: {cells(row)}")


def rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time such as Docker's StartedAt
    (2026-11-25T20:20:55.11046945Z: up to 9 fraction digits, trailing zeros dropped)."""
    m = re.fullmatch(
        r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9})\d*)?([Zz]|[+-]\d\d:\d\d)",
        text.strip(),
    )
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(x) for x in m.groups()[:6])
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    nanos = int((m.group(7) or "").ljust(9, "0"))
    zone = m.group(8)
    offset = 0
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return (seconds - offset) * 1_000_000_000 + nanos


def start_to_traffic(
    label: str, side: Side, port: int, rounds: int, check: Callable[[], None] = lambda: None
) -> list[Trace]:
    """Scale SERVICE 3->4 under load, `rounds` times; see the module's docstring."""
    traces: list[Trace] = []
    with Hammer(port, HAMMER_THREADS) as hammer:
        wait_for(lambda: hammer.counts()[0] > 0, PROBE, "a first answer to the client loop")
        for _ in range(rounds):
            check()
            traces.append(scale_round(side, hammer))
            say(f"{label} scale 3->4: {trace_cells(traces[-1])}")
    return traces


def scale_round(side: Side, hammer: Hammer) -> Trace:
    """One scale 3->4 under the hammer, then back to 3 and the removed task's container gone."""
    trace = Trace()
    old = set(side.containers(SERVICE, all_=False))

    def added() -> list[str]:
        return sorted(set(side.containers(SERVICE, all_=False)) - old)

    _, failed0 = hammer.counts()
    issued = time.time_ns()
    side.scale(SERVICE, REPLICAS + 1)
    try:
        wait_until(lambda: bool(added()), 60)
        fmt = "{{.Config.Hostname}} {{.State.StartedAt}}"
        hostname, started_at = docker("inspect", "-f", fmt, added()[0]).split()
        started = rfc3339_ns(started_at)
        trace.to_start = (started - issued) / 1e9
        try:
            wait_until(lambda: hammer.seen(hostname) is not None, FIRST_ANSWER)
        except Timeout:
            trace.note = f"no answer from {hostname} within {FIRST_ANSWER:.0f} s"
        first = hammer.seen(hostname)
        if first is not None:
            trace.to_traffic = (first - started) / 1e9
    except Timeout:
        trace.note = "no new container within 60 s"
    _, failed1 = hammer.counts()
    trace.failed_up = failed1 - failed0

    def back() -> bool:
        return (
            side.converged(SERVICE, REPLICAS)
            and len(side.containers(SERVICE, all_=False)) == REPLICAS
        )

    side.scale(SERVICE, REPLICAS)
    wait_for(back, CONVERGE, f"{SERVICE} back at {REPLICAS} running containers")
    time.sleep(0.5)  # the removed task's last connections end
    _, failed2 = hammer.counts()
    trace.failed_down = failed2 - failed1
    return trace


# --- the three orchestrations ------------------------------------------------------------------


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux): the shoal daemon, once `swarm init` exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def sigpipe_of(pid: int) -> str:
    """SIGPIPE's disposition in a process: ignored, blocked, handled or default (kills)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "unknown"
    masks = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("SigBlk", "SigIgn", "SigCgt"):
            masks[key] = int(value.strip(), 16)
    bit = 1 << (signal.SIGPIPE - 1)
    for key, name in (("SigIgn", "ignored"), ("SigBlk", "blocked"), ("SigCgt", "handled")):
        if masks.get(key, 0) & bit:
            return name
    return "default (a write to a closed connection kills the process)"


def owned(pid: int, data: Path) -> bool:
    """Whether `pid` is a live process started for this data directory."""
    try:
        return str(data) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def shoal_daemons_here(but: int) -> list[int]:
    """Other shoal daemons in this process's network namespace."""
    mine = os.readlink("/proc/self/ns/net")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == but:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"agent.cli" in argv and b"daemon" in argv and os.readlink(entry / "ns/net") == mine:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


class WatchedShoal(Shoal):
    """swarm_compare's one-node shoal swarm, its daemon watched.

    This process is a child subreaper, so the daemon becomes its child when `swarm init` (which
    starts it) exits, and a thread waits for it: if it dies, how (exit code or signal) is known.
    If the daemon died,
    stop() ends the broker by its recorded pid and removes the kernel devices and chains the
    daemon made, with shoal's own teardown (what `swarm leave` runs), unless another shoal daemon
    shares this network namespace (that teardown removes every shoal device in it).
    """

    def __init__(self, root: Path) -> None:
        super().__init__(root, "cli", "5s")
        self.pid = 0
        self.broker = 0
        self.node_id = ""
        self.sigpipe = ""
        self.ended: str | None = None  # how the daemon ended, once it has
        self.leaving = False

    def start(self) -> None:
        super().start()
        info = self.call("info")
        self.node_id = str(info["node_id"])
        self.broker = int(info.get("broker_pid") or 0)
        self.pid = int((self.data / "shoal.pid").read_text().strip())
        self.sigpipe = sigpipe_of(self.pid)
        threading.Thread(target=self.wait_daemon, daemon=True).start()

    def wait_daemon(self) -> None:
        try:
            res = os.waitid(os.P_PID, self.pid, os.WEXITED)
        except ChildProcessError:  # not adopted: only that it is gone can be known
            while owned(self.pid, self.data):
                time.sleep(0.2)
            self.ended = "ended (exit status unknown)"
            return
        if res is None:
            self.ended = "ended"
        elif res.si_code == os.CLD_EXITED:
            self.ended = f"exited with code {res.si_status}"
        else:
            name = signal.Signals(res.si_status).name
            core = ", core dumped" if res.si_code == os.CLD_DUMPED else ""
            self.ended = f"was killed by {name} ({res.si_status}{core})"

    @property
    def died(self) -> str | None:
        """How the daemon ended, if it did before being asked to."""
        return None if self.leaving else self.ended

    def check(self) -> None:
        if self.died:
            raise RuntimeError(f"the shoal daemon (pid {self.pid}) {self.died}")

    def stop(self) -> None:
        crashed = self.died is not None
        self.leaving = True
        if crashed:
            self.services.clear()  # nothing would remove them: their containers go below
        super().stop()
        for pid in (self.pid, self.broker):
            if pid and owned(pid, self.data):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 5
                while owned(pid, self.data) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if owned(pid, self.data):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
        if crashed and self.node_id:
            others = shoal_daemons_here(but=self.pid)
            if others:
                say(
                    f"shoal: other shoal daemons ({others}) share this network namespace:"
                    " the dead daemon's devices are left"
                )
            else:
                from agent.net.linux import LinuxNetwork

                asyncio.run(LinuxNetwork(self.node_id).remove_all())
        self.node_id = ""


def shoal_running(shoal: WatchedShoal, n: int) -> bool:
    """Whether n tasks run; fails at once on a rejected or failed task (it says why)."""
    shoal.check()
    live = shoal.live(SERVICE)
    for task in live:
        if task["state"] in ("rejected", "failed"):
            why = task.get("error") or task.get("message") or "no reason given"
            raise RuntimeError(f"task {task['name']} {task['state']}: {why}")
    return len(live) == n and all(t["state"] == "running" for t in live)


def shoal_phase(
    shoal: WatchedShoal, port: int, args: argparse.Namespace
) -> tuple[Row, list[Trace] | None]:
    row = Row("shoal mesh")
    try:
        try:
            shoal.start()
        except Timeout:
            raise RuntimeError("timed out after 60 s waiting for the node to be ready") from None
        say(
            f"shoal: swarm up, cluster {shoal.cluster}; daemon pid {shoal.pid}, "
            f"SIGPIPE {shoal.sigpipe}"
        )
        shoal.services.add(SERVICE)
        shoal.cli(
            "service",
            "create",
            "--detach",
            "--name",
            SERVICE,
            "--replicas",
            str(REPLICAS),
            "-p",
            f"{port}:8000",
            IMAGE,
            *COMMAND,
        )
        wait_for(lambda: shoal_running(shoal, REPLICAS), CONVERGE, "3 running tasks")
        say(f"shoal: {REPLICAS} tasks running, port {port}")
        if not answers(port, PROBE):
            shoal.check()
            row.note = "did not answer"
            say(f"shoal: {HOST}:{port} did not answer within {PROBE:.0f} s of its tasks running")
            shoal_diagnostics(shoal)
            return row, None
        measure(row, port, args, lambda: [shoal.pid], shoal.check)
    except RuntimeError as exc:
        say(f"shoal: {exc}")
        if not shoal.died:
            shoal_diagnostics(shoal)
            raise
        row.note = f"the daemon {shoal.died}"
        got = ", ".join(f"{x.rate:.0f} req/s, {x.errors} errors" for x in row.loads)
        if got:
            row.note += f" (wrk saw {got})"
        row.loads.clear()
        shoal_diagnostics(shoal)
        return row, None
    try:
        return row, start_to_traffic("shoal mesh", shoal, port, args.rounds, shoal.check)
    except (RuntimeError, Timeout, subprocess.SubprocessError) as exc:
        say(f"shoal: {failure(exc)}")
        shoal_diagnostics(shoal)
        if shoal.died:
            row.note = f"the daemon {shoal.died} after the wrk run(s), which it served"
        return row, [Trace(note=f"the daemon {shoal.died}" if shoal.died else failure(exc))]


def shoal_diagnostics(shoal: WatchedShoal) -> None:
    """What shoal and the engine say about the service, and the end of the daemon's log."""
    if shoal.died:
        print(f"  shoal daemon pid {shoal.pid} {shoal.died}; its SIGPIPE was {shoal.sigpipe}")
    print(f"  $ shoal service ps {SERVICE}")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "--data-dir",
            str(shoal.data),
            "service",
            "ps",
            SERVICE,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    for line in (proc.stdout + proc.stderr).splitlines():
        print(f"    {line}")
    if shoal.cluster:
        print(f"  $ docker ps -a --filter label=com.shoal.cluster={shoal.cluster}")
        fmt = "{{.Names}}  {{.Status}}"
        ps = docker(
            "ps",
            "-a",
            "--format",
            fmt,
            "--filter",
            f"label=com.shoal.cluster={shoal.cluster}",
            check=False,
        )
        for line in ps.splitlines():
            print(f"    {line}")
    log = shoal.data / "shoal.log"
    if log.exists():
        print(f"  last lines of {log}:")
        for line in log.read_text(errors="replace").splitlines()[-20:]:
            print(f"    {line}")


def docker_phase(name: str, port: int, args: argparse.Namespace) -> Row:
    row = Row("docker -p")
    docker("run", "-d", "--name", name, "-p", f"{port}:8000", IMAGE, *COMMAND)
    if not answers(port, PROBE):
        row.note = "did not answer"
        return row
    measure(row, port, args, lambda: docker_proxies(port))
    return row


def swarm_create(swarm: Swarm, name: str, replicas: int, publish: str) -> None:
    swarm.services.add(name)
    docker(
        "service",
        "create",
        "--detach",
        "--no-resolve-image",
        "--name",
        name,
        "--replicas",
        str(replicas),
        "--publish",
        publish,
        swarm.image,
        *COMMAND,
    )
    wait_for(lambda: swarm.converged(name, replicas), CONVERGE, f"{replicas} running tasks")
    say(f"swarm: {name}: {replicas} task(s) running, --publish {publish}")


def swarm_phase(swarm: Swarm, args: argparse.Namespace) -> tuple[Row, Row, list[Trace] | None]:
    ingress, host = Row("swarm ingress"), Row("swarm host")
    traces = None
    swarm.start()
    port = published_port()
    swarm_create(swarm, SERVICE, REPLICAS, f"{port}:8000")
    if answers(port, PROBE):
        measure(ingress, port, args, lambda: docker_proxies(port))
        traces = start_to_traffic("swarm ingress", swarm, port, args.rounds)
    else:
        ingress.note = "did not answer"
        say(f"swarm ingress: {HOST}:{port} did not answer within {PROBE:.0f} s")
    swarm.remove(SERVICE)

    port = published_port()
    swarm_create(swarm, HOST_SERVICE, 1, f"mode=host,published={port},target=8000")
    if answers(port, PROBE):
        measure(host, port, args, lambda: docker_proxies(port))
    else:
        host.note = "did not answer"
        say(f"swarm host: {HOST}:{port} did not answer within {PROBE:.0f} s")
    swarm.remove(HOST_SERVICE)
    return ingress, host, traces


# --- output ------------------------------------------------------------------------------------


def cells(row: Row) -> str:
    if not row.ok:
        return f"{row.note or 'not run':<44}"
    cpu = f"{row.cpu * 100:.0f}%" if row.cpu is not None else "-"
    return f"{row.rate:>9.0f} {row.p50:>8.2f} {row.p99:>9.2f} {row.errors:>7} {cpu:>6}"


def verdict(shoal: Row, other: Row) -> tuple[str, str]:
    if not shoal.ok or not other.ok:
        return "-", "n/a"
    ratio = f"{shoal.rate / other.rate:.2f}"
    missed = []
    if shoal.rate < other.rate:
        missed.append("req/s")
    if shoal.p99 > other.p99:
        missed.append("p99")
    return ratio, "met" if not missed else f"missed ({', '.join(missed)})"


def trace_cells(t: Trace) -> str:
    start = f"{t.to_start:.3f} s" if t.to_start is not None else "-"
    traffic = f"{t.to_traffic:.3f} s" if t.to_traffic is not None else "-"
    text = f"command->start {start:>8}  start->first answer {traffic:>8}"
    text += f"  failed requests up {t.failed_up}, down {t.failed_down}"
    return text + (f"  ({t.note})" if t.note else "")


def report(
    rows: list[Row], traces: dict[str, list[Trace] | None], args: argparse.Namespace
) -> None:
    print()
    print(
        f"{args.connections} connections, {args.threads} wrk threads, {args.duration} s after a"
        f" {args.warmup} s warm-up, median of {args.rounds} run(s); latency in ms"
    )
    head = f"{'':<14} {'req/s':>9} {'p50':>8} {'p99':>9} {'errors':>7} {'cpu':>6}"
    print(f"{head}  {'shoal/row':>9}  target")
    shoal = rows[0]
    met = 0
    compared = 0
    for row in rows:
        ratio, target = ("", "") if row is shoal else verdict(shoal, row)
        if target == "met":
            met += 1
        if target not in ("", "n/a"):
            compared += 1
        print(f"{row.name:<14} {cells(row)}  {ratio:>9}  {target}")
    for row in rows:
        if row.ok and row.note:
            print(f"  note: {row.name}: {row.note}")
    others = [r.name for r in rows if r is not shoal]
    if others:
        print(
            f"target (shoal mesh req/s >= row, p99 no worse): met against {met} of {compared}"
            f" row(s) measured on both sides ({len(others)} other row(s))"
        )

    print()
    print(
        f"time from a task starting to it receiving traffic (scale {REPLICAS}->{REPLICAS + 1},"
        f" {HAMMER_THREADS} client threads, a new connection per request; httpd's startup counts)"
    )
    for name, got in traces.items():
        if not got:
            print(f"{name:<14} n/a")
            continue
        for i, t in enumerate(got, 1):
            print(f"{name:<14} round {i}: {trace_cells(t)}")
        ok = [t.to_traffic for t in got if t.to_traffic is not None]
        if len(got) > 1 and ok:
            print(f"{name:<14} median start->first answer {statistics.median(ok):.3f} s")


def machine_lines() -> str:
    wrk_version = run(["wrk", "-v"], check=False).splitlines()[:1]
    ipvs = "IPVS" if Path("/proc/net/ip_vs").exists() else "no IPVS (/proc/net/ip_vs missing)"
    return (
        f"{machine()}\n"
        f"kernel {platform.release()}, {os.cpu_count()} cores, {ipvs}; "
        f"{wrk_version[0].split(' Copyright')[0] if wrk_version else 'wrk'}"
    )


# --- main --------------------------------------------------------------------------------------


def interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 s runs with 32 connections")
    ap.add_argument("--connections", type=int, help="wrk connections (default 64; quick 32)")
    ap.add_argument("--duration", type=int, help="seconds of each wrk run (default 10; quick 3)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of warm-up run (default 1)")
    ap.add_argument("--rounds", type=int, default=1, help="wrk runs and scale rounds per row")
    ap.add_argument("--no-swarm", action="store_true", help="skip the Docker Swarm rows")
    ap.add_argument("--no-docker", action="store_true", help="skip the docker run -p row")
    a = ap.parse_args()
    if a.connections is None:
        a.connections = 32 if a.quick else 64
    if a.duration is None:
        a.duration = 3 if a.quick else 10
    if a.rounds < 1 or a.connections < a.threads:
        ap.error("need --rounds >= 1 and --connections >= --threads")
    if shutil.which("wrk") is None:
        print("wrk is not installed", file=sys.stderr)
        return 2

    use_swarm = not a.no_swarm
    if use_swarm:
        state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
        if state != "inactive":
            print(f"this engine is already in a swarm ({state}): no Swarm rows", file=sys.stderr)
            use_swarm = False

    swarm = Swarm(image_ref("id"), "5s") if use_swarm else None
    networks = set(docker("network", "ls", "--format", "{{.Name}}").split())
    container = f"shoal-bench-ingress-{os.getpid()}"
    adopted = become_subreaper()
    signal.signal(signal.SIGTERM, interrupted)
    tmp = Path(tempfile.mkdtemp(prefix="shoal-ingress-"))
    shoal = WatchedShoal(tmp)
    rows: list[Row] = []
    traces: dict[str, list[Trace] | None] = {}
    try:
        print(machine_lines())
        print(f"backend: {IMAGE} sh -c '{SERVE}'")
        print(f"shoal data dir: {shoal.data}", end="")
        print("" if adopted else " (not a subreaper: a dead daemon's exit status stays unknown)")
        print(flush=True)

        try:
            shoal_row, traces["shoal mesh"] = shoal_phase(shoal, published_port(), a)
        except (Timeout, RuntimeError, subprocess.SubprocessError) as exc:
            shoal_row, traces["shoal mesh"] = Row("shoal mesh", note=failure(exc)), None
            say(f"shoal: {failure(exc)}")
        rows.append(shoal_row)
        shoal.stop()

        if not a.no_docker:
            try:
                rows.append(docker_phase(container, published_port(), a))
            except (Timeout, RuntimeError, subprocess.SubprocessError) as exc:
                rows.append(Row("docker -p", note=failure(exc)))
                say(f"docker -p: {failure(exc)}")
            docker("rm", "-f", container, check=False)

        if swarm is not None:
            try:
                ingress, host, traces["swarm ingress"] = swarm_phase(swarm, a)
            except (Timeout, RuntimeError, subprocess.SubprocessError) as exc:
                say(f"swarm: {failure(exc)}")
                ingress = Row("swarm ingress", note=failure(exc))
                host = Row("swarm host", note=failure(exc))
                traces["swarm ingress"] = None
            rows += [ingress, host]

        report(rows, traces, a)
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleanup(shoal, swarm, container, networks, tmp)
        reap()
    return 0


def failure(exc: BaseException) -> str:
    if isinstance(exc, Timeout):
        return "failed: timed out"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"failed: {' '.join(map(str, exc.cmd))[:80]} did not end"
    text = str(exc) or type(exc).__name__
    ran = re.fullmatch(r"(\S+ \S+).*? failed \((-?\d+)\): (.*)", text, re.S)
    if ran:  # swarm_compare.run's message: the command, its exit status, its stderr
        text = f"`{ran.group(1)} ...` exited with {ran.group(2)}: {ran.group(3).strip()}"
    return "failed: " + " ".join(text.split())


def cleanup(
    shoal: WatchedShoal, swarm: Swarm | None, container: str, networks: set[str], tmp: Path
) -> None:
    """Undo everything main did, each step on its own so that one failing skips none."""
    steps: list[Callable[[], object]] = [
        shoal.stop,
        lambda: docker("rm", "-f", container, check=False),
    ]
    if swarm is not None:
        steps.append(swarm.stop)
    steps.append(lambda: drop_networks(networks))
    steps.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    for step in steps:
        try:
            step()
        except (Timeout, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            print(f"cleanup: {exc}", file=sys.stderr)


def reap() -> None:
    """Collect adopted processes that ended (the shoal daemon's broker, when it outlived it)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def drop_networks(before: set[str]) -> None:
    """Remove docker_gwbridge if Swarm made it here (leaving the swarm keeps it)."""
    now = set(docker("network", "ls", "--format", "{{.Name}}", check=False).split())
    if "docker_gwbridge" in now - before:
        docker("network", "rm", "docker_gwbridge", check=False)


if __name__ == "__main__":
    sys.exit(main())
