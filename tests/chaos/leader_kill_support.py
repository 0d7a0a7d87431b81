"""Support for the leader-kill chaos test: managers as processes, writers that remember what
was acknowledged, and a reader of each manager's own store (its write-ahead log, replayed
offline after the managers stop), so every replica is checked, not just the leader's view."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness import (
    info_of,
    shoal,
    wait_for,
)

IMAGE = "shoal/busybox:latest"


def leader(alive: set[Path]) -> Path:
    def find() -> Path | None:
        for d in sorted(alive):
            i = info_of(d)
            if i and i.get("is_leader"):
                return d
        return None

    found: Path = wait_for(find, 20, "a leader")
    return found


def kill9(data: Path) -> None:
    os.kill(int((data / "shoal.pid").read_text()), signal.SIGKILL)


def stop_all(dirs: list[Path], procs: list[subprocess.Popen[bytes]]) -> None:
    """Kill every manager's daemon with -9 and wait until each is gone."""
    pids = []
    for d in dirs:
        with contextlib.suppress(OSError, ValueError):
            pid = int((d / "shoal.pid").read_text())
            os.kill(pid, signal.SIGKILL)
            pids.append(pid)
    for p in procs:
        p.wait(20)

    def gone() -> bool:
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().split()[2]
            except OSError:
                continue
            if state != "Z":
                return False
        return True

    wait_for(gone, 20, "the managers to stop")


@dataclass
class History:
    """What the writers sent: names acknowledged, and names whose create failed or timed out
    (they may or may not have been applied, but at most once)."""

    acked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Writers:
    """One thread per target manager, each creating services `kN` one after another."""

    def __init__(self, targets: list[Path]) -> None:
        self.targets = targets
        self.history = History()
        self._stop = threading.Event()
        self._names = itertools.count(1)
        self._threads = [
            threading.Thread(target=self._loop, args=(t,), daemon=True) for t in targets
        ]

    def __enter__(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(90)

    def _loop(self, target: Path) -> None:
        while not self._stop.is_set():
            name = f"k{next(self._names)}"
            try:
                proc = shoal(
                    "service", "create", "--name", name, "--replicas", "0", "-d", IMAGE,
                    data=target, check=False, timeout=30,
                )  # fmt: skip
                ok = proc.returncode == 0
            except subprocess.TimeoutExpired:
                ok = False
            with self.history.lock:
                (self.history.acked if ok else self.history.failed).append(name)
            if not ok:
                self._stop.wait(0.2)  # its manager is down or restarting


def listed(data: Path) -> Counter[str] | None:
    """Service names as `service ls` through this manager shows them (the leader's view)."""
    proc = shoal("service", "ls", "--format", "json", data=data, check=False, timeout=20)
    if proc.returncode != 0:
        return None
    return Counter(json.loads(line)["name"] for line in proc.stdout.splitlines() if line.strip())


def replayed_services(data: Path, upto: int) -> Counter[str]:
    """Service names in this manager's own store at log index `upto`, rebuilt from its
    snapshot and write-ahead log (the manager must be stopped)."""
    from agent.manager.keys import DataKeyFile
    from agent.manager.raft import EntryType
    from agent.manager.store import Service, Store
    from agent.manager.wal import DiskStorage

    key = DataKeyFile(data / "manager" / "data-key").load(None)
    storage = DiskStorage(data / "manager" / "raft", key)
    try:
        snap = storage.snapshot()
        store = Store()
        store.restore(snap.data, snap.index)
        hi = min(upto, storage.last_index())
        if hi > snap.index:
            for e in storage.entries(snap.index + 1, hi + 1):
                if e.type is EntryType.Normal and e.data:
                    store.apply(e.index, e.data)
    finally:
        with contextlib.suppress(Exception):
            storage.close()
    return Counter(s.name for s in store.view().list(Service))


def create_spec(name: str) -> dict[str, Any]:
    """The spec `service create --name NAME --replicas 0 IMAGE` sends."""
    from agent.cli.createflags import spec_from_create
    from agent.cli.main import build_parser

    ns = build_parser().parse_args(["service", "create", "--name", name, "--replicas", "0", IMAGE])
    return spec_from_create(ns).to_dict()


async def forward_as(
    data: Path, port: int, *, cluster_id: str, to: str, body: dict[str, Any], within: float = 30
) -> dict[str, Any]:
    """Send a control command to manager `to` as the manager whose identity `data` holds
    (its daemon stopped), as a forwarding manager does; retried, with the same body, until
    an answer comes (the broker's ACL may lag a promotion). The reply's body."""
    import asyncio

    from broker.errors import BrokerError
    from broker.session import Session, SessionConfig
    from broker.tls import client_context
    from broker.topics import Topics

    ident = (info_offline_id(data), data / "tls")
    topics = Topics(cluster_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        session = Session(
            SessionConfig(
                host="127.0.0.1",
                port=port,
                client_id=ident[0],
                sender=ident[0],
                tls=lambda: client_context(
                    ident[1] / "ca.pem", ident[1] / "node.pem", ident[1] / "node-key.pem"
                ),
            )
        )
        session.on(topics.mgr_req(ident[0]), _ignore)
        session.start()
        try:
            await session.wait_connected(10)
            reply = await session.request(topics.mgr_req(to), "control", body, timeout=3)
            if isinstance(reply.body, dict) and not reply.body.get("retry"):
                return dict(reply.body)
        except BrokerError:
            if loop.time() > deadline:
                raise
        finally:
            await session.close()
        if loop.time() > deadline:
            raise AssertionError(f"no answer from {to} within {within:g} s")


async def _ignore(topic: str, env: object) -> None:
    return None


def info_offline_id(data: Path) -> str:
    """A node's id from its certificate (its daemon may be stopped)."""
    from certs import Identity, load_cert

    return str(Identity.from_cert(load_cert((data / "tls" / "node.pem").read_bytes())).node_id)
