"""shoal against Docker Swarm, side by side: same machine, same engine, same containers.

    python bench/swarm_compare.py [--quick] [--rounds K] [--sizes 1,5,10,20,25,50]
                                  [--scale 10,20,25] [--no-scale] [--no-replace] [--no-update]
                                  [--restart-delay 5s] [--poll cli|socket]
                                  [--swarm-image id|tag] [--timeout 300]

Builds a one-node shoal swarm (its own broker on loopback, the docker driver) and a one-node
Docker Swarm (`docker swarm init --advertise-addr 127.0.0.1`) on the same Docker Engine, then
times the same operations on both, from issuing the command (`--detach`) to the state it asks
for, as each orchestrator reports it:

  create N      `service create --replicas N` until N tasks run (N = 1, 5, 10, 20, 25, 50)
  scale N->2N   `service scale NAME=2N` until 2N tasks run (N = 10, 20, 25)
  replace       with 5 tasks running, `docker kill` one container; until 5 run again, none of
                them the killed task (the restart delay counts: 5 s, Swarm's default)
  update 10     `service update --env-add X=2 --update-parallelism 2 --update-delay 0s` of 10
                tasks (default monitor, 5 s) until the update is completed and 10 tasks run

Every service runs `shoal/busybox:latest` `sleep 3600` with `--init`, `--stop-grace-period 1s`
and the same `--restart-delay`. Between rows each service is removed and its containers waited
for. Swarm's workers try to pull an image given by tag before every task (and fail here: no
registry), so by default Swarm gets the image's id, which it never pulls: Swarm at its best.

shoal is polled with `shoal service ps --format json` (and `service inspect`), or, with
`--poll socket`, with the same listings read straight from the daemon's control socket (no
interpreter start per poll); Swarm with `docker service ps` (and `docker service inspect`).
Beside both, the create and scale rows measure the engine's floor: the same containers started
straight on the engine, with the docker driver's create body and start concurrency and no
orchestrator (bench/engine_floor.py says how). Each row prints shoal/floor and shoal/swarm;
the rounds of a row interleave the three, in an order turned each round, and the median is
shown. The targets: shoal/swarm <= 0.7 and shoal/floor <= 1.15 on every row. The engine is
left as it was found: the swarm is left, every service and container made here removed, the
shoal daemon and its broker stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent import control  # noqa: E402
from agent.model.errors import ShoalError  # noqa: E402
from agent.worker.executor import START_CONCURRENCY  # noqa: E402
from bench.engine_floor import Floor  # noqa: E402
from tests.harness import free_ports  # noqa: E402

IMAGE = "shoal/busybox:latest"
COMMAND = ("sleep", "3600")
TARGET = 0.7  # shoal/swarm
FLOOR_TARGET = 1.15  # shoal/floor
GRACE_S = 1
POLL = 0.075  # seconds between polls


class Timeout(Exception):
    pass


# the commands run as on a user's machine: Python keeps its compiled modules (an environment
# that forbids it would make every CLI call compile shoal's sources anew, ~0.15 s here)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run(cmd: list[str], *, check: bool = True, timeout: float = 120) -> str:
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, env=ENV
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def docker(*args: str, check: bool = True) -> str:
    return run(["docker", *args], check=check)


def wait_until(pred: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise Timeout
        time.sleep(POLL)


def timed(issue: Callable[[], None], done: Callable[[], bool], timeout: float) -> float:
    """Seconds from issuing the command to the poll that first sees it done."""
    t0 = time.monotonic()
    issue()
    deadline = t0 + timeout
    while True:
        if done():
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            raise Timeout
        time.sleep(POLL)


def common_flags(restart_delay: str) -> list[str]:
    return ["--init", "--stop-grace-period", f"{GRACE_S}s", "--restart-delay", restart_delay]


# shoal ---------------------------------------------------------------------------------------
class Shoal:
    label = "shoal"

    def __init__(self, root: Path, poll: str, restart_delay: str) -> None:
        self.data = root / "node"
        self.poll = poll
        self.restart_delay = restart_delay
        self.cluster = ""
        self.services: set[str] = set()

    def cli(self, *args: str, check: bool = True) -> str:
        return run(
            [sys.executable, "-m", "agent.cli", "--data-dir", str(self.data), *args], check=check
        )

    def call(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        return control.call(self.data / "shoal.sock", cmd, args or {}, timeout=10)

    def start(self) -> None:
        port, enroll = free_ports(2)
        self.cli(
            "swarm",
            "init",
            "--listen-addr",
            f"127.0.0.1:{port}",
            "--enroll-port",
            str(enroll),
            "--driver",
            "docker",
            "--hostname",
            "bench",
        )
        self.cluster = self.call("info")["cluster_id"]
        wait_until(lambda: all(n["status"] == "ready" for n in self.call("node-ls")), 60)

    def tasks(self, name: str) -> list[dict[str, Any]]:
        if self.poll == "socket":
            return list(self.call("service-ps", {"service": name}))
        out = self.cli("service", "ps", "--format", "json", name)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def inspect(self, name: str) -> dict[str, Any]:
        if self.poll == "socket":
            return dict(self.call("service-inspect", {"service": name}))
        return dict(json.loads(self.cli("service", "inspect", name))[0])

    def live(self, name: str) -> list[dict[str, Any]]:
        return [t for t in self.tasks(name) if t["desired_state"] == "running"]

    def converged(self, name: str, n: int, without: str = "") -> bool:
        live = self.live(name)
        return (
            len(live) == n
            and all(t["state"] == "running" for t in live)
            and all(t["id"] != without for t in live)
        )

    def create(self, name: str, n: int) -> None:
        self.services.add(name)
        self.cli(
            "service",
            "create",
            "--detach",
            "--name",
            name,
            "--replicas",
            str(n),
            *common_flags(self.restart_delay),
            "--env",
            "X=1",
            IMAGE,
            *COMMAND,
        )

    def scale(self, name: str, n: int) -> None:
        self.cli("service", "scale", "--detach", f"{name}={n}")

    def update(self, name: str) -> None:
        self.cli(
            "service",
            "update",
            "--detach",
            "--update-parallelism",
            "2",
            "--update-delay",
            "0s",
            "--env-add",
            "X=2",
            name,
        )

    def updated(self, name: str, n: int) -> bool:
        info = self.inspect(name)
        if (info.get("UpdateStatus") or {}).get("State") != "completed":
            return False
        live = self.live(name)
        version = info["Shoal"]["SpecVersion"]
        return len(live) == n and all(
            t["state"] == "running" and t["spec_version"] == version for t in live
        )

    def containers(self, name: str, *, all_: bool = True) -> list[str]:
        return docker(
            "ps",
            *(["-a"] if all_ else []),
            "-q",
            "--no-trunc",
            "--filter",
            f"label=com.shoal.cluster={self.cluster}",
            "--filter",
            f"label=com.shoal.service.name={name}",
        ).split()

    def task_of(self, container: str) -> str:
        return docker(
            "inspect", "--format", '{{index .Config.Labels "com.shoal.task.id"}}', container
        ).strip()

    def remove(self, name: str) -> None:
        self.cli("service", "rm", name, check=False)
        wait_until(lambda: not self.containers(name), 120)
        self.services.discard(name)

    def stop(self) -> None:
        for name in list(self.services):
            try:
                self.remove(name)
            except (Timeout, RuntimeError, ShoalError):
                pass
        self.cli("swarm", "leave", "--force", check=False)
        for pidfile in (self.data / "shoal.pid", self.data / "broker" / "mosquitto.pid"):
            try:
                pid = int(pidfile.read_text().strip())
                os.kill(pid, 0)
            except (OSError, ValueError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
                time.sleep(1)
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.cluster:
            left = docker(
                "ps", "-aq", "--filter", f"label=com.shoal.cluster={self.cluster}", check=False
            ).split()
            if left:
                docker("rm", "-f", *left, check=False)


# Docker Swarm --------------------------------------------------------------------------------
class Swarm:
    label = "swarm"

    def __init__(self, image: str, restart_delay: str) -> None:
        self.image = image
        self.restart_delay = restart_delay
        self.services: set[str] = set()
        self.joined = False

    def start(self) -> None:
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        self.joined = True

    def rows(self, name: str) -> list[tuple[str, str]]:
        out = docker(
            "service",
            "ps",
            "--no-trunc",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.ID}} {{.DesiredState}} {{.CurrentState}}",
            name,
        )
        rows = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 3:
                rows.append((parts[0], parts[2]))
        return rows

    def converged(self, name: str, n: int, without: str = "") -> bool:
        rows = self.rows(name)
        return (
            len(rows) == n
            and all(state == "Running" for _, state in rows)
            and all(ident != without for ident, _ in rows)
        )

    def create(self, name: str, n: int) -> None:
        self.services.add(name)
        docker(
            "service",
            "create",
            "--detach",
            "--no-resolve-image",
            "--name",
            name,
            "--replicas",
            str(n),
            *common_flags(self.restart_delay),
            "--env",
            "X=1",
            self.image,
            *COMMAND,
        )

    def scale(self, name: str, n: int) -> None:
        docker("service", "scale", "--detach", f"{name}={n}")

    def update(self, name: str) -> None:
        docker(
            "service",
            "update",
            "--detach",
            "--no-resolve-image",
            "--update-parallelism",
            "2",
            "--update-delay",
            "0s",
            "--env-add",
            "X=2",
            name,
        )

    def updated(self, name: str, n: int) -> bool:
        fmt = "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}"
        state = docker("service", "inspect", "--format", fmt, name).strip()
        return state == "completed" and self.converged(name, n)

    def containers(self, name: str, *, all_: bool = True) -> list[str]:
        return docker(
            "ps",
            *(["-a"] if all_ else []),
            "-q",
            "--no-trunc",
            "--filter",
            f"label=com.docker.swarm.service.name={name}",
        ).split()

    def task_of(self, container: str) -> str:
        return docker(
            "inspect", "--format", '{{index .Config.Labels "com.docker.swarm.task.id"}}', container
        ).strip()

    def remove(self, name: str) -> None:
        docker("service", "rm", name, check=False)
        wait_until(lambda: not self.containers(name), 120)
        self.services.discard(name)

    def stop(self) -> None:
        for name in list(self.services):
            try:
                self.remove(name)
            except (Timeout, RuntimeError):
                pass
        if self.joined:
            docker("swarm", "leave", "--force", check=False)
        for name in list(self.services):
            left = self.containers(name)
            if left:
                docker("rm", "-f", *left, check=False)


Side = Shoal | Swarm


# rows ----------------------------------------------------------------------------------------
def row_create(side: Side, name: str, n: int, timeout: float) -> float:
    try:
        return timed(lambda: side.create(name, n), lambda: side.converged(name, n), timeout)
    finally:
        side.remove(name)


def row_scale(side: Side, name: str, n: int, timeout: float) -> float:
    try:
        side.create(name, n)
        wait_until(lambda: side.converged(name, n), timeout)
        return timed(lambda: side.scale(name, 2 * n), lambda: side.converged(name, 2 * n), timeout)
    finally:
        side.remove(name)


FLOOR_ROWS: dict[Callable[..., float], Callable[[Floor, str, int], float]] = {
    row_create: Floor.create,
    row_scale: Floor.scale,
}


def row_replace(side: Side, name: str, n: int, timeout: float) -> float:
    try:
        side.create(name, n)
        wait_until(lambda: side.converged(name, n), timeout)
        wait_until(lambda: len(side.containers(name, all_=False)) == n, timeout)
        victim = side.containers(name, all_=False)[0]
        task = side.task_of(victim)

        def kill() -> None:
            docker("kill", victim)

        return timed(kill, lambda: side.converged(name, n, without=task), timeout)
    finally:
        side.remove(name)


def row_update(side: Side, name: str, n: int, timeout: float) -> float:
    try:
        side.create(name, n)
        wait_until(lambda: side.converged(name, n), timeout)
        return timed(lambda: side.update(name), lambda: side.updated(name, n), timeout)
    finally:
        side.remove(name)


def machine() -> str:
    server = docker("version", "--format", "{{.Server.Version}}", check=False).strip()
    client = docker("version", "--format", "{{.Client.Version}}", check=False).strip()
    others = len(docker("ps", "-q", check=False).split())
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"{platform.platform()}, Python {platform.python_version()}\n"
        f"docker: engine {server}, client {client}; {others} other containers running; "
        f"load average {load}"
    )


def image_ref(kind: str) -> str:
    if kind == "tag":
        return IMAGE
    return docker("image", "inspect", "--format", "{{.Id}}", IMAGE).strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="create 1 and 20, scale 10->20 and 20->40, 3 rounds; no replace or update row",
    )
    ap.add_argument("--rounds", type=int, help="median of K rounds (default 1; 3 with --quick)")
    ap.add_argument("--sizes", default="1,5,10,20,25,50", help="replica counts of the create rows")
    ap.add_argument(
        "--scale", default="10,20,25", help="N of the scale N->2N rows (default 10,20,25)"
    )
    ap.add_argument("--no-scale", action="store_true", help="skip the scale rows")
    ap.add_argument("--no-replace", action="store_true", help="skip the killed-container row")
    ap.add_argument("--no-update", action="store_true", help="skip the rolling-update row")
    ap.add_argument(
        "--restart-delay", default="5s", help="--restart-delay on both sides (default 5s)"
    )
    ap.add_argument(
        "--poll",
        choices=["cli", "socket"],
        default="cli",
        help="poll shoal with its CLI (default) or its control socket",
    )
    ap.add_argument(
        "--swarm-image",
        choices=["id", "tag"],
        default="id",
        help="give Swarm the image by id (default: no pull attempts) or by tag",
    )
    ap.add_argument("--timeout", type=float, default=300, help="seconds allowed per row")
    a = ap.parse_args()

    sizes = [1, 20] if a.quick else [int(x) for x in a.sizes.split(",") if x]
    scales = [] if a.no_scale else [10, 20] if a.quick else [int(x) for x in a.scale.split(",")]
    if a.quick:
        a.no_replace = a.no_update = True
    if a.rounds is None:
        a.rounds = 3 if a.quick else 1
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
    if state != "inactive":
        print(f"this engine is already in a swarm ({state}): not touching it", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="shoal-swarm-compare-"))
    shoal = Shoal(tmp, a.poll, a.restart_delay)
    swarm = Swarm(image_ref(a.swarm_image), a.restart_delay)
    floor = Floor(IMAGE, COMMAND, GRACE_S, "X=1")
    sides: dict[str, Side] = {"shoal": shoal, "swarm": swarm}
    results: list[Row] = []
    try:
        print(machine())
        print(
            f"containers: {IMAGE} {' '.join(COMMAND)}, {' '.join(common_flags(a.restart_delay))}"
            f" (5s is Swarm's default restart delay), one node each"
        )
        print(
            f"swarm image: {swarm.image} ({a.swarm_image}), --no-resolve-image --detach;"
            f" shoal polled via {a.poll}; rounds: {a.rounds} (median)"
        )
        print(
            f"floor: the driver's create body straight to the engine through its API (aiodocker),"
            f" {START_CONCURRENCY} create+start at once as the driver does"
        )
        print(f"shoal data dir: {shoal.data}\n", flush=True)
        shoal.start()
        swarm.start()

        plan: list[tuple[str, Callable[[Side, str, int, float], float], int]] = []
        plan += [(f"create {n}", row_create, n) for n in sizes]
        plan += [(f"scale {n}->{2 * n}", row_scale, n) for n in scales]
        if not a.no_replace:
            plan.append(("replace killed (5)", row_replace, 5))
        if not a.no_update:
            plan.append(("update 10 (par 2)", row_update, 10))

        width = max(len(label) for label, _, _ in plan)
        serial = 0
        for label, row, n in plan:
            got: dict[str, list[float]] = {"shoal": [], "floor": [], "swarm": []}
            failed: dict[str, bool] = {"shoal": False, "floor": False, "swarm": False}
            on_floor = FLOOR_ROWS.get(row)
            for k in range(a.rounds):
                # interleaved, and the order turned each round, so load falls on all alike
                order: list[str] = ["shoal", "swarm"] + (["floor"] if on_floor else [])
                order = order[k % len(order) :] + order[: k % len(order)]
                for side in order:
                    serial += 1
                    name = f"cmp{serial}-{label.split()[0]}{n}"
                    try:
                        if side == "floor":
                            assert on_floor is not None
                            got[side].append(on_floor(floor, name, n))
                        else:
                            got[side].append(row(sides[side], name, n, a.timeout))
                    except Timeout:
                        failed[side] = True
            values = [
                None if failed[k] or not got[k] else statistics.median(got[k])
                for k in ("shoal", "floor", "swarm")
            ]
            results.append(Row(label, values[0], values[1], values[2]))
            print(line(results[-1], width), flush=True)
        print()
        print(summary(results))
    finally:
        try:
            shoal.stop()
        finally:
            try:
                swarm.stop()
            finally:
                floor.stop()
    return 0


class Row(NamedTuple):
    label: str
    shoal: float | None
    floor: float | None
    swarm: float | None


def _secs(x: float | None) -> str:
    return f"{x:6.2f} s" if x is not None else "timeout "


def _ratio(x: float | None, y: float | None) -> str:
    return f"{x / y:.2f}" if x is not None and y is not None else "-"


def line(r: Row, width: int) -> str:
    floor = f"floor {_secs(r.floor)}" if r.floor is not None else f"floor {'-':>8}"
    return (
        f"{r.label:<{width}}  shoal {_secs(r.shoal)}  {floor}  swarm {_secs(r.swarm)}"
        f"  shoal/floor {_ratio(r.shoal, r.floor):>4}  shoal/swarm {_ratio(r.shoal, r.swarm)}"
    )


def _missed(pairs: list[tuple[str, float | None, float | None]], target: float) -> list[str]:
    return [
        f"{label} ({'timeout' if x is None or y is None else f'{x / y:.2f}'})"
        for label, x, y in pairs
        if x is None or y is None or x / y > target
    ]


def summary(rows: list[Row]) -> str:
    out = []
    for what, target, pairs in (
        ("shoal/floor", FLOOR_TARGET, [(r.label, r.shoal, r.floor) for r in rows if r.floor]),
        ("shoal/swarm", TARGET, [(r.label, r.shoal, r.swarm) for r in rows]),
    ):
        if not pairs:
            continue
        missed = _missed(pairs, target)
        ratios = [x / y for _, x, y in pairs if x is not None and y is not None]
        mid = f"median {statistics.median(ratios):.2f}, worst {max(ratios):.2f}; " if ratios else ""
        verdict = (
            "met on all rows"
            if not missed
            else f"missed on {len(missed)} of {len(pairs)} rows: {', '.join(missed)}"
        )
        out.append(f"summary: {what} {mid}target <= {target} on every row: {verdict}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
