"""The node's kernel networking: overlay networks, task interfaces and VIPs, applied declaratively.

Each overlay network is a Linux bridge holding the gateway address and a VXLAN device with
learning off and ARP proxying on: every remote endpoint gets a static FDB entry (MAC to the
underlay address of its node) and a permanent neighbour entry, both derived from the desired
state, so nothing is flooded between nodes and ARP is answered locally. Egress leaves through
the node with MASQUERADE. A task gets one veth pair per network: the host end on the bridge,
the other end ``eth<i>`` inside the task's namespace, with the address, MAC and default route.
A task's VIPs are DNAT rules in its own namespace's OUTPUT path, chosen at random per
connection; a VIP without backends refuses at once.

:meth:`LinuxNetwork.apply` compares the desired :class:`NodeState` with the devices it lists in
the node's namespace (one ``ip`` command per call) and with what it applied before, and changes
only the difference. An apply with nothing to change runs that one listing command and no
other. Names, MACs and command text come from :mod:`agent.net.plan`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from agent.model.errors import WorkerError
from agent.net.plan import (
    DEFAULT_MTU,
    DEVICE_PREFIXES,
    FORWARD_CHAIN,
    NAT_CHAIN,
    NODE_JUMPS,
    PEER_PREFIX,
    VIP_CHAIN,
    VIP_FILTER_CHAIN,
    VIP_JUMPS,
    VXLAN_OVERHEAD,
    IfacePlan,
    Interface,
    Link,
    NetworkPlan,
    NetworkState,
    NodeState,
    Peer,
    TaskNetState,
    Vip,
    bridge_name,
    fdb_lines,
    mac_for,
    namespace_name,
    namespace_prefix,
    neigh_lines,
    network_lines,
    node_rules,
    parse_fdb,
    parse_links,
    parse_neigh,
    plan_interfaces,
    plan_network,
    restore_text,
    veth_name,
    vip_rules,
    vxlan_name,
)

__all__ = [
    "Interface",
    "LinuxNetwork",
    "NetError",
    "NetworkState",
    "NodeState",
    "Peer",
    "TaskNetState",
    "Vip",
]

log = logging.getLogger("shoal.net")

NETNS_DIR = Path("/run/netns")
NETNS_ETC = Path("/etc/netns")
NODE_CHAINS = {"nat": NAT_CHAIN, "filter": FORWARD_CHAIN}
VIP_CHAINS = {"nat": VIP_CHAIN, "filter": VIP_FILTER_CHAIN}


class NetError(WorkerError):
    """A networking command failed; the message holds the command and its error output."""


@dataclass(frozen=True)
class _Task:
    """What was applied for one task."""

    netns: str
    ns_id: tuple[int, int]  # the namespace's (device, inode): a new namespace differs
    ifaces: tuple[IfacePlan, ...]
    gateway: str | None
    vips: dict[str, list[str]] | None  # None: not written (or unknown)
    resolv: str | None


class LinuxNetwork:
    """One node's overlay networking, reconciled by :meth:`apply`.

    ``run_prefix`` goes before every command acting on the node's own namespace (for example
    ``("ip", "netns", "exec", "node1")``); commands in a task's namespace use ``ip netns exec``
    or ``nsenter`` by themselves. ``commands_run`` counts every command started.
    """

    def __init__(
        self,
        node_id: str,
        *,
        run_prefix: Sequence[str] = (),
        mtu: int | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.node_id = node_id
        self.commands_run = 0
        self._prefix = tuple(run_prefix)
        self._mtu = mtu
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._ns_prefix = namespace_prefix(node_id)
        self._discovered = False
        self._owned: set[str] = set()  # named namespaces of this node's tasks (ours to delete)
        self._pending: set[str] = set()  # created, their task not yet in any applied state
        self._fresh: set[str] = set()  # created here and still empty (nothing to inspect)
        self._peers: dict[str, dict[str, str]] = {}  # network -> applied peers (address -> via)
        self._node_rules: dict[str, list[str]] | None = None
        self._forwarding = False
        self._tasks: dict[str, _Task] = {}
        self._routed_mtu: dict[str, int] = {}  # underlay address not on a local device

    # -- commands -------------------------------------------------------------------------

    async def _run(
        self, argv: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> str:
        """Run ``argv``; return its output, or raise :class:`NetError` when it fails."""
        self.commands_run += 1
        shown = shlex.join(argv) + (f" <<< {stdin.strip()!r}" if stdin else "")
        log.debug("run %s", shown)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise NetError(f"{shown}: {exc}") from exc
        try:
            async with asyncio.timeout(self._timeout):
                out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        except TimeoutError:
            raise NetError(f"{shown}: no answer in {self._timeout:g} s") from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: leave nothing behind
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if check and proc.returncode != 0:
            message = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
            raise NetError(f"{shown}: {message}")
        return out.decode(errors="replace")

    async def _node(self, *argv: str, stdin: str | None = None, check: bool = True) -> str:
        return await self._run((*self._prefix, *argv), stdin=stdin, check=check)

    async def _inside(
        self, netns: str, *argv: str, stdin: str | None = None, check: bool = True
    ) -> str:
        """Run ``argv`` in a task's namespace (``name:<n>`` or ``pid:<pid>``)."""
        kind, _, target = netns.partition(":")
        path = _ns_path(netns)
        enter = ("ip", "netns", "exec", target) if kind == "name" else ("nsenter", f"--net={path}")
        return await self._run((*enter, *argv), stdin=stdin, check=check)

    async def _links(self, netns: str | None = None) -> dict[str, Link]:
        argv = ("ip", "-d", "-j", "addr", "show")
        return parse_links(await (self._inside(netns, *argv) if netns else self._node(*argv)))

    # -- task namespaces --------------------------------------------------------------------

    async def create_task_namespace(self, task_id: str) -> str:
        """Create (if missing) the named namespace of a process task, loopback up."""
        name = namespace_name(self.node_id, task_id)
        async with self._lock:
            if not (NETNS_DIR / name).exists():
                await self._run(("ip", "netns", "add", name))
                self._fresh.add(name)
            await self._run(("ip", "-n", name, "link", "set", "lo", "up"))
            self._owned.add(name)
            self._pending.add(name)
        return f"name:{name}"

    async def _delete_namespace(self, name: str) -> None:
        if (NETNS_DIR / name).exists():
            await self._run(("ip", "netns", "del", name))
        shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        self._owned.discard(name)
        self._pending.discard(name)
        self._fresh.discard(name)

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        with contextlib.suppress(OSError):
            self._owned.update(n for n in os.listdir(NETNS_DIR) if n.startswith(self._ns_prefix))

    # -- apply ------------------------------------------------------------------------------

    async def apply(self, state: NodeState) -> list[str]:
        """Make the node's namespace match ``state``; return the problems met (per item)."""
        async with self._lock:
            return await self._apply(state)

    async def _apply(self, state: NodeState) -> list[str]:
        problems: list[str] = []
        self._discover()
        links = await self._links()
        mtu = self._mtu or await self._underlay_mtu(state.underlay, links)

        plans: dict[str, NetworkPlan] = {}
        for net in state.networks:
            try:
                plans[net.ident] = plan_network(net)
            except ValueError as exc:
                problems.append(f"network {net.ident}: {exc}")
        wanted_hosts = {veth_name(t.task_id, i.network) for t in state.tasks for i in t.interfaces}
        wanted_nets = {f(n.ident) for n in state.networks for f in (bridge_name, vxlan_name)}
        stale = [
            link.name
            for link in links.values()
            if link.name.startswith(DEVICE_PREFIXES)
            and link.name not in wanted_hosts
            and link.name not in wanted_nets
        ]
        # veth ends first (deleting one end deletes the pair), then bridges and VXLAN devices
        for name in sorted(stale, key=lambda n: not n.startswith(("she", "shp"))):
            await self._node("ip", "link", "del", name, check=False)
            links.pop(name, None)
        for ident in [i for i in self._peers if i not in plans]:
            del self._peers[ident]

        for plan in plans.values():
            try:
                await self._apply_network(plan, state.underlay, mtu, links)
            except NetError as exc:
                self._peers.pop(plan.ident, None)
                problems.append(f"network {plan.ident}: {exc}")
        try:
            await self._apply_node_rules(plans)
        except NetError as exc:
            self._node_rules = None
            problems.append(f"node firewall: {exc}")

        wanted_ns = set()
        for task in state.tasks:
            kind, _, target = task.netns.partition(":")
            if kind == "name":
                wanted_ns.add(target)
                self._pending.discard(target)
            try:
                problem = await self._apply_task(task, plans, mtu, links)
            except (NetError, OSError) as exc:
                self._tasks.pop(task.task_id, None)
                problem = str(exc)
            if problem:
                problems.append(f"task {task.task_id}: {problem}")
        desired = {t.task_id for t in state.tasks}
        for task_id in [t for t in self._tasks if t not in desired]:
            del self._tasks[task_id]
        for name in sorted(self._owned - wanted_ns - self._pending):
            try:
                await self._delete_namespace(name)
            except NetError as exc:
                problems.append(f"namespace {name}: {exc}")
        for problem in problems:
            log.warning("%s", problem)
        return problems

    async def _underlay_mtu(self, underlay: str, links: Mapping[str, Link]) -> int:
        """The MTU of the device holding (or routing to) the underlay address, less VXLAN's."""
        for link in links.values():
            if any(cidr.split("/")[0] == underlay for cidr in link.cidrs):
                return link.mtu - VXLAN_OVERHEAD
        if underlay not in self._routed_mtu:
            self._routed_mtu[underlay] = DEFAULT_MTU
            with contextlib.suppress(NetError, ValueError, LookupError):
                route = json.loads(await self._node("ip", "-j", "route", "get", underlay))
                self._routed_mtu[underlay] = links[route[0]["dev"]].mtu - VXLAN_OVERHEAD
        return self._routed_mtu[underlay]

    async def _apply_network(
        self, plan: NetworkPlan, underlay: str, mtu: int, links: Mapping[str, Link]
    ) -> None:
        if not self._forwarding:
            await self._node("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            self._forwarding = True
        lines, fresh = network_lines(plan, underlay, mtu, links)
        if lines:
            await self._node("ip", "-batch", "-", stdin=_batch(lines))
        want = dict(plan.peers)
        have = self._peers.get(plan.ident)
        if fresh:
            fdb, neigh = {}, {}
        elif have is None:  # first sight of an existing device: read what it holds
            fdb = parse_fdb(await self._node("bridge", "-j", "fdb", "show", "dev", plan.vxlan))
            neigh = parse_neigh(await self._node("ip", "-j", "neigh", "show", "dev", plan.vxlan))
        else:
            fdb = {mac_for(a): via for a, via in have.items()}
            neigh = {a: mac_for(a) for a in have}
        batch = fdb_lines(plan.vxlan, fdb, {mac_for(a): via for a, via in want.items()})
        if batch:
            await self._node("bridge", "-batch", "-", stdin=_batch(batch))
        batch = neigh_lines(plan.vxlan, neigh, {a: mac_for(a) for a in want})
        if batch:
            await self._node("ip", "-batch", "-", stdin=_batch(batch))
        self._peers[plan.ident] = want

    async def _apply_node_rules(self, plans: Mapping[str, NetworkPlan]) -> None:
        if not plans:
            if self._node_rules != {}:
                await self._remove_chains(None, NODE_JUMPS)
                self._node_rules = {}
            return
        rules = node_rules(plans.values())
        if rules == self._node_rules:
            return
        jumps = await self._missing_jumps(None, NODE_JUMPS) if not self._node_rules else ()
        text = restore_text(rules, NODE_CHAINS, jumps)
        await self._node("iptables-restore", "-w", "5", "--noflush", stdin=text)
        self._node_rules = rules

    async def _iptables(self, netns: str | None, *argv: str, check: bool = True) -> str:
        if netns is None:
            return await self._node("iptables", "-w", "5", *argv, check=check)
        return await self._inside(netns, "iptables", "-w", "5", *argv, check=check)

    async def _missing_jumps(
        self, netns: str | None, jumps: Sequence[tuple[str, str, str]]
    ) -> list[tuple[str, str, str]]:
        missing = []
        for table, builtin, chain in jumps:
            try:
                await self._iptables(netns, "-t", table, "-C", builtin, "-j", chain)
            except NetError:
                missing.append((table, builtin, chain))
        return missing

    async def _remove_chains(
        self, netns: str | None, jumps: Sequence[tuple[str, str, str]]
    ) -> None:
        for table, builtin, chain in jumps:
            await self._iptables(netns, "-t", table, "-D", builtin, "-j", chain, check=False)
            await self._iptables(netns, "-t", table, "-F", chain, check=False)
            await self._iptables(netns, "-t", table, "-X", chain, check=False)

    async def _apply_task(
        self,
        task: TaskNetState,
        plans: Mapping[str, NetworkPlan],
        mtu: int,
        links: Mapping[str, Link],
    ) -> str | None:
        try:
            ifaces, gateway = plan_interfaces(task, plans, mtu)
        except KeyError as exc:
            return f"network {exc.args[0]} is not in the state"
        except ValueError as exc:
            return str(exc)
        record = self._tasks.get(task.task_id)
        try:
            path = _ns_path(task.netns)
        except ValueError as exc:
            return str(exc)
        try:
            st = os.stat(path)
        except OSError:
            self._tasks.pop(task.task_id, None)
            for p in ifaces:  # the kernel frees a dead namespace's devices lazily
                if p.host in links:
                    await self._node("ip", "link", "del", p.host, check=False)
            return f"namespace {task.netns} " + ("is gone" if record else "does not exist")
        ns_id = (st.st_dev, st.st_ino)
        if record is not None and (record.netns, record.ns_id) != (task.netns, ns_id):
            record = None
        hosts = {p.host for p in ifaces if p.host in links}
        inside: list[str] = []
        kind, _, target = task.netns.partition(":")
        if record is None and kind == "name" and target in self._fresh:
            record = _Task(task.netns, ns_id, (), None, None, None)
        elif record is None:
            record = await self._inspect_task(task, ifaces, hosts, links, ns_id)
        self._fresh.discard(target)
        redo = [p for p in ifaces if p not in record.ifaces or p.host not in hosts]
        node: list[str] = []
        for p in ifaces:
            if p not in redo:
                host = links[p.host]
                if (host.master, host.mtu, host.up) != (p.bridge, p.mtu, True):
                    node.append(f"link set {p.host} master {p.bridge} mtu {p.mtu} up")
                continue
            if p.host in hosts:
                node.append(f"link del {p.host}")
            node.append(
                f"link add {p.host} mtu {p.mtu} master {p.bridge} type veth peer name {p.peer}"
                f" address {p.mac} mtu {p.mtu} netns {target}"
            )
            node.append(f"link set {p.host} up")
            inside.append(f"link set {p.peer} name {p.name}")
            inside.append(f"addr add {p.cidr} dev {p.name}")
            inside.append(f"link set {p.name} up")
        if gateway and (gateway != record.gateway or any(p.index == 0 for p in redo)):
            inside.append(f"route replace default via {gateway} dev eth0")
        if node:
            await self._node("ip", "-batch", "-", stdin=_batch(node))
        if inside:
            await self._inside(task.netns, "ip", "-batch", "-", stdin=_batch(inside))
        record = replace(record, ifaces=ifaces, gateway=gateway)
        self._tasks[task.task_id] = record
        record = replace(record, vips=await self._apply_vips(task, record.vips))
        self._tasks[task.task_id] = record
        record = replace(record, resolv=_write_resolv(task, record.resolv))
        self._tasks[task.task_id] = record
        return None

    async def _inspect_task(
        self,
        task: TaskNetState,
        ifaces: Sequence[IfacePlan],
        hosts: set[str],
        links: Mapping[str, Link],
        ns_id: tuple[int, int],
    ) -> _Task:
        """First sight of a task's namespace: keep the pairs that match, clear the rest."""
        inner = await self._links(task.netns)
        done = tuple(p for p in ifaces if p.host in hosts and _matches(p, links[p.host], inner))
        for p in ifaces:
            if p.host in hosts and p not in done:
                await self._node("ip", "link", "del", p.host, check=False)
                hosts.discard(p.host)
        doomed = [n for n in inner if n.startswith(PEER_PREFIX)]
        doomed += [p.name for p in ifaces if p not in done and p.name in inner]
        for name in doomed:  # may have gone with its host end already
            await self._inside(task.netns, "ip", "link", "del", name, check=False)
        if "lo" not in inner or not inner["lo"].up:
            await self._inside(task.netns, "ip", "link", "set", "lo", "up")
        routes = json.loads(await self._inside(task.netns, "ip", "-j", "route", "show", "default"))
        gateway = next((r.get("gateway") for r in routes if r.get("dev") == "eth0"), None)
        return _Task(task.netns, ns_id, done, gateway, None, None)

    async def _apply_vips(
        self, task: TaskNetState, applied: dict[str, list[str]] | None
    ) -> dict[str, list[str]] | None:
        rules = vip_rules(task.vips)
        if rules == applied or (applied is None and not task.vips):
            return applied
        jumps = await self._missing_jumps(task.netns, VIP_JUMPS) if applied is None else ()
        text = restore_text(rules, VIP_CHAINS, jumps)
        await self._inside(task.netns, "iptables-restore", "-w", "5", "--noflush", stdin=text)
        if applied and shutil.which("conntrack"):
            gone = _dnat_pairs(applied["nat"]) - _dnat_pairs(rules["nat"])
            for vip, backend in sorted(gone):
                with contextlib.suppress(NetError):  # exits 1 when nothing matched
                    await self._inside(
                        task.netns, "conntrack", "-D", "--orig-dst", vip, "--reply-src", backend
                    )
        return rules

    # -- removal ----------------------------------------------------------------------------

    async def remove_all(self) -> None:
        """Delete every device, chain and task namespace this backend made for the node."""
        async with self._lock:
            self._discover()
            links = await self._links()
            names = [n for n in links if n.startswith(DEVICE_PREFIXES)]
            for name in sorted(names, key=lambda n: not n.startswith(("she", "shp"))):
                await self._node("ip", "link", "del", name, check=False)
            await self._remove_chains(None, NODE_JUMPS)
            for record in self._tasks.values():
                if record.netns.startswith("pid:") and record.vips is not None:
                    with contextlib.suppress(OSError, ValueError):
                        os.stat(_ns_path(record.netns))
                        await self._remove_chains(record.netns, VIP_JUMPS)
            for name in sorted(self._owned):
                await self._delete_namespace(name)
            self._pending.clear()
            self._fresh.clear()
            self._tasks.clear()
            self._peers.clear()
            self._node_rules = None
            self._discovered = False


def _batch(lines: Sequence[str]) -> str:
    return "\n".join(lines) + "\n"


def _ns_path(netns: str) -> str:
    kind, _, target = netns.partition(":")
    if kind == "name" and target and "/" not in target:
        return str(NETNS_DIR / target)
    if kind == "pid" and target.isdigit():
        return f"/proc/{target}/ns/net"
    raise ValueError(f"bad namespace {netns!r} (want name:<name> or pid:<pid>)")


def _matches(plan: IfacePlan, host: Link, inner: Mapping[str, Link]) -> bool:
    """Whether a veth pair found in place is exactly ``plan`` (the host side aside)."""
    eth = inner.get(plan.name)
    return (
        eth is not None
        and host.kind == "veth"
        and eth.kind == "veth"
        and host.peer_index == eth.ifindex
        and eth.peer_index == host.ifindex
        and (eth.mac, eth.mtu, eth.up, eth.cidrs) == (plan.mac, plan.mtu, True, (plan.cidr,))
    )


def _dnat_pairs(rules: Sequence[str]) -> set[tuple[str, str]]:
    pairs = set()
    for rule in rules:
        words = rule.split()
        pairs.add((words[words.index("-d") + 1].split("/")[0], words[-1]))
    return pairs


def _write_resolv(task: TaskNetState, written: str | None) -> str | None:
    """Keep ``/etc/netns/<name>/resolv.conf`` as the task wants it; return what it holds."""
    kind, _, name = task.netns.partition(":")
    if kind != "name":
        return None
    path = NETNS_ETC / name / "resolv.conf"
    text = f"nameserver {task.nameserver}\n" if task.nameserver else None
    if text == written:
        return written
    if text is None:
        path.unlink(missing_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return text
