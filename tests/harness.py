"""What tests against a real mosquitto, the chaos suite and the benches share: free loopback
ports, the CLI run as a user runs it (`shoal`), polling (`wait_for`), and clusters made with
`shoal swarm init` / `shoal swarm join` in separate data directories (`Cluster`,
`new_cluster`), with the clean-up that leaves nothing running.

No pytest here, so the benches import it as plain code.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports: every socket stays bound until all are chosen, so the
    kernel cannot hand out the same port twice."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def shoal(
    *args: str, data: Path | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "agent.cli"]
    if data is not None:  # before the command: `service create IMAGE ARG...` takes all the rest
        cmd += ["--data-dir", str(data)]
    cmd += args
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Cluster:
    root: Path
    port: int
    enroll_port: int
    manager: Path
    nodes: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def token(self, role: str = "worker") -> str:
        return shoal("swarm", "join-token", "-q", role, data=self.manager).stdout.strip()

    def join(
        self,
        name: str,
        role: str = "worker",
        driver: str = "auto",
        *extra: str,
        **kw: Any,
    ) -> Path:
        data = self.root / name
        shoal(
            "swarm",
            "join",
            "--token",
            self.token(role),
            "--hostname",
            name,
            "--enroll-port",
            str(self.enroll_port),
            "--driver",
            driver,
            *extra,
            self.url,
            data=data,
            **kw,
        )
        self.nodes.append(data)
        return data

    def info(self, data: Path) -> dict[str, Any]:
        return dict(json.loads(shoal("info", "--format", "json", data=data).stdout))

    def node_ls(self) -> list[dict[str, Any]]:
        out = shoal("node", "ls", "--format", "json", data=self.manager).stdout
        return [json.loads(line) for line in out.splitlines()]

    @property
    def ca_dir(self) -> Path:
        return self.manager / "manager"

    @property
    def ca_file(self) -> Path:
        return self.manager / "tls" / "ca.pem"


@contextlib.contextmanager
def new_cluster(root: Path, *init_args: str) -> Iterator[tuple[Cluster, str]]:
    """`shoal swarm init` on free loopback ports (plus `init_args`); yields the cluster and
    what init printed. Every node is made to leave afterwards, and nothing is left running."""
    port, enroll = free_ports(2)
    mgr = root / "mgr"
    out = shoal(
        "swarm",
        "init",
        "--listen-addr",
        f"127.0.0.1:{port}",
        "--enroll-port",
        str(enroll),
        "--hostname",
        "mgr",
        *init_args,
        data=mgr,
    ).stdout
    c = Cluster(root=root, port=port, enroll_port=enroll, manager=mgr)
    try:
        yield c, out
    finally:
        for d in [*c.nodes, mgr]:
            shoal("swarm", "leave", "--force", data=d, check=False)
        for d in [*c.nodes, mgr]:
            kill_leftovers(d)
        kill_processes_under(root)


def kill_processes_under(root: Path) -> None:
    """End every process whose command line names a path under ``root`` (a broker whose
    daemon was killed and whose data directory is gone, say)."""
    mark = str(root)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if mark in cmdline:
            with contextlib.suppress(OSError):
                os.kill(int(proc.name), signal.SIGKILL)


def kill_leftovers(data: Path) -> None:
    """A test that failed half-way may leave a daemon or a broker behind: end them."""
    for pid_file in (data / "shoal.pid", data / "broker" / "mosquitto.pid"):
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass


def info_of(data: Path) -> dict[str, Any] | None:
    """`shoal info` of a node as JSON, or None while its daemon does not answer."""
    proc = shoal("info", "--format", "json", data=data, check=False, timeout=10)
    return dict(json.loads(proc.stdout)) if proc.returncode == 0 else None


def start_daemon(data: Path) -> subprocess.Popen[bytes]:
    """Start a node's daemon again (after a kill, say), logging to its shoal.log."""
    with open(data / "shoal.log", "ab") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "daemon", "--data-dir", str(data)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def join_managers(cluster: Cluster, n: int, timeout: float = 30) -> list[Path]:
    """The cluster's first manager and n - 1 more (m2, m3, ...), once all are in the raft group."""
    dirs = [cluster.manager] + [cluster.join(f"m{i}", role="manager") for i in range(2, n + 1)]
    wait_for(
        lambda: sum(x["manager_status"] in ("Leader", "Reachable") for x in cluster.node_ls()) == n,
        timeout,
        f"{n} managers in the raft group",
    )
    return dirs
