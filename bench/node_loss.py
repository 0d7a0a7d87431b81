"""How fast a lost node's tasks run elsewhere.

    python bench/node_loss.py [--rounds 5] [--replicas 5] [--window 0s]

A one-manager swarm (docker driver) plus one hollow worker on loopback. A service of N
replicas is pinned to the worker (by a label), then the label is added to the manager too and
the worker's agent is killed with SIGKILL. Measured: from the kill to the broker's will marking
the node down (as the store shows it), and from the kill to N tasks running again on the
manager (real containers). The service's --disconnect-window is 0 here, so the figure is the
detection and reaction time; a real service adds its window. Target: replaced within 5 s of
the session ending (Docker Swarm needs about 15 s to notice a lost node, by its heartbeat).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import kill_leftovers, new_cluster, shoal  # noqa: E402


def _rows(data: Path, *args: str) -> list[dict[str, Any]]:
    out = shoal(*args, "--format", "json", data=data).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _wait(predicate: Any, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.02)
    raise SystemExit("timed out")


def one_round(root: Path, replicas: int, window: str) -> tuple[float, float]:
    with new_cluster(root) as (c, _):
        try:
            w = c.join("w1", driver="hollow")
            shoal("node", "update", "--label-add", "spot=yes", "w1", data=c.manager)
            shoal(
                "service",
                "create",
                "--detach",
                "--name",
                "web",
                "--replicas",
                str(replicas),
                "--constraint",
                "node.labels.spot==yes",
                "--disconnect-window",
                window,
                "--init",
                "--stop-grace-period",
                "1s",
                "shoal/busybox:latest",
                "sleep",
                "3600",
                data=c.manager,
            )

            def running_on(node: str) -> int:
                return sum(
                    1
                    for t in _rows(c.manager, "service", "ps", "web")
                    if t["desired_state"] == "running"
                    and t["state"] == "running"
                    and t["node"] == node
                )

            _wait(lambda: running_on("w1") == replicas)
            shoal("node", "update", "--label-add", "spot=yes", "mgr", data=c.manager)
            pid = int((w / "shoal.pid").read_text())
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            down = _wait(lambda: {n["hostname"]: n["status"] for n in c.node_ls()}["w1"] == "down")
            back = _wait(lambda: running_on("mgr") == replicas)
            return down - t0, back - t0
        finally:
            cid = c.info(c.manager)["cluster_id"]
            ids = subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"label=com.shoal.cluster={cid}"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
            for d in c.nodes:
                kill_leftovers(d)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--replicas", type=int, default=5)
    p.add_argument("--window", default="0s", help="the service's --disconnect-window")
    a = p.parse_args()
    downs, backs = [], []
    for i in range(a.rounds):
        with tempfile.TemporaryDirectory(prefix="shoal-node-loss-") as tmp:
            down, back = one_round(Path(tmp), a.replicas, a.window)
        downs.append(down)
        backs.append(back)
        print(
            f"round {i + 1}: node down after {down:.2f} s, {a.replicas} tasks running again"
            f" after {back:.2f} s"
        )
    print(
        f"median: down {statistics.median(downs):.2f} s, replaced {statistics.median(backs):.2f} s"
        f" (max {max(backs):.2f} s); target: replaced within 5 s"
        f" {'met' if max(backs) <= 5 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
