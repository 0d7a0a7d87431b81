"""Scheduling at scale: 1,000 hollow nodes and 10,000 tasks, on this machine.

    python bench/scale.py                 # 1,000 nodes, 10 services x 1,000 replicas
    python bench/scale.py --quick         # 100 nodes, 10 services x 100 replicas
    python bench/scale.py [--nodes N] [--services S] [--replicas R] [--cli] [--keep]
    python bench/scale.py --trace-manager FILE   # where the leader's time goes
    python bench/scale.py --profile-manager FILE --profile-bench FILE   # cProfile both sides

TARGETS: scheduling throughput of at least 1,000 tasks placed per second, and 10,000 tasks
converged (all running) in under 60 s. Run it on an otherwise idle machine.

What it does:

1. Raises the open-file limit (soft to hard, at least 8,192 where allowed), so the embedded
   broker (a child of the manager daemon, itself a child of this process) and this process
   can hold more than 1,000 connections. Starts a one-manager swarm on loopback ports with
   `shoal swarm init --driver hollow` and drains the manager (`shoal node update --availability
   drain`), so every task lands on a hollow node of this process.
2. In this one asyncio process, enrolls the nodes through the real enrollment listener
   (50 at a time) and runs a `NodeAgent` with a `HollowDriver` for each, each with a session of
   its own (its own certificate and TLS connection, will and "ready" announcement as the
   daemon sets them up). Waits until `shoal node ls --format json` shows them all ready.
3. Creates the services at once, with the request `shoal service create --detach --name NAME
   --replicas R shoal/busybox:latest sleep 3600` sends (built by the CLI's own parser, sent to
   the manager's control socket; `--cli` runs the `shoal` command instead, one process per
   service). Placement and running are seen from two sides, neither polling 10,000 rows:
   - the nodes' view, in-process: a task is placed when its node receives it in its assignment
     set (`node/<id>/assign`), running when its node's executor reports it running;
   - the leader's view: `mosquitto_sub` (a separate process, monitoring certificate) records
     the leader's retained `mon/service/<id>` documents (published at most every 0.2 s) with
     their arrival time; a task is placed when a document first shows it on a node, running
     when one first shows it running.
   Both see a placement only after it was committed, so the earlier of the two bounds each
   task's placement from above. Throughput = tasks / (last placement - first create);
   converged = the later of the two views' last task running - first create. `shoal service
   ls --format json` confirms running == desired at the end. With --trace-manager the manager
   runs under bench/scale_trace.py, which also gives the moment the leader committed its last
   placement.
4. Prints the figures, CPU used by each side, the hollow nodes' event-loop lag, and the
   resident memory of the manager daemon, the broker and this process; then leaves the swarm
   and kills what is left (also on failure). The data directory is removed unless the run
   failed or --keep is given; the manager's log is <dir>/mgr/shoal.log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import faulthandler
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent import control  # noqa: E402
from agent.cli.createflags import spec_from_create  # noqa: E402
from agent.cli.main import build_parser  # noqa: E402
from agent.model import TaskState, TaskStatus  # noqa: E402
from agent.worker.hollow import HollowDriver  # noqa: E402
from agent.worker.node import NodeAgent  # noqa: E402
from bench.scale_trace import summarize  # noqa: E402
from broker.envelope import Envelope, encode  # noqa: E402
from broker.session import Session, SessionConfig, Will  # noqa: E402
from broker.tls import client_context  # noqa: E402
from broker.topics import Topics  # noqa: E402
from tests.harness import free_ports, shoal  # noqa: E402
from tests.integration.mqtt import Ident, enroll_identity  # noqa: E402

IMAGE = ("shoal/busybox:latest", "sleep", "3600")
THROUGHPUT_TARGET = 1000.0  # tasks placed per second
CONVERGE_TARGET = 60.0  # seconds until 10,000 tasks run
CLI_TIMEOUT = 120.0  # seconds a CLI command may take here


# --- the swarm, through the CLI ------------------------------------------------------------------
async def shoal_async(*args: str, data: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli",
        "--data-dir",
        str(data),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def raise_open_files(want: int = 8192) -> tuple[int, int]:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < want:
        with contextlib.suppress(ValueError, OSError):  # only root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            hard = want
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def memory_mb(pid: int | None) -> tuple[float, float]:
    """Resident and peak resident memory (MB) of a process."""
    rss = peak = 0.0
    if pid is None:
        return rss, peak
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return rss, peak


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- what the nodes see --------------------------------------------------------------------------
class Probe:
    """When each task first reached a node (placed) and first ran there."""

    def __init__(self) -> None:
        self.placed: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.assign_messages = 0
        self.changed = asyncio.Event()

    def assignments(self, body: Any) -> None:
        self.assign_messages += 1
        now = time.monotonic()
        tasks = body.get("tasks") if isinstance(body, dict) else None
        for raw in tasks or []:
            tid = raw.get("task_id") if isinstance(raw, dict) else None
            if tid and raw.get("desired_state") == "running" and tid not in self.placed:
                self.placed[tid] = now
        self.changed.set()

    def status(self, status: TaskStatus) -> None:
        if status.state is TaskState.RUNNING and status.task_id not in self.running:
            self.running[status.task_id] = time.monotonic()
            self.changed.set()


class HollowNode(NodeAgent):
    """A node agent that also tells the probe what reaches it and what runs."""

    def __init__(self, *, probe: Probe, **kwargs: Any) -> None:
        self.probe = probe
        super().__init__(**kwargs)

    async def _on_assign(self, topic: str, env: Envelope) -> None:
        self.probe.assignments(env.body)
        await super()._on_assign(topic, env)

    def _report(self, status: TaskStatus) -> None:
        self.probe.status(status)
        super()._report(status)


def make_node(ident: Ident, cluster_id: str, port: int, state: Path, probe: Probe) -> HollowNode:
    """A hollow node set up as the daemon sets up a node: client id = node id, a will saying
    "down" on its state topic, "ready" announced (retained) on every connect."""
    topics = Topics(cluster_id)
    hostname = ident.cert.parent.name

    def state_payload(status: str) -> bytes:
        body = {"status": status, "hostname": hostname, "role": "worker"}
        return encode(Envelope(type="state", sender=ident.node_id, seq=0, body=body))

    session = Session(
        SessionConfig(
            host="127.0.0.1",
            port=port,
            client_id=ident.node_id,
            sender=ident.node_id,
            tls=lambda: client_context(ident.ca, ident.cert, ident.key),
            will=Will(topics.node_state(ident.node_id), state_payload("down")),
            clean_session=True,
        )
    )

    async def unsolicited(topic: str, env: Envelope) -> None:
        return None  # role changes: not part of this bench

    session.on(topics.node_resp(ident.node_id), unsolicited)

    async def announce() -> None:
        await session.publish(topics.node_state(ident.node_id), state_payload("ready"), retain=True)

    session.on_connect(announce)
    return HollowNode(
        probe=probe,
        node_id=ident.node_id,
        cluster_id=cluster_id,
        hostname=hostname,
        role="worker",
        session=session,
        state_dir=state,
        driver=HollowDriver(),
    )


class Watcher:
    """The leader's own account, from outside every shoal process: `mosquitto_sub` with a
    monitoring certificate records each retained `mon/service/<id>` document (the leader
    publishes them at most every 0.2 s) with the time it arrived. A task is placed when a
    document first shows it on a node, running when one first shows it running."""

    def __init__(self, mgr: Path, directory: Path, port: int, cluster_id: str) -> None:
        self.mgr, self.dir, self.port = mgr, directory, port
        self.topic = f"{Topics(cluster_id).base}/mon/service/+"
        self.out = directory / "mon-service.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.placed: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self._offset = 0

    def start(self) -> None:
        if shutil.which("mosquitto_sub") is None:
            print("mosquitto_sub not found: the leader-side figures are skipped")
            return
        shoal(
            "cert", "issue", "monitor", "--out", str(self.dir), data=self.mgr, timeout=CLI_TIMEOUT
        )
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    "mosquitto_sub",
                    *("-h", "127.0.0.1", "-p", str(self.port)),
                    *("--cafile", str(self.dir / "ca.pem")),
                    *("--cert", str(self.dir / "cert.pem"), "--key", str(self.dir / "key.pem")),
                    *("-t", self.topic, "-F", "%U %t %p"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            if self.proc.poll() is None:
                self.proc.kill()

    def poll(self) -> None:
        """Read what arrived since the last call: when each task was first shown placed, and
        running (unix time, as mosquitto_sub stamped the document)."""
        if self.proc is None:
            return
        with open(self.out, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            stamp, _, rest = line.partition(b" ")
            _, _, payload = rest.partition(b" ")
            try:
                at, doc = float(stamp), json.loads(payload)
            except ValueError:
                continue
            for t in doc.get("tasks", ()) if isinstance(doc, dict) else ():
                tid = t.get("id")
                if t.get("node") and tid not in self.placed:
                    self.placed[tid] = at
                if t.get("state") == "running" and tid not in self.running:
                    self.running[tid] = at


def restart_manager(mgr: Path, *, profile: Path | None, trace: Path | None) -> None:
    """Stop the manager daemon and start it again under cProfile (written when it exits)
    and/or with bench/scale_trace.py's timing of its leader components."""
    pid = read_pid(mgr / "shoal.pid")
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    argv = [sys.executable]
    if profile is not None:
        argv += ["-m", "cProfile", "-o", str(profile)]
    if trace is not None:
        argv += [str(ROOT / "bench" / "scale_trace.py"), str(trace)]
    else:
        argv += ["-m", "agent.cli", "daemon"]
    with open(mgr / "shoal.log", "ab") as log:
        subprocess.Popen(
            [*argv, "--data-dir", str(mgr)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            info = control.call(mgr / "shoal.sock", "info", timeout=2)
            if info.get("connected") and info.get("is_leader"):
                return
        time.sleep(0.1)
    raise SystemExit("the restarted manager did not come back")


class LoopLag:
    """How late this process's event loop runs a 0.1 s timer: when it lags, the hollow nodes
    themselves are the bottleneck. A loop stuck for a minute dumps every thread's stack."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.late = 0.0  # seconds lost to lags over 50 ms
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            faulthandler.dump_traceback_later(60, exit=False)
            t = time.monotonic()
            await asyncio.sleep(0.1)
            lag = time.monotonic() - t - 0.1
            self.worst = max(self.worst, lag)
            if lag > 0.05:
                self.late += lag

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        faulthandler.cancel_dump_traceback_later()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# --- the bench -----------------------------------------------------------------------------------
class Bench:
    def __init__(self, a: argparse.Namespace, tmp: Path, port: int, enroll: int) -> None:
        self.a = a
        self.tmp = tmp
        self.mgr = tmp / "mgr"
        self.port = port
        self.enroll_port = enroll
        self.probe = Probe()
        self.nodes: list[HollowNode] = []
        self.runs: list[asyncio.Task[None]] = []
        self.results: dict[str, Any] = {}
        self.watcher: Watcher | None = None

    def say(self, text: str) -> None:
        print(text, flush=True)

    async def node_ls(self) -> list[dict[str, Any]]:
        rc, out, err = await shoal_async("node", "ls", "--format", "json", data=self.mgr)
        if rc != 0:
            raise RuntimeError(f"shoal node ls failed: {err.strip()}")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    async def enroll_all(self, token: str) -> list[Ident]:
        gate = asyncio.Semaphore(self.a.enroll_concurrency)
        done = 0

        async def one(i: int) -> Ident:
            nonlocal done
            async with gate:
                ident = await enroll_identity(
                    self.tmp / "nodes" / f"hollow-{i:04d}", self.enroll_port, token
                )
            done += 1
            if done % 100 == 0:
                self.say(f"  enrolled {done}/{self.a.nodes} ({time.monotonic() - t0:.1f} s)")
            return ident

        t0 = time.monotonic()
        idents = await asyncio.gather(*(one(i) for i in range(1, self.a.nodes + 1)))
        took = time.monotonic() - t0
        self.results["enroll_s"] = took
        self.say(
            f"enrolled {len(idents)} nodes in {took:.1f} s: {len(idents) / took:.1f} enrollments/s"
            f" ({self.a.enroll_concurrency} at a time)"
        )
        return list(idents)

    async def start_nodes(self, idents: list[Ident], cluster_id: str) -> None:
        t0 = time.monotonic()
        batch = self.a.connect_batch
        for i in range(0, len(idents), batch):
            part = []
            for ident in idents[i : i + batch]:
                node = make_node(
                    ident, cluster_id, self.port, ident.cert.parent / "worker", self.probe
                )
                node.session.start()
                self.runs.append(asyncio.create_task(node.run()))
                self.nodes.append(node)
                part.append(node)
            await asyncio.gather(*(n.session.wait_connected(60) for n in part))
        took = time.monotonic() - t0
        self.say(f"connected {len(self.nodes)} hollow nodes in {took:.1f} s")
        # every node's session is up; wait for the managers to record them all ready
        t0 = time.monotonic()
        ours = {n.node_id for n in self.nodes}
        deadline = t0 + self.a.ready_timeout
        last = -1
        while True:
            rows = await self.node_ls()
            ready = sum(1 for r in rows if r["id"] in ours and r["status"] == "ready")
            if ready != last and (ready == len(ours) or time.monotonic() - t0 > 5):
                self.say(f"  {ready}/{len(ours)} nodes ready ({time.monotonic() - t0:.1f} s)")
                last = ready
            if ready == len(ours):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {ready}/{len(ours)} nodes ready after {deadline - t0:.0f} s"
                )
            await asyncio.sleep(0.5)
        self.results["ready_s"] = time.monotonic() - t0
        self.say(f"all {len(ours)} nodes ready {self.results['ready_s']:.1f} s after connecting")

    async def create_services(self) -> tuple[float, list[float]]:
        """Create every service at once; when the first request went out, and when each
        create was acknowledged (monotonic)."""
        names = [f"bench-{k:02d}" for k in range(1, self.a.services + 1)]
        argvs = [
            [
                "service",
                "create",
                "--detach",
                "--name",
                n,
                "--replicas",
                str(self.a.replicas),
                *IMAGE,
            ]
            for n in names
        ]
        acked: list[float] = []
        if self.a.cli:
            t0 = time.monotonic()

            async def run(argv: list[str]) -> None:
                rc, _, err = await shoal_async(*argv, data=self.mgr)
                if rc != 0:
                    raise RuntimeError(f"shoal {' '.join(argv)} failed: {err.strip()}")
                acked.append(time.monotonic())

            await asyncio.gather(*(run(argv) for argv in argvs))
            return t0, acked
        parser = build_parser()
        specs = [spec_from_create(parser.parse_args(argv)).to_dict() for argv in argvs]
        sock = self.mgr / "shoal.sock"
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(len(specs)) as pool:

            def create(spec: dict[str, Any]) -> None:
                control.call(sock, "service-create", {"spec": spec}, timeout=120)
                acked.append(time.monotonic())

            t0 = time.monotonic()
            await asyncio.gather(*(loop.run_in_executor(pool, create, s) for s in specs))
        return t0, acked

    async def schedule(self) -> None:
        total = self.a.services * self.a.replicas
        mgr_pid = read_pid(self.mgr / "shoal.pid")
        broker_pid = read_pid(self.mgr / "broker" / "mosquitto.pid")
        lag = LoopLag()
        lag.start()
        profile = cProfile.Profile() if self.a.profile_bench else None
        if profile is not None:
            profile.enable()
        cpu0 = (cpu_seconds(mgr_pid), cpu_seconds(broker_pid), time.process_time())
        wall0 = time.time() - time.monotonic()  # monotonic -> unix time
        creating = asyncio.create_task(self.create_services())
        await self._await_running(total)
        t_first, acked = await creating
        cpu1 = (cpu_seconds(mgr_pid), cpu_seconds(broker_pid), time.process_time())
        if profile is not None:
            profile.disable()
            profile.dump_stats(self.a.profile_bench)
        await lag.stop()
        placed = sorted(self.probe.placed.values())
        running = sorted(self.probe.running.values())
        r = self.results
        r.update(
            tasks=total,
            created_s=max(acked) - t_first,
            nodes_first_placed_s=placed[0] - t_first,
            nodes_placed_s=placed[total - 1] - t_first,
            nodes_running_s=running[total - 1] - t_first,
            assign_messages=self.probe.assign_messages,
            cpu_manager_s=cpu1[0] - cpu0[0],
            cpu_broker_s=cpu1[1] - cpu0[1],
            cpu_bench_s=cpu1[2] - cpu0[2],
            wall_s=time.monotonic() - t_first,
            lag_worst_s=lag.worst,
            lag_late_s=lag.late,
        )
        # Each view sees a placement only after it was committed, so the earlier of the two
        # bounds each task's placement time from above.
        t_first_unix = t_first + wall0
        first_placed = {tid: at + wall0 for tid, at in self.probe.placed.items()}
        await self._leader_view(total, t_first_unix, first_placed)
        r["placed_s"] = sorted(first_placed.values())[total - 1] - t_first_unix
        r["throughput"] = total / r["placed_s"]
        # converged: every task running in the nodes' view and in the swarm's records
        r["converged_s"] = max(r["nodes_running_s"], r.get("leader_running_s", 0.0))
        if self.a.trace_manager:
            await asyncio.sleep(0.2)  # the trace is flushed every 50 ms
            r["trace"], committed = summarize(
                Path(self.a.trace_manager), t_first_unix, t_first_unix + r["converged_s"]
            )
            if committed is not None:
                r["committed_s"] = committed
        await self._record_service_ls()

    async def _await_running(self, total: int) -> None:
        """Wait until the nodes report every task running, saying progress once a second."""
        t_start = time.monotonic()
        deadline = t_start + self.a.timeout
        next_line = t_start + 1.0
        while len(self.probe.running) < total:
            now = time.monotonic()
            if now >= next_line:
                self.say(
                    f"  {now - t_start:5.1f} s: {len(self.probe.placed):6d} placed,"
                    f" {len(self.probe.running):6d} running (nodes' view)"
                )
                next_line = max(next_line + 1.0, now + 0.5)
            if now > deadline:
                raise RuntimeError(
                    f"not converged after {self.a.timeout:g} s: {len(self.probe.placed)} placed,"
                    f" {len(self.probe.running)} running of {total}"
                )
            self.probe.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.probe.changed.wait(), max(0.05, next_line - now))

    async def _leader_view(
        self, total: int, t_first_unix: float, first_placed: dict[str, float]
    ) -> None:
        """The leader's times, into the results; earlier placements into ``first_placed``."""
        r = self.results
        w = self.watcher
        if w is not None and w.proc is not None:
            # wait for the leader to record every task running (its documents are read only
            # now, so as not to load this process while it schedules)
            give_up = time.monotonic() + self.a.timeout
            while True:
                await asyncio.to_thread(w.poll)
                if len(w.running) >= total or time.monotonic() > give_up:
                    break
                await asyncio.sleep(0.5)
            w.stop()
            await asyncio.to_thread(w.poll)
            for tid, at in w.placed.items():
                first_placed[tid] = min(at, first_placed.get(tid, at))
            ld_placed, ld_running = sorted(w.placed.values()), sorted(w.running.values())
            if len(ld_placed) >= total:
                r["leader_first_placed_s"] = ld_placed[0] - t_first_unix
                r["leader_placed_s"] = ld_placed[total - 1] - t_first_unix
            if len(ld_running) >= total:
                r["leader_running_s"] = ld_running[total - 1] - t_first_unix
            else:
                self.say(f"the leader showed only {len(ld_running)} of {total} tasks running")

    async def _record_service_ls(self) -> None:
        """The swarm's own account, once: `service ls` agrees with the bench or not."""
        r = self.results
        t0 = time.monotonic()
        rc, out, err = await shoal_async("service", "ls", "--format", "json", data=self.mgr)
        if rc != 0:
            raise RuntimeError(f"shoal service ls failed: {err.strip()}")
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        bench_rows = [row for row in rows if str(row.get("name", "")).startswith("bench-")]
        ok = len(bench_rows) == self.a.services and all(
            row["running"] == row["desired"] == self.a.replicas for row in bench_rows
        )
        r["service_ls"] = (
            f"{sum(row['running'] for row in bench_rows)}/"
            f"{sum(row['desired'] for row in bench_rows)}"
            f" running/desired over {len(bench_rows)} services"
            f" ({'agrees' if ok else 'DISAGREES'}; `service ls` took {time.monotonic() - t0:.2f} s)"
        )

    async def close_nodes(self) -> None:
        for run in self.runs:
            run.cancel()
        await asyncio.gather(*self.runs, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(n.session.close() for n in self.nodes), return_exceptions=True),
                60,
            )

    async def run(self, token: str, cluster_id: str) -> None:
        try:
            idents = await self.enroll_all(token)
            await self.start_nodes(idents, cluster_id)
            if not self.a.no_watch:
                self.watcher = Watcher(self.mgr, self.tmp / "monitor", self.port, cluster_id)
                await asyncio.to_thread(self.watcher.start)
                await asyncio.sleep(0.5)  # subscribed before the first create
            self.say(
                f"creating {self.a.services} services x {self.a.replicas} replicas"
                f" ({'shoal CLI processes' if self.a.cli else 'control socket'})"
            )
            await self.schedule()
            self.results["rss"] = {
                "manager": memory_mb(read_pid(self.mgr / "shoal.pid")),
                "broker": memory_mb(read_pid(self.mgr / "broker" / "mosquitto.pid")),
                "bench": memory_mb(os.getpid()),
            }
        finally:
            if self.watcher is not None:
                self.watcher.stop()
            await self.close_nodes()

    def report(self) -> None:
        r = self.results
        n = r["tasks"]
        ok_t = r["throughput"] >= THROUGHPUT_TARGET
        ok_c = r["converged_s"] < CONVERGE_TARGET
        verdict_c = ("met" if ok_c else "MISSED") if n >= 10000 else "applies to 10,000 tasks"

        def at(key: str) -> str:
            return f"{r[key]:6.2f} s" if key in r else "     -  "

        rows = [
            ("nodes", f"{self.a.nodes} hollow (+1 drained manager)"),
            ("tasks", f"{n} ({self.a.services} services x {self.a.replicas})"),
            (
                "enrollment",
                f"{self.a.nodes / r['enroll_s']:.1f} nodes/s ({r['enroll_s']:.1f} s for"
                f" {self.a.nodes}, {self.a.enroll_concurrency} at a time)",
            ),
            ("all ready after connect", f"{r['ready_s']:.1f} s"),
            ("creates acknowledged", f"{r['created_s']:.2f} s after the first create"),
            ("(after the first create)", "leader's view   nodes' view"),
            (
                "  first task placed",
                f"{at('leader_first_placed_s')}        {at('nodes_first_placed_s')}",
            ),
            ("  last task placed", f"{at('leader_placed_s')}        {at('nodes_placed_s')}"),
            ("  last task running", f"{at('leader_running_s')}        {at('nodes_running_s')}"),
            ("last task placed", f"{r['placed_s']:.2f} s (the earlier view of each task)"),
            (
                "scheduling throughput",
                f"{r['throughput']:.0f} tasks/s (target >= {THROUGHPUT_TARGET:.0f}:"
                f" {'met' if ok_t else 'MISSED'})",
            ),
            *(
                [
                    (
                        "  by the leader's trace",
                        f"{n / r['committed_s']:.0f} tasks/s (last placement committed at"
                        f" {r['committed_s']:.2f} s)",
                    )
                ]
                if "committed_s" in r
                else []
            ),
            (
                "converged (all running)",
                f"{r['converged_s']:.2f} s (target < {CONVERGE_TARGET:.0f} s: {verdict_c})",
            ),
            ("assignment sets received", str(r["assign_messages"])),
            (
                "CPU while scheduling",
                f"manager {r['cpu_manager_s']:.1f} s, broker {r['cpu_broker_s']:.1f} s,"
                f" hollow nodes {r['cpu_bench_s']:.1f} s over {r['wall_s']:.1f} s"
                f" ({os.cpu_count()} CPUs)",
            ),
            (
                "hollow nodes' loop lag",
                f"worst {r['lag_worst_s']:.2f} s, {r['lag_late_s']:.1f} s lost to lags > 50 ms",
            ),
            ("service ls", r["service_ls"]),
        ]
        for who, (rss, peak) in r["rss"].items():
            rows.append((f"RSS {who}", f"{rss:.0f} MB (peak {peak:.0f} MB)"))
        print()
        for k, v in rows:
            print(f"{k:26s} {v}")
        for line in r.get("trace", ()):
            print(line)


def cleanup(mgr: Path) -> None:
    """Leave the swarm; whatever still runs is stopped by its pid."""
    daemon = read_pid(mgr / "shoal.pid")
    broker = read_pid(mgr / "broker" / "mosquitto.pid")
    with contextlib.suppress(subprocess.TimeoutExpired):
        shoal("swarm", "leave", "--force", data=mgr, timeout=60, check=False)
    for pid in (daemon, broker):
        if pid is not None and Path(f"/proc/{pid}").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        p is not None and Path(f"/proc/{p}").exists() for p in (daemon, broker)
    ):
        time.sleep(0.1)
    for pid in (daemon, broker):
        if pid is not None and Path(f"/proc/{pid}").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--services", type=int, default=10)
    ap.add_argument("--replicas", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="100 nodes, 10 services x 100 replicas")
    ap.add_argument("--cli", action="store_true", help="create services with `shoal` processes")
    ap.add_argument("--enroll-concurrency", type=int, default=50)
    ap.add_argument("--connect-batch", type=int, default=100, help="sessions started at once")
    ap.add_argument("--ready-timeout", type=float, default=300.0)
    ap.add_argument("--timeout", type=float, default=600.0, help="give up converging after this")
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    ap.add_argument("--no-watch", action="store_true", help="skip the leader-side figures")
    ap.add_argument("--profile-manager", metavar="FILE", help="run the manager under cProfile")
    ap.add_argument("--profile-bench", metavar="FILE", help="profile the hollow nodes' process")
    ap.add_argument(
        "--trace-manager", metavar="FILE", help="time the leader's components (bench/scale_trace)"
    )
    a = ap.parse_args()
    if a.quick:
        a.nodes, a.services, a.replicas = 100, 10, 100
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    soft, hard = raise_open_files()
    print(f"open files: soft {soft}, hard {hard}")
    if soft < a.nodes * 2 + 100:
        print(f"warning: {soft} open files may be too few for {a.nodes} nodes", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="shoal-scale-"))
    mgr = tmp / "mgr"
    port, enroll = free_ports(2)
    ok = False
    bench = Bench(a, tmp, port, enroll)
    try:
        t0 = time.monotonic()
        shoal(
            "swarm",
            "init",
            "--listen-addr",
            f"127.0.0.1:{port}",
            "--enroll-port",
            str(enroll),
            "--hostname",
            "mgr",
            "--driver",
            "hollow",
            data=mgr,
            timeout=CLI_TIMEOUT,
        )
        info = json.loads(shoal("info", "--format", "json", data=mgr, timeout=CLI_TIMEOUT).stdout)
        shoal(
            "node",
            "update",
            "--availability",
            "drain",
            info["node_id"],
            data=mgr,
            timeout=CLI_TIMEOUT,
        )
        token = shoal(
            "swarm", "join-token", "-q", "worker", data=mgr, timeout=CLI_TIMEOUT
        ).stdout.strip()
        if a.profile_manager or a.trace_manager:
            restart_manager(
                mgr,
                profile=Path(a.profile_manager).resolve() if a.profile_manager else None,
                trace=Path(a.trace_manager).resolve() if a.trace_manager else None,
            )
        print(f"swarm up in {time.monotonic() - t0:.1f} s (manager drained); data in {tmp}")
        asyncio.run(bench.run(token, info["cluster_id"]))
        bench.report()
        ok = True
    finally:
        cleanup(mgr)
        if ok and not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(json.dumps({"dir": str(tmp)}))


if __name__ == "__main__":
    main()
