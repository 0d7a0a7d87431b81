"""What a node agent costs at idle: memory, CPU and bytes on the wire.

    python bench/agent.py [--driver docker|process] [--tasks 20] [--window 600]

Builds a one-manager swarm on loopback plus one worker (separate processes, the worker with
the chosen driver), then measures the worker daemon with no task and with N tasks assigned
(busybox `sleep` containers, or `sleep` processes): resident memory, CPU time as a share of
one core over the window, and the bytes its broker connection carries, extrapolated to an
hour. Targets: RSS < 45 MB (docker driver) / 35 MB (process driver), CPU < 0.5%, < 50 KB/h.

Idle means nothing left to report: each window starts two usage samples (2 x 30 s) after the
last change, since the samples just after a task came are that change being published, and
the default window is 600 s, the period of the usage refresh (a shorter one catches that
refresh or misses it, and its extrapolation to an hour swings by tens of KB).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent import control  # noqa: E402
from tests.harness import free_ports, shoal  # noqa: E402

SETTLE = 2 * 30 + 5  # two usage samples (every 30 s by default) and a little


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wire_bytes(port: int, pid: int) -> int:
    """Bytes sent + received on the worker's connection to the broker (from `ss -ti`)."""
    out = subprocess.run(
        ["ss", "-tinpH", "state", "established", f"( dport = :{port} )"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    total, mine = 0, False
    for line in out.splitlines():
        if "users:" in line:
            mine = f"pid={pid}," in line
            continue
        if mine:
            for key in ("bytes_sent", "bytes_received"):
                m = re.search(rf"{key}:(\d+)", line)
                if m:
                    total += int(m.group(1))
    return total


def measure(label: str, pid: int, port: int, window: float) -> None:
    c0, b0, t0 = cpu_seconds(pid), wire_bytes(port, pid), time.monotonic()
    time.sleep(window)
    c1, b1, t1 = cpu_seconds(pid), wire_bytes(port, pid), time.monotonic()
    span = t1 - t0
    print(
        f"{label:28s} RSS {rss_mb(pid):5.1f} MB   CPU {100 * (c1 - c0) / span:5.2f}% of a core"
        f"   wire {(b1 - b0) * 3600 / span / 1024:6.1f} KB/hour"
    )


def create_service(mgr: Path, n: int, drv: str) -> None:
    """N long sleeping tasks, on the worker only (the manager is a worker too)."""
    image = ["shoal/busybox:latest", "sleep", "3600"] if drv == "docker" else ["/bin/sleep", "3600"]
    shoal(
        "service",
        "create",
        "--detach",
        "--name",
        "bench",
        "--replicas",
        str(n),
        "--constraint",
        "node.role==worker",
        "--restart-condition",
        "none",
        "--stop-grace-period",
        "500ms",
        *(["--init"] if drv == "docker" else []),
        *image,
        data=mgr,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", choices=["docker", "process"], default="docker")
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--window", type=float, default=600.0)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="shoal-agent-bench-"))
    port, enroll = free_ports(2)
    mgr, worker = tmp / "mgr", tmp / "w1"
    shoal(
        "swarm",
        "init",
        "--listen-addr",
        f"127.0.0.1:{port}",
        "--enroll-port",
        str(enroll),
        "--driver",
        "process",
        data=mgr,
    )
    token = shoal("swarm", "join-token", "-q", "worker", data=mgr).stdout.strip()
    shoal(
        "swarm",
        "join",
        "--token",
        token,
        "--driver",
        a.driver,
        "--enroll-port",
        str(enroll),
        f"mqtts://127.0.0.1:{port}",
        data=worker,
    )
    try:
        pid = int((worker / "shoal.pid").read_text())
        time.sleep(SETTLE)  # start-up reported, the first usage samples out
        measure(f"{a.driver}, 0 tasks", pid, port, a.window)
        create_service(mgr, a.tasks, a.driver)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            states = control.call(worker / "shoal.sock", "info")["tasks"]
            if sum(s == "running" for s in states.values()) == a.tasks:
                break
            time.sleep(0.5)
        else:
            raise SystemExit(f"only {states} after 120 s")
        time.sleep(SETTLE)  # the new tasks' first usage samples out
        measure(f"{a.driver}, {a.tasks} tasks", pid, port, a.window)
    finally:
        for d in (worker, mgr):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "agent.cli",
                    "swarm",
                    "leave",
                    "--force",
                    "--data-dir",
                    str(d),
                ],
                capture_output=True,
                cwd=ROOT,
            )
        if a.driver == "docker":
            ids = subprocess.run(
                ["docker", "ps", "-aq", "--filter", "label=com.shoal.service.name=bench"],
                capture_output=True,
                text=True,
            ).stdout.split()
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


if __name__ == "__main__":
    main()
