"""Leader failover and write throughput of a manager group, on this machine.

    python bench/failover.py [--managers 3] [--kills 20] [--writes 300]

Builds a cluster of separate manager processes over the embedded mosquitto (in a temporary
directory, on loopback ports), then kills the leader with SIGKILL again and again, timing from
the kill to the first write committed by the new leader, and restarts the killed manager.
Then measures committed writes per second, one client and four at once. A write is the
issue of a monitoring certificate: a Raft round trip through the leader.
Docker Swarm waits 10 to 19 s by default before electing a new leader.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent import control  # noqa: E402
from agent.model.errors import ShoalError  # noqa: E402
from certs import make_csr, new_private_key  # noqa: E402
from tests.harness import free_ports, shoal  # noqa: E402


def info(data: Path) -> dict | None:  # type: ignore[type-arg]
    try:
        return dict(control.call(data / "shoal.sock", "info", timeout=2))
    except ShoalError:
        return None


_CSR = make_csr(new_private_key()).decode()


def write(data: Path, timeout: float = 2.0) -> bool:
    """One committed write: a new monitoring certificate (a new object, so concurrent writes
    do not conflict)."""
    try:
        control.call(
            data / "shoal.sock", "cert-issue", {"role": "monitor", "csr": _CSR}, timeout=timeout
        )
        return True
    except ShoalError:
        return False


def start(data: Path) -> None:
    with open(data / "shoal.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "daemon", "--data-dir", str(data)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
        )


def wait(pred, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    raise SystemExit("timed out")


def find_leader(dirs: list[Path]) -> Path:
    return wait(lambda: next((d for d in dirs if (info(d) or {}).get("is_leader")), None), 30)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--managers", type=int, default=3)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--writes", type=int, default=300)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="shoal-bench-"))
    port, enroll = free_ports(2)
    dirs = [tmp / "m1"]
    shoal(
        "swarm",
        "init",
        "--listen-addr",
        f"127.0.0.1:{port}",
        "--enroll-port",
        str(enroll),
        "--hostname",
        "m1",
        data=dirs[0],
    )
    token = shoal("swarm", "join-token", "-q", "manager", data=dirs[0]).stdout.strip()
    for i in range(2, a.managers + 1):
        d = tmp / f"m{i}"
        shoal(
            "swarm",
            "join",
            "--token",
            token,
            "--hostname",
            f"m{i}",
            "--enroll-port",
            str(enroll),
            f"mqtts://127.0.0.1:{port}",
            data=d,
        )
        dirs.append(d)
    wait(
        lambda: (
            all((info(d) or {}).get("applied") for d in dirs)
            and sum(
                1
                for n in control.call(dirs[0] / "shoal.sock", "node-ls")
                if n["manager_status"] in ("Leader", "Reachable")
            )
            == a.managers
        ),
        30,
    )
    try:
        failovers = []
        for k in range(a.kills):
            leader = find_leader(dirs)
            pid = int((leader / "shoal.pid").read_text())
            survivors = [d for d in dirs if d != leader]
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            done = False
            while not done:
                for d in survivors:
                    if write(d, timeout=10.0):
                        done = True
                        break
            failovers.append(time.monotonic() - t0)
            print(f"kill {k + 1:2d}: first committed write after {failovers[-1] * 1000:7.1f} ms")
            start(leader)
            wait(lambda d=leader: (info(d) or {}).get("connected"), 30)
        print(
            f"\nfailover over {len(failovers)} kills: p50 {pct(failovers, 50):.3f} s,"
            f" p99 {pct(failovers, 99):.3f} s, max {max(failovers):.3f} s"
            "  (target: p50 < 2 s, p99 < 4 s)"
        )

        leader = find_leader(dirs)
        t0 = time.monotonic()
        for _ in range(a.writes):
            assert write(leader, timeout=10)
        one = a.writes / (time.monotonic() - t0)
        t0 = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            ok = list(pool.map(lambda _: write(leader, timeout=10), range(a.writes)))
        four = sum(ok) / (time.monotonic() - t0)
        print(
            f"committed writes/s with {a.managers} managers: {one:.0f} (one client),"
            f" {four:.0f} (four clients)"
        )
    finally:
        for d in reversed(dirs):
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
        print(json.dumps({"dir": str(tmp)}))


if __name__ == "__main__":
    main()
