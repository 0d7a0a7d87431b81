"""The worker side of every node: tasks assigned over MQTT run through the executor, and the
node tells managers (msgpack) and people (retained JSON) what it is and what it runs.

    node/<id>/assign   (retained)  "assign" {"version": int, "tasks": [assignment, ...],
                                   "secrets": [{"id", "name", "sealed": bytes}, ...],
                                   "configs": [{"id", "name", "data": bytes}, ...]}:
                                   the node's full desired set; replaces the previous one.
                                   Secrets are sealed to this node's key (certs.seal, context
                                   "shoal-secret:<node id>:<secret id>"); both lists are
                                   optional and hold what the running tasks refer to
    node/<id>/status               "status" {"tasks": [task status, ...]}: changes, batched;
                                   "describe" {...}: the node's description, on connect;
                                   "heartbeat" {} at QoS 0: alive (mon/node/<id>/usage
                                   carries the numbers)
    mon/node/<id>/description      retained JSON: hostname, platform, resources, engine, labels
    mon/node/<id>/tasks            retained JSON: every task's current status
    mon/node/<id>/usage            retained JSON: CPU, memory, disk, per task (usage_report.py)

Bad assignment messages (a malformed entry, a running task referring to a secret or config the
set lacks) are rejected and counted; they never disturb what runs. Secrets are opened only when
a task using them is prepared, with the key ``key_loader`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.model import (
    Assignment,
    AssignmentError,
    TaskStatus,
    check_references,
    parse_configs,
    parse_secrets,
)
from agent.worker.driver import Driver
from agent.worker.executor import Executor
from agent.worker.taskfiles import KeyLoader
from agent.worker.usage_report import UsageReporter
from broker.envelope import Envelope
from broker.errors import BrokerError
from broker.session import Session
from broker.topics import Topics

if TYPE_CHECKING:
    from agent.net.agent import NetAgent

__all__ = ["NodeAgent", "make_driver"]

log = logging.getLogger("shoal.agent")


def make_driver(name: str, state_dir: Path) -> Driver:
    """The task driver by name; "auto" is docker when an engine socket exists, else process."""
    if name == "auto":
        sock = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        name = "docker" if Path(sock.removeprefix("unix://")).exists() else "process"
    if name == "docker":
        from agent.worker.docker import DockerDriver

        return DockerDriver()
    if name == "process":
        from agent.worker.process import ProcessDriver

        return ProcessDriver(state_dir / "processes")
    if name == "hollow":
        from agent.worker.hollow import HollowDriver

        return HollowDriver()
    raise ValueError(f"unknown task driver {name!r}: use docker, process, hollow or auto")


class NodeAgent:
    def __init__(
        self,
        *,
        node_id: str,
        cluster_id: str,
        hostname: str,
        role: str,
        session: Session,
        state_dir: Path,
        driver: Driver,
        heartbeat: float = 60.0,
        batch_window: float = 0.02,
        key_loader: KeyLoader | None = None,
        data_path_addr: str | None = None,
        behind_nat: bool = False,
        usage_interval: float = 0.0,
        usage_path: Path | None = None,
    ) -> None:
        """``key_loader`` returns the node's private key, to open the secrets sent to it;
        ``usage_interval`` is how often ``mon/node/<id>/usage`` is sampled (0: never), of the
        filesystem holding ``usage_path`` (default: ``state_dir``)."""
        self.node_id = node_id
        self.hostname = hostname
        self.role = role
        self.session = session
        self.topics = Topics(cluster_id)
        self.driver = driver
        self.heartbeat = heartbeat
        self.batch_window = batch_window
        self.assign_version = -1
        self.leaving = False
        self.managers_heard = time.monotonic()  # the last "ack" from the leader
        self.executor = Executor(
            driver,
            state_dir,
            self._report,
            node_id=node_id,
            cluster_id=cluster_id,
            local_restarts=self.autonomous,
            key_loader=key_loader,
            before_stop=self._drain,
        )
        self._outbox: dict[str, TaskStatus] = {}
        self._flush_soon: asyncio.TimerHandle | None = None
        self._flushed_at = float("-inf")  # loop time of the last status flush
        self.data_path_addr = data_path_addr
        self.behind_nat = behind_nat
        self.net: NetAgent | None = None
        if driver.name != "hollow":
            self.net = _net_agent(node_id, self.underlay, state_dir / "net")
            if hasattr(driver, "network"):
                driver.network = self.net
        self.usage = UsageReporter(
            session=session,
            topics=self.topics,
            node_id=node_id,
            driver=driver,
            running=self.executor.running,
            interval=usage_interval,
            disk_path=usage_path or state_dir,
        )
        session.on(self.topics.node_assign(node_id), self._on_assign)
        session.on(self.topics.node_net(node_id), self._on_net)
        session.on_connect(self._on_connect)

    async def _drain(self, task_id: str) -> None:
        if self.net is not None and self.session.connected:
            await self.net.drained(task_id)

    def underlay(self) -> str | None:
        """The address other nodes reach this node's overlay traffic at."""
        return self.data_path_addr or self.session.local_address()

    async def _on_net(self, topic: str, env: Envelope) -> None:
        if self.net is None:
            return
        if env.type != "net" or not isinstance(env.body, dict):
            self.session.rejections.reject(topic, "not a routing table")
            return
        await self.net.on_table(env.body)

    def autonomous(self) -> bool:
        """True while this node restarts its own tasks: cut off from the broker, or the managers
        have not answered for three heartbeats (no leader, say). Otherwise managers decide."""
        silent = time.monotonic() - self.managers_heard > 3 * self.heartbeat + 5
        return not self.session.connected or silent

    def managers_answered(self) -> None:
        self.managers_heard = time.monotonic()

    # assignments in ----------------------------------------------------------------------
    async def _on_assign(self, topic: str, env: Envelope) -> None:
        if self.leaving:
            return  # the node is leaving the swarm: its tasks are being removed
        body = env.body
        if env.type != "assign" or not isinstance(body, dict):
            self.session.rejections.reject(topic, "not an assignment set")
            return
        version, tasks = body.get("version"), body.get("tasks")
        if type(version) is not int or not isinstance(tasks, list):
            self.session.rejections.reject(topic, "assignment set without version and tasks")
            return
        if version < self.assign_version:
            self.session.rejections.reject(topic, "assignment set older than the one applied")
            return
        good: list[Assignment] = []
        for raw in tasks:
            try:
                good.append(Assignment.from_dict(raw))
            except AssignmentError as exc:
                self.session.rejections.reject(topic, f"bad assignment: {exc}")
        if len(good) != len(tasks):
            # a set with broken members is not the managers' intent: keep what runs
            return
        try:
            secrets = parse_secrets(body.get("secrets"))
            configs = parse_configs(body.get("configs"))
            check_references(good, secrets, configs)
        except AssignmentError as exc:
            self.session.rejections.reject(topic, f"bad assignment set: {exc}")
            return
        self.assign_version = version
        await self.executor.set_assignments(good, secrets=secrets, configs=configs)

    # status out --------------------------------------------------------------------------
    def _report(self, status: TaskStatus) -> None:
        """Queue a status: the first after a quiet spell leaves on the loop's next turn (with
        whatever else this turn reported), later ones at most once a ``batch_window``."""
        self._outbox[status.task_id] = status
        if self._flush_soon is None:
            loop = asyncio.get_running_loop()
            wait = max(0.0, self._flushed_at + self.batch_window - loop.time())
            self._flush_soon = loop.call_later(wait, lambda: loop.create_task(self._flush()))

    async def _flush(self) -> None:
        self._flush_soon = None
        self._flushed_at = asyncio.get_running_loop().time()
        if not self._outbox or not self.session.connected:
            return  # kept; sent in full on the next connect
        batch, self._outbox = list(self._outbox.values()), {}
        try:
            await self.session.send(
                self.topics.node_status(self.node_id),
                "status",
                {"tasks": [s.to_dict() for s in batch]},
            )
            await self._publish_tasks()
        except BrokerError:
            for s in batch:
                self._outbox.setdefault(s.task_id, s)

    async def _publish_tasks(self) -> None:
        doc = {
            tid: {
                "state": s.state.value,
                "message": s.message,
                "error": s.err,
                "exit_code": s.exit_code,
                "container_id": s.container_id,
                "restarts": s.restarts,
                "health": s.health,
                "timestamp": s.timestamp,
            }
            for tid, s in sorted(self.executor.status().items())
        }
        await self.session.publish(
            self.topics.mon("node", self.node_id, "tasks"), json.dumps(doc).encode(), retain=True
        )

    def description(self) -> dict[str, Any]:
        mem = 0
        with contextlib.suppress(OSError, ValueError, IndexError):
            mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
        return {
            "hostname": self.hostname,
            "role": self.role,
            "platform": {"os": platform.system().lower(), "arch": platform.machine()},
            "resources": {"nano_cpus": (os.cpu_count() or 1) * 10**9, "memory_bytes": mem},
            "engine": {"driver": self.driver.name},
            "kernel": platform.release(),
            "heartbeat": self.heartbeat,  # managers count this node down after 3 unheard
            **({"addresses": [a]} if (a := self.underlay()) else {}),
            **({"nat": True} if self.behind_nat else {}),
        }

    async def _on_connect(self) -> None:
        """After every (re)connect: who we are, and the full state of our tasks, so managers
        reconcile with the node as it is, without touching healthy tasks."""
        desc = self.description()
        engine_info = getattr(self.driver, "engine_info", None)
        if engine_info is not None:
            with contextlib.suppress(Exception):
                desc["engine"] = await asyncio.wait_for(engine_info(), 5)
        await self.session.send(self.topics.node_status(self.node_id), "describe", desc)
        await self.session.publish(
            self.topics.mon("node", self.node_id, "description"),
            json.dumps(desc).encode(),
            retain=True,
        )
        for status in self.executor.status().values():
            self._outbox.setdefault(status.task_id, status)
        await self._flush()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            if not self.session.connected:
                continue
            # only that it is alive: the numbers are in mon/node/<id>/usage. QoS 0, as the
            # leader's "ack": a lost one is the next one's to make up, and a PUBACK would cost
            # as much as the message
            with contextlib.suppress(BrokerError):
                await self.session.send(
                    self.topics.node_status(self.node_id), "heartbeat", {}, qos=0
                )

    async def _net_after_adoption(self) -> None:
        await self.executor.adopted.wait()
        if self.net is not None:
            self.net.known()

    async def run(self) -> None:
        beats = asyncio.create_task(self._heartbeats())
        net_ready = asyncio.create_task(self._net_after_adoption())
        usage = asyncio.create_task(self.usage.run())
        try:
            await self.executor.run()
        finally:
            for side in (beats, net_ready, usage):
                side.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats
            if self.net is not None:
                await self.net.close(leaving=self.leaving)
            await self.driver.close()


def _net_agent(node_id: str, underlay: Callable[[], str | None], state_dir: Path) -> NetAgent:
    from agent.net.agent import NetAgent, kernel_networking
    from agent.net.linux import LinuxNetwork

    why = kernel_networking() or _claim_kernel_networking()
    if why is not None:
        log.info("no overlay networks on this node: %s", why)
    kernel = LinuxNetwork(node_id) if why is None else None
    return NetAgent(node_id, underlay=underlay, kernel=kernel, state_dir=state_dir)


_claims: list[int] = []  # lock files held for the life of the process


def _claim_kernel_networking() -> str | None:
    """One node per network namespace sets up overlay networking (several nodes on one
    machine, as in tests, would fight over the same devices); None when this one may."""
    if _claims:
        return None  # this process holds it already
    try:
        ino = os.stat("/proc/self/ns/net").st_ino
        directory = Path("/run/shoal")
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / f"net-{ino}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        return f"cannot claim this host's overlay networking: {exc}"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return "another shoal node on this host runs its overlay networking"
    _claims.append(fd)
    return None
