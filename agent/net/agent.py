"""This node's side of networking: it applies the routing table the leader publishes to it.

The table (see :mod:`agent.manager.reconcile.routes`) arrives retained on ``node/<id>/net``. From
it:

- the kernel backend (:class:`agent.net.linux.LinuxNetwork`) gets the overlay networks
  this node's tasks are on (a bridge and a VXLAN device each, with every remote endpoint
  programmed), each task's network namespace with its addresses, and each task's VIP rules;
- the embedded DNS server (:class:`agent.net.dns.DnsServer`) answers, on each network's
  gateway address, the names the table gives the asking task's networks (service names and
  aliases, ``tasks.<service>``), and forwards every other name to this node's resolvers;
- the routing mesh (:class:`agent.net.mesh.Mesh`) listens on every port published in
  ingress mode, leaving towards the backends from this node's own ingress address, and on
  host-mode ports of tasks that have a namespace of their own.

A task that joins a network (process driver) waits, before it starts, until the table holds
its addresses; :meth:`NetAgent.namespace_for` then makes its namespace. A node that cannot
change its kernel's networking (not root, no ``ip`` command) still runs the mesh and host
ports; a task that needs an overlay network is refused there with the reason.

A malformed table is counted and ignored: what was applied stays applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.model import Assignment
from agent.model import check_table as _check
from agent.model.errors import TaskRejected
from agent.net.dns import DnsServer, read_resolv_conf
from agent.net.errors import MeshError
from agent.net.linux import (
    Interface,
    LinuxNetwork,
    NetworkState,
    NodeState,
    Peer,
    TaskNetState,
    Vip,
)
from agent.net.mesh import Mesh
from agent.net.plan import DEVICE_PREFIXES, namespace_name

__all__ = ["NetAgent", "NetworkUnavailable", "kernel_networking"]

log = logging.getLogger("shoal.net")

_NO_UNDERLAY = "this node does not know its own address yet"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

INGRESS = "ingress"


class NetworkUnavailable(TaskRejected):
    """A task needs an overlay network this node cannot give it."""


def kernel_networking() -> str | None:
    """Why this node cannot run overlay networks (None when it can)."""
    if os.environ.get("SHOAL_OVERLAY") == "off":
        return "overlay networks are turned off on this node (SHOAL_OVERLAY=off)"
    if os.geteuid() != 0:
        return "overlay networks need root (or CAP_NET_ADMIN) on the node"
    for command in ("ip", "iptables", "bridge"):
        if shutil.which(command) is None:
            return f"overlay networks need the {command} command on the node"
    return None


def needs_network(a: Assignment) -> bool:
    return bool(a.spec.networks) or any(p.publish_mode == "ingress" for p in a.ports)


class NetAgent:
    def __init__(
        self,
        node_id: str,
        *,
        underlay: Callable[[], str | None],
        kernel: LinuxNetwork | None,
        mesh: Mesh | None = None,
        dns_port: int = 53,
        resolv_conf: Path = Path("/etc/resolv.conf"),
        wait: float = 15.0,
        state_dir: Path | None = None,
    ) -> None:
        """``state_dir`` holds the resolv.conf files of container tasks."""
        self.node_id = node_id
        self.state_dir = state_dir
        self.underlay = underlay
        self.kernel = kernel
        self.mesh = mesh if mesh is not None else Mesh()
        self.wait = wait
        self.table: dict[str, Any] = {}
        self.rejected = 0
        self.problems: list[str] = []
        upstreams: list[tuple[str, int]] = []
        with contextlib.suppress(OSError):
            upstreams = [(a, 53) for a in read_resolv_conf(resolv_conf.read_text())]
        self.dns = DnsServer(self.lookup, upstreams=upstreams, port=dns_port)
        self._namespaces: dict[str, str] = {}  # task id -> "name:<netns>" or "pid:<pid>"
        self._changed = asyncio.Condition()
        self._dirty = asyncio.Event()
        self._names: dict[str, dict[str, list[str]]] = {}  # task address -> name -> answers
        self._applier: asyncio.Task[None] | None = None
        self._applying = asyncio.Lock()
        # The kernel is left alone until the tasks already running here are known (after a
        # restart): applying before that would take their interfaces away.
        self.tasks_known = asyncio.Event()
        self.applied = 0

    # the table in ---------------------------------------------------------------------------
    async def on_table(self, table: object) -> None:
        problem = _check(table)
        if problem is not None:
            self.rejected += 1
            log.warning("routing table rejected: %s", problem)
            return
        assert isinstance(table, dict)
        if table.get("node") != self.node_id:
            self.rejected += 1
            log.warning("routing table for node %s rejected on %s", table.get("node"), self.node_id)
            return
        self.table = table
        self._index_names()
        self._kick()
        async with self._changed:
            self._changed.notify_all()

    def _kick(self) -> None:
        self._dirty.set()
        if self._applier is None or self._applier.done():
            self._applier = asyncio.get_running_loop().create_task(self._apply_loop())

    async def _apply_loop(self) -> None:
        while self._dirty.is_set():
            self._dirty.clear()
            try:
                await self.apply()
            except Exception:  # never lose the agent over one table
                log.exception("applying the routing table failed")

    # tasks ----------------------------------------------------------------------------------
    async def _addresses(self, a: Assignment) -> LinuxNetwork:
        """Wait until the table gives the task its addresses; the kernel backend to use."""
        if self.kernel is None:
            raise NetworkUnavailable(kernel_networking() or "this node runs no overlay networks")
        try:
            async with asyncio.timeout(self.wait):
                await self.tasks_known.wait()
                async with self._changed:
                    await self._changed.wait_for(lambda: a.task_id in self.tasks())
        except TimeoutError:
            raise NetworkUnavailable(
                f"no network addresses for this task arrived within {self.wait:g} s"
            ) from None
        return self.kernel

    async def container_network(self, a: Assignment) -> str | None:
        """For a container task that joins networks: the resolv.conf file it gets (it then
        starts with no network of the engine's; :meth:`attach_container` wires it in)."""
        if not needs_network(a):
            return None
        await self._addresses(a)
        if self.state_dir is None:
            raise NetworkUnavailable("this node keeps no network state for containers")
        interfaces = self.tasks()[a.task_id]
        networks = self.table.get("networks") or {}
        first = next((networks[i["network"]] for i in interfaces if i["network"] in networks), None)
        lines = [f"nameserver {first['gateway']}"] if first else []
        lines.append("options ndots:0")
        path = self.state_dir / a.task_id / "resolv.conf"
        await asyncio.to_thread(_write_text, path, "\n".join(lines) + "\n")
        return str(path)

    async def namespace_for(self, a: Assignment) -> str | None:
        """The named network namespace a process task runs in (None: it joins no network)."""
        if not needs_network(a):
            return None
        kernel = await self._addresses(a)
        netns = await kernel.create_task_namespace(a.task_id)
        self._namespaces[a.task_id] = netns
        mine = f"task {a.task_id}:"
        problems = [p for p in await self.apply() if p.startswith(mine) or p == _NO_UNDERLAY]
        if problems:
            raise NetworkUnavailable("; ".join(problems))
        return netns.removeprefix("name:")

    async def drained(self, task_id: str, timeout: float = 1.0) -> None:
        """Return once the table no longer lists the task (the managers took it out of every
        rotation: VIPs, names, the routing mesh), or after ``timeout`` seconds."""
        if task_id not in self.tasks():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: task_id not in self.tasks())

    def known(self) -> None:
        """The tasks already running on this node are known: the kernel may be changed."""
        self.tasks_known.set()
        self._kick()

    def attach_container(self, task_id: str, pid: int) -> None:
        """A container task's network namespace, by its first process."""
        netns = f"pid:{pid}"
        if self._namespaces.get(task_id) != netns:
            self._namespaces[task_id] = netns
            self._kick()

    def tasks(self) -> dict[str, list[dict[str, str]]]:
        tasks = self.table.get("tasks") or {}
        return tasks if isinstance(tasks, dict) else {}

    # applying -------------------------------------------------------------------------------
    async def apply(self) -> list[str]:
        """Apply the latest table; the problems the kernel backend reported (also logged)."""
        async with self._applying:
            return await self._apply()

    async def _apply(self) -> list[str]:
        table = self.table
        if not table or not self.tasks_known.is_set():
            return []
        listed = self.tasks()
        for task_id in listed:
            if task_id not in self._namespaces and self.kernel is not None:
                name = namespace_name(self.node_id, task_id)  # a process task's, kept running
                if os.path.exists(f"/run/netns/{name}"):
                    self._namespaces[task_id] = f"name:{name}"
        for task_id in [t for t in self._namespaces if t not in listed]:
            del self._namespaces[task_id]  # the kernel backend removes what it made for it
        if self.state_dir is not None and self.state_dir.is_dir():
            for entry in self.state_dir.iterdir():
                if entry.name not in listed:
                    await asyncio.to_thread(shutil.rmtree, entry, True)
        if self.kernel is not None:
            underlay = self.underlay()
            if underlay is None:
                self.problems = [_NO_UNDERLAY]
            else:
                state, refused = self._state(table, underlay, await self._taken())
                self.problems = refused + await self.kernel.apply(state)
            for problem in self.problems:
                log.warning("network: %s", problem)
            gateways = [
                str(n["gateway"]) for i, n in (table.get("networks") or {}).items() if i != INGRESS
            ]
            for error in await self.dns.listen(gateways):
                log.warning("dns: %s", error)
        try:
            await self.mesh.apply({"ingress": self._ports(table)})
        except MeshError as exc:
            log.warning("routing mesh: %s", exc)
        self.applied += 1
        return list(self.problems)

    def _state(
        self, table: Mapping[str, Any], underlay: str, taken: Sequence[tuple[IPNetwork, str]] = ()
    ) -> tuple[NodeState, list[str]]:
        """The kernel's desired state, and the networks this node must refuse: those whose
        subnet overlaps ``taken`` (this node's own routes and resolvers, with what they are),
        which shoal would otherwise take over, cutting the node off from them."""
        family = ":" in underlay
        networks = []
        refused: list[str] = []
        overlays: dict[str, Any] = dict(table.get("networks") or {})
        ingress = table.get("ingress") or {}
        if ingress.get("subnet") and (ingress.get("node_address") or ingress.get("local")):
            overlays[INGRESS] = ingress
        for ident, net in sorted(overlays.items()):
            subnet = ipaddress.ip_network(str(net["subnet"]))
            clash = next((what for other, what in taken if other.overlaps(subnet)), None)
            if clash is not None:
                name = net.get("name") or ident
                why = (
                    f"network {name} ({subnet}) overlaps {clash} on this node: its tasks cannot"
                    " join it here without cutting the node off; give the network another subnet"
                )
                refused.append(why)
                for task_id, interfaces in self.tasks().items():
                    if task_id in self._namespaces and any(
                        i.get("network") == ident for i in interfaces
                    ):
                        refused.append(f"task {task_id}: {why}")
                continue
            peers = []
            for p in net.get("remote") or []:
                via = _first_ip(p.get("via") or [], family)
                if p.get("reachable") and via is not None:
                    peers.append(Peer(str(p["address"]), via))
            networks.append(
                NetworkState(
                    ident=ident,
                    subnet=str(net["subnet"]),
                    gateway=str(net["gateway"]),
                    vni=int(net["vni"]),
                    node_address=net.get("node_address") if ident == INGRESS else None,
                    peers=tuple(sorted(set(peers), key=lambda p: (p.address, p.via))),
                )
            )
        known = {n.ident for n in networks}
        tasks = []
        for task_id, interfaces in sorted(self.tasks().items()):
            netns = self._namespaces.get(task_id)
            if netns is None:
                continue
            mine = [i for i in interfaces if i.get("network") in known]
            vips = [
                Vip(str(v["vip"]), tuple(str(b) for b in v.get("backends") or []))
                for i in mine
                if i["network"] != INGRESS
                for v in overlays[i["network"]].get("vips") or []
            ]
            named = [i for i in mine if i["network"] != INGRESS]  # ingress has no names
            first = overlays[named[0]["network"]] if named else None
            tasks.append(
                TaskNetState(
                    task_id=task_id,
                    netns=netns,
                    interfaces=tuple(Interface(i["network"], str(i["address"])) for i in mine),
                    vips=tuple(vips),
                    nameserver=str(first["gateway"]) if first else None,
                )
            )
        state = NodeState(underlay=underlay, networks=tuple(networks), tasks=tuple(tasks))
        return state, refused

    async def _taken(self) -> list[tuple[IPNetwork, str]]:
        """This node's own routes (not shoal's, not the default) and resolvers."""
        taken: list[tuple[IPNetwork, str]] = []
        for host, _ in self.dns.upstreams:
            with contextlib.suppress(ValueError):
                ip = ipaddress.ip_address(host)
                if not ip.is_loopback:
                    taken.append((ipaddress.ip_network(ip), f"its resolver {ip}"))
        try:
            proc = await asyncio.create_subprocess_exec(
                "ip", "-j", "route", "show", "table", "main",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), 10)
            finally:
                if proc.returncode is None:  # timed out or cancelled: leave nothing behind
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            routes = json.loads(out or b"[]")
        except (OSError, TimeoutError, ValueError) as exc:
            log.warning("cannot read this node's routes: %s", exc)
            return taken
        for route in routes if isinstance(routes, list) else []:
            dst, dev = str(route.get("dst", "")), str(route.get("dev", ""))
            if dst in ("", "default") or dev.startswith(DEVICE_PREFIXES):
                continue
            with contextlib.suppress(ValueError):
                taken.append((ipaddress.ip_network(dst, strict=False), f"its route {dst} ({dev})"))
        return taken

    def _ports(self, table: Mapping[str, Any]) -> list[dict[str, Any]]:
        ingress = table.get("ingress") or {}
        source = ingress.get("node_address") if self.kernel is not None else None
        ports = []
        for port in ingress.get("ports") or []:
            ports.append(
                {
                    "protocol": port["protocol"],
                    "published": port["published"],
                    "proxy_protocol": port.get("proxy_protocol", False),
                    "source": source,
                    "backends": [
                        {"host": b["address"], "port": port["target"]}
                        for b in port.get("backends") or []
                        if b.get("reachable")
                    ],
                }
            )
        for port in table.get("host_ports") or []:
            address = port.get("address")
            if address is None or port["task"] not in self._namespaces:
                continue  # the task listens on this node's own addresses, or its engine does
            ports.append(
                {
                    "protocol": port["protocol"],
                    "published": port["published"],
                    "proxy_protocol": port.get("proxy_protocol", False),
                    "backends": [{"host": address, "port": port["target"]}],
                }
            )
        return ports

    # DNS ------------------------------------------------------------------------------------
    def _index_names(self) -> None:
        networks = self.table.get("networks") or {}
        names: dict[str, dict[str, list[str]]] = {}
        for interfaces in self.tasks().values():
            merged: dict[str, list[str]] = {}
            for i in interfaces:
                for name, answers in (networks.get(i.get("network")) or {}).get("dns", {}).items():
                    merged.setdefault(name.lower(), [])
                    merged[name.lower()] += [a for a in answers if a not in merged[name.lower()]]
            for i in interfaces:
                names[str(i.get("address"))] = merged
        self._names = names

    def lookup(self, client: str, name: str) -> list[str] | None:
        """Addresses for ``name`` asked by the task at ``client``; None: not a cluster name."""
        return self._names.get(client, {}).get(name.lower().rstrip("."))

    # the end --------------------------------------------------------------------------------
    async def close(self, *, leaving: bool = False) -> None:
        if self._applier is not None:
            self._applier.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._applier
        await self.mesh.close()
        await self.dns.close()
        if leaving and self.kernel is not None:
            await self.kernel.remove_all()


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _first_ip(candidates: list[Any], v6: bool) -> str | None:
    for c in candidates:
        try:
            ip = ipaddress.ip_address(str(c))
        except ValueError:
            continue
        if (ip.version == 6) == v6:
            return str(ip)
    return None
