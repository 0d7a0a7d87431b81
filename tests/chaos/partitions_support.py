"""A swarm of network namespaces for partition tests: three managers (m1 hosts the embedded
broker) and a worker, each node a namespace of its own on one underlay bridge
(tests/integration/netns.py). A node is cut from the broker with iptables DROP rules in its
namespace: on its underlay device, or for m1 on loopback, which carries m1's own connection
to the broker it hosts (the other nodes reach that broker over the underlay). Established
connections are then reset on both ends (`ss -K`), as a short keepalive would find them dead:
the broker publishes the node's will and the node starts reconnecting, into the DROP rules.
Every namespace and device name contains "orph"."""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.net.plan import namespace_prefix
from tests.harness import free_ports, kill_leftovers, kill_processes_under, wait_for
from tests.integration.netns import Fabric, fabric, run

__all__ = ["PartitionSwarm", "partition_swarm"]

BROKER_HOST = "m1"
NAMES = ("m1", "m2", "m3", "w1")


@dataclass
class PartitionSwarm:
    f: Fabric
    root: Path
    port: int
    data: dict[str, Path] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    cut_off: set[str] = field(default_factory=set)

    # commands ---------------------------------------------------------------------------
    def shoal(
        self, *args: str, node: str = "m1", check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        cmd = [*self.f.prefix_of(node), sys.executable, "-m", "agent.cli"]
        cmd += ["--data-dir", str(self.data[node]), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def info(self, node: str) -> dict[str, Any]:
        proc = self.shoal("info", "--format", "json", node=node, check=False)
        return dict(json.loads(proc.stdout)) if proc.returncode == 0 else {}

    def leader(self) -> str | None:
        """The manager every reachable manager names as leader, when they agree."""
        seen = {self.info(n).get("leader") for n in ("m1", "m2", "m3") if n not in self.cut_off}
        by_id = {v: k for k, v in self.ids.items()}
        return by_id.get(seen.pop()) if len(seen) == 1 else None

    def applied(self) -> dict[str, int | None]:
        return {n: self.info(n).get("applied") for n in ("m1", "m2", "m3")}

    def configs(self, node: str) -> set[str]:
        out = self.shoal("config", "ls", "--format", "json", node=node).stdout
        return {json.loads(line)["name"] for line in out.splitlines() if line.strip()}

    def write(self, name: str, node: str, timeout: float = 40) -> tuple[bool, float]:
        """One write (a config) through `node`'s CLI: whether it was acknowledged, and the
        seconds it took to answer."""
        path = self.root / "config.txt"
        path.write_text("orph\n")
        started = time.monotonic()
        proc = self.shoal("config", "create", name, str(path), node=node, check=False,
                          timeout=timeout)  # fmt: skip
        return proc.returncode == 0, time.monotonic() - started

    # faults -----------------------------------------------------------------------------
    def _rules(self, node: str) -> list[list[str]]:
        if node == BROKER_HOST:
            port = str(self.port)
            return [
                ["INPUT", "-i", "lo", "-p", "tcp", "--dport", port, "-j", "DROP"],
                ["INPUT", "-i", "lo", "-p", "tcp", "--sport", port, "-j", "DROP"],
            ]
        return [["INPUT", "-i", "eth0", "-j", "DROP"], ["OUTPUT", "-o", "eth0", "-j", "DROP"]]

    def cut(self, node: str) -> None:
        """Cut `node` from the broker (and only it)."""
        ns = self.f.nodes[node]
        for rule in self._rules(node):
            run("ip", "netns", "exec", ns, "iptables", "-I", *rule)
        self.cut_off.add(node)
        address = self.f.addresses[node]
        broker_ns = self.f.nodes[BROKER_HOST]
        run("ip", "netns", "exec", broker_ns, "ss", "-K", "-t", "dst", address, check=False)
        if node != BROKER_HOST:
            broker = self.f.addresses[BROKER_HOST]
            run("ip", "netns", "exec", ns, "ss", "-K", "-t", "dst", broker, check=False)

    def heal(self, node: str) -> None:
        ns = self.f.nodes[node]
        for rule in self._rules(node):
            run("ip", "netns", "exec", ns, "iptables", "-D", *rule, check=False)
        self.cut_off.discard(node)

    def connected(self, node: str) -> bool:
        return bool(self.info(node).get("connected"))


@contextlib.contextmanager
def partition_swarm(root: Path) -> Iterator[PartitionSwarm]:
    """The swarm, made the way users make one (`swarm init`, `swarm join`), in namespaces;
    every node leaves, and every namespace goes, afterwards."""
    port, enroll = free_ports(2)
    with fabric(*NAMES, tag=f"orph{random.randrange(16**3):03x}") as f:
        s = PartitionSwarm(f, root, port)
        s.data = {name: root / name for name in NAMES}
        try:
            _start(s, enroll)
            yield s
        finally:
            _stop(s)


def _start(s: PartitionSwarm, enroll: int) -> None:
    m1 = s.f.addresses[BROKER_HOST]
    s.shoal(
        "swarm", "init", "--listen-addr", f"{m1}:{s.port}", "--advertise-addr", m1,
        "--enroll-port", str(enroll), "--hostname", "m1", "--driver", "process",
    )  # fmt: skip
    for name in NAMES[1:]:
        role = "worker" if name.startswith("w") else "manager"
        token = s.shoal("swarm", "join-token", "-q", role).stdout.strip()
        s.shoal(
            "swarm", "join", "--token", token, "--hostname", name,
            "--enroll-port", str(enroll), "--driver", "process",
            f"mqtts://{m1}:{s.port}", node=name,
        )  # fmt: skip
    for name in NAMES:
        s.ids[name] = s.info(name)["node_id"]
    wait_for(lambda: s.leader() == "m1", 30, "every manager to follow m1")
    wait_for(lambda: len(set(s.applied().values())) == 1, 30, "the managers in step")


def _stop(s: PartitionSwarm) -> None:
    for name in NAMES:
        s.heal(name)
    for name in reversed(NAMES):
        if (s.data[name] / "node.json").exists():
            s.shoal("swarm", "leave", "--force", node=name, check=False)
    for d in s.data.values():
        kill_leftovers(d)
    kill_processes_under(s.root)
    for line in run("ip", "netns", "list", check=False).splitlines():
        ns = line.split()[0] if line.strip() else ""
        if any(ns.startswith(namespace_prefix(node_id)) for node_id in s.ids.values()):
            run("ip", "netns", "del", ns, check=False)
