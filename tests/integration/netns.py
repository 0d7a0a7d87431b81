"""A small fabric of network namespaces for networking tests: one underlay namespace holding a
bridge, and one namespace per node wired to it by a veth pair, each with its own private
address. Nothing is created in the namespace the tests run in, and everything is removed."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

__all__ = ["Fabric", "can_make_namespaces", "fabric"]


def can_make_namespaces() -> str | None:
    """Why namespace tests cannot run here (None when they can)."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for command in ("ip", "nsenter", "iptables"):
        if shutil.which(command) is None:
            return f"needs the {command} command"
    probe = f"shprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create network namespaces here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def run(*argv: str, check: bool = True, timeout: float = 30) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class Fabric:
    tag: str
    prefix: str  # e.g. "10.123.45": nodes get prefix.11, .12, ...
    underlay: str
    nodes: dict[str, str] = field(default_factory=dict)  # name -> namespace
    addresses: dict[str, str] = field(default_factory=dict)  # name -> address

    def add(self, name: str) -> str:
        ns = f"shn{self.tag}{name}"
        address = f"{self.prefix}.{11 + len(self.nodes)}"
        run("ip", "netns", "add", ns)
        self.nodes[name] = ns
        self.addresses[name] = address
        port = f"u{self.tag}{name}"[:15]
        run(
            "ip",
            "-n",
            self.underlay,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "eth0",
            "netns",
            ns,
        )
        run("ip", "-n", self.underlay, "link", "set", port, "master", "br0", "up")
        run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def exec(self, name: str, *argv: str, check: bool = True, timeout: float = 30) -> str:
        return run("ip", "netns", "exec", self.nodes[name], *argv, check=check, timeout=timeout)

    def prefix_of(self, name: str) -> Sequence[str]:
        """Run a command in the node's network namespace, and only there: unlike `ip netns
        exec`, nsenter keeps the mount namespace, so namespaces the command creates (a task's)
        are seen by everyone, as on a real host."""
        return ("nsenter", f"--net=/run/netns/{self.nodes[name]}")


@contextlib.contextmanager
def fabric(*names: str, tag: str | None = None) -> Iterator[Fabric]:
    """The fabric, its namespaces and devices named with ``tag`` (random unless given)."""
    tag = tag or f"{random.randrange(16**4):04x}"
    f = Fabric(tag, f"10.{random.randrange(100, 200)}.{random.randrange(256)}", f"shu{tag}")
    try:
        run("ip", "netns", "add", f.underlay)
        run("ip", "-n", f.underlay, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", f.underlay, "link", "set", "br0", "up")
        for name in names:
            f.add(name)
        yield f
    finally:
        for ns in [*f.nodes.values(), f.underlay]:
            run("ip", "netns", "del", ns, check=False)
