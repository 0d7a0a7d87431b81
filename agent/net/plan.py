"""The node's overlay networking as data: desired state, names, and the changes that reach it.

Everything here is pure: the desired state (:class:`NodeState` and its parts), the names and
MAC addresses derived from it, the parsing of what ``ip -j`` reports, and the builders that turn
"desired" plus "observed" into ``ip -batch`` lines, ``bridge -batch`` lines and
``iptables-restore`` text. :mod:`agent.net.linux` runs them.

Names: a network's bridge is ``shb`` and its VXLAN device ``shv`` followed by 8 hex digits of a
hash of the network id; a task's host-side veth end is ``she`` followed by 10 hex digits of a
hash of task id and network (its peer is created as ``shp...`` and renamed ``eth<i>`` inside the
task's namespace). All fit the kernel's 15 characters. A task interface's MAC is ``02:53``
followed by the four bytes of its IPv4 address, so every node derives a peer's MAC on its own.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_MTU",
    "DEVICE_PREFIXES",
    "VXLAN_OVERHEAD",
    "VXLAN_PORT",
    "IfacePlan",
    "Interface",
    "Link",
    "NetworkPlan",
    "NetworkState",
    "NodeState",
    "Peer",
    "TaskNetState",
    "Vip",
    "bridge_name",
    "fdb_lines",
    "mac_for",
    "namespace_name",
    "namespace_prefix",
    "neigh_lines",
    "network_lines",
    "node_rules",
    "parse_fdb",
    "parse_links",
    "parse_neigh",
    "plan_interfaces",
    "plan_network",
    "restore_text",
    "veth_name",
    "vip_rules",
    "vxlan_name",
]

VXLAN_PORT = 4789
VXLAN_OVERHEAD = 50  # outer Ethernet, IPv4, UDP and VXLAN headers
DEFAULT_MTU = 1500 - VXLAN_OVERHEAD
BRIDGE_PREFIX = "shb"
VXLAN_PREFIX = "shv"
VETH_PREFIX = "she"
PEER_PREFIX = "shp"  # a veth peer before it is renamed eth<i> in the task's namespace
DEVICE_PREFIXES = (BRIDGE_PREFIX, VXLAN_PREFIX, VETH_PREFIX, PEER_PREFIX)
NAT_CHAIN = "SHOAL-POSTROUTING"
FORWARD_CHAIN = "SHOAL-FORWARD"
VIP_CHAIN = "SHOAL-VIP"
VIP_FILTER_CHAIN = "SHOAL-VIP-FILTER"
NODE_JUMPS = (("nat", "POSTROUTING", NAT_CHAIN), ("filter", "FORWARD", FORWARD_CHAIN))
VIP_JUMPS = (("nat", "OUTPUT", VIP_CHAIN), ("filter", "OUTPUT", VIP_FILTER_CHAIN))


@dataclass(frozen=True)
class Peer:
    """An endpoint on another node, reachable through VXLAN."""

    address: str  # its overlay address
    via: str  # the underlay address of the node holding it


@dataclass(frozen=True)
class NetworkState:
    """One overlay network as this node should see it."""

    ident: str
    subnet: str  # "10.0.1.0/24"
    gateway: str  # on this node's bridge; the same on every node (its ARP stays local)
    vni: int  # VXLAN id, 1..16777215
    node_address: str | None = None  # this node's own address on the network (routing mesh)
    peers: tuple[Peer, ...] = ()


@dataclass(frozen=True)
class Vip:
    """A service's virtual IP and the task addresses behind it (none: the VIP refuses)."""

    address: str
    backends: tuple[str, ...]


@dataclass(frozen=True)
class Interface:
    """A task's attachment to a network."""

    network: str  # NetworkState.ident
    address: str  # the task's overlay address on it


@dataclass(frozen=True)
class TaskNetState:
    """A task's network namespace, its interfaces (eth0, eth1, ...) and the VIPs it reaches."""

    task_id: str
    netns: str  # "name:<ip netns name>" or "pid:<pid>"
    interfaces: tuple[Interface, ...]
    vips: tuple[Vip, ...] = ()
    nameserver: str | None = None  # written to /etc/netns/<name>/resolv.conf ("name:" only)


@dataclass(frozen=True)
class NodeState:
    """Everything one node's namespace should hold."""

    underlay: str  # this node's underlay address: the VXLAN local address
    networks: tuple[NetworkState, ...]
    tasks: tuple[TaskNetState, ...]


def _hash(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def bridge_name(ident: str) -> str:
    return BRIDGE_PREFIX + _hash(ident, 8)


def vxlan_name(ident: str) -> str:
    return VXLAN_PREFIX + _hash(ident, 8)


def veth_name(task_id: str, network: str) -> str:
    return VETH_PREFIX + _hash(f"{task_id}\0{network}", 10)


def _peer_name(host: str) -> str:
    return PEER_PREFIX + host[len(VETH_PREFIX) :]


def mac_for(address: str) -> str:
    """The locally administered MAC of an overlay address: ``02:53`` and its four bytes."""
    packed = ipaddress.IPv4Address(address).packed
    return ":".join(f"{b:02x}" for b in (0x02, 0x53, *packed))


def _clean(text: str, allowed: str) -> str:
    return re.sub(f"[^{allowed}]", "-", text.lower())


def namespace_prefix(node_id: str) -> str:
    """``sh<node6>-``: the node part keeps only [a-z0-9] so no two nodes' prefixes overlap."""
    node = re.sub("[^a-z0-9]", "", node_id.lower())[:6] or "x"
    return f"sh{node}-"


def namespace_name(node_id: str, task_id: str) -> str:
    """The named namespace of a process task: ``sh<node6>-<task12>`` (at most 21 characters)."""
    return namespace_prefix(node_id) + (_clean(task_id[:12], "a-z0-9-") or "x")


@dataclass(frozen=True)
class NetworkPlan:
    """A network's devices and addresses on this node, checked and derived from its state."""

    ident: str
    bridge: str
    vxlan: str
    vni: int
    subnet: str
    prefix: int
    gateway: str
    cidrs: tuple[str, ...]  # the bridge's addresses, gateway first
    bridge_mac: str
    peers: tuple[tuple[str, str], ...]  # (address, via), sorted


def plan_network(net: NetworkState) -> NetworkPlan:
    """Check ``net`` (``ValueError`` names what is wrong) and derive its devices."""
    subnet = ipaddress.IPv4Network(net.subnet, strict=True)
    if not 1 <= net.vni <= 0xFFFFFF:
        raise ValueError(f"vni {net.vni} is outside 1..16777215")
    own = [net.gateway] if net.node_address is None else [net.gateway, net.node_address]
    for address in own + [p.address for p in net.peers]:
        if ipaddress.IPv4Address(address) not in subnet:
            raise ValueError(f"{address} is outside {subnet}")
    peers: dict[str, str] = {}
    for peer in net.peers:
        ipaddress.IPv4Address(peer.via)
        peers[peer.address] = peer.via
    return NetworkPlan(
        ident=net.ident,
        bridge=bridge_name(net.ident),
        vxlan=vxlan_name(net.ident),
        vni=net.vni,
        subnet=str(subnet),
        prefix=subnet.prefixlen,
        gateway=net.gateway,
        cidrs=tuple(f"{a}/{subnet.prefixlen}" for a in own),
        bridge_mac=mac_for(own[-1]),  # frames from peers to node_address reach the bridge
        peers=tuple(sorted(peers.items())),
    )


@dataclass(frozen=True)
class IfacePlan:
    """One veth pair of a task: host end on the network's bridge, ``eth<index>`` inside."""

    index: int
    host: str
    peer: str
    bridge: str
    mac: str
    cidr: str
    mtu: int

    @property
    def name(self) -> str:
        return f"eth{self.index}"


def plan_interfaces(
    task: TaskNetState, networks: Mapping[str, NetworkPlan], mtu: int
) -> tuple[tuple[IfacePlan, ...], str | None]:
    """A task's veth pairs and default gateway; ``KeyError`` names an unknown network."""
    plans = []
    for index, iface in enumerate(task.interfaces):
        net = networks[iface.network]
        if ipaddress.IPv4Address(iface.address) not in ipaddress.IPv4Network(net.subnet):
            raise ValueError(f"{iface.address} is outside {net.subnet}")
        host = veth_name(task.task_id, iface.network)
        plans.append(
            IfacePlan(
                index=index,
                host=host,
                peer=_peer_name(host),
                bridge=net.bridge,
                mac=mac_for(iface.address),
                cidr=f"{iface.address}/{net.prefix}",
                mtu=mtu,
            )
        )
    gateway = networks[task.interfaces[0].network].gateway if task.interfaces else None
    return tuple(plans), gateway


@dataclass(frozen=True)
class Link:
    """What ``ip -d -j addr show`` says about one device."""

    name: str
    ifindex: int
    kind: str | None
    master: str | None
    mtu: int
    mac: str
    up: bool
    peer_index: int | None  # a veth's peer (its ifindex in the peer's namespace)
    cidrs: tuple[str, ...]  # IPv4 addresses as "a.b.c.d/p", in the kernel's order
    data: Mapping[str, Any]  # linkinfo.info_data (VXLAN id, local, port, ...)


def parse_links(text: str) -> dict[str, Link]:
    links = {}
    for item in json.loads(text or "[]"):
        info = item.get("linkinfo") or {}
        links[item["ifname"]] = Link(
            name=item["ifname"],
            ifindex=int(item["ifindex"]),
            kind=info.get("info_kind"),
            master=item.get("master"),
            mtu=int(item.get("mtu", 0)),
            mac=str(item.get("address", "")).lower(),
            up="UP" in item.get("flags", ()),
            peer_index=item.get("link_index"),
            cidrs=tuple(
                f"{a['local']}/{a['prefixlen']}"
                for a in item.get("addr_info", ())
                if a.get("family") == "inet"
            ),
            data=info.get("info_data") or {},
        )
    return links


def parse_fdb(text: str) -> dict[str, str]:
    """A VXLAN device's remote entries from ``bridge -j fdb show``: MAC to destination."""
    return {e["mac"]: e["dst"] for e in json.loads(text or "[]") if "dst" in e}


def parse_neigh(text: str) -> dict[str, str]:
    """Neighbour entries from ``ip -j neigh show``: address to MAC."""
    return {e["dst"]: e["lladdr"] for e in json.loads(text or "[]") if "lladdr" in e}


def network_lines(
    plan: NetworkPlan, underlay: str, mtu: int, links: Mapping[str, Link]
) -> tuple[list[str], bool]:
    """``ip -batch`` lines that bring a network's bridge and VXLAN device to ``plan``.

    Returns the lines and whether the VXLAN device is (re)created, which empties its FDB.
    Parameters of a VXLAN device cannot change in place, so a wrong one is replaced.
    """
    lines: list[str] = []
    br = links.get(plan.bridge)
    if br is not None and br.kind != "bridge":
        lines.append(f"link del {plan.bridge}")
        br = None
    if br is None:
        lines.append(f"link add {plan.bridge} type bridge")
    if br is None or (br.mac, br.mtu, br.up) != (plan.bridge_mac, mtu, True):
        lines.append(f"link set {plan.bridge} address {plan.bridge_mac} mtu {mtu} up")
    have = br.cidrs if br is not None else ()
    if have != plan.cidrs:
        missing = plan.cidrs[len(have) :]
        if have != plan.cidrs[: len(have)]:
            lines.append(f"addr flush dev {plan.bridge} scope global")
            missing = plan.cidrs
        lines += [f"addr add {cidr} dev {plan.bridge}" for cidr in missing]
    vx = links.get(plan.vxlan)
    wanted = {
        "id": plan.vni,
        "local": underlay,
        "port": VXLAN_PORT,
        "learning": False,
        "proxy": True,
    }
    fresh = vx is None or vx.kind != "vxlan" or any(vx.data.get(k) != v for k, v in wanted.items())
    if fresh and vx is not None:
        lines.append(f"link del {plan.vxlan}")
    if fresh:
        lines.append(
            f"link add {plan.vxlan} mtu {mtu} type vxlan id {plan.vni} local {underlay}"
            f" dstport {VXLAN_PORT} nolearning proxy"
        )
    if fresh or vx is None or (vx.master, vx.mtu, vx.up) != (plan.bridge, mtu, True):
        lines.append(f"link set {plan.vxlan} master {plan.bridge} mtu {mtu} up")
    return lines, fresh


def fdb_lines(dev: str, have: Mapping[str, str], want: Mapping[str, str]) -> list[str]:
    """``bridge -batch`` lines from FDB ``have`` to ``want`` (both MAC to underlay address)."""
    lines = [f"fdb del {mac} dev {dev} dst {dst}" for mac, dst in have.items() if mac not in want]
    lines += [
        f"fdb replace {mac} dev {dev} dst {dst} self permanent"
        for mac, dst in sorted(want.items())
        if have.get(mac) != dst
    ]
    return lines


def neigh_lines(dev: str, have: Mapping[str, str], want: Mapping[str, str]) -> list[str]:
    """``ip -batch`` lines from neighbours ``have`` to ``want`` (both address to MAC)."""
    lines = [f"neigh del {address} dev {dev}" for address in have if address not in want]
    lines += [
        f"neigh replace {address} lladdr {mac} dev {dev} nud permanent"
        for address, mac in sorted(want.items())
        if have.get(address) != mac
    ]
    return lines


def node_rules(plans: Iterable[NetworkPlan]) -> dict[str, list[str]]:
    """The node's own chains per table: egress masquerade and forwarding for each bridge.

    Networks are kept apart as in Docker: nothing is routed from one overlay bridge to
    another (tasks on one network cannot reach another network's tasks through the node)."""
    nat: list[str] = []
    forward: list[str] = []
    ordered = sorted(plans, key=lambda p: p.bridge)
    for plan in ordered:  # within a bridge (seen here when br_netfilter is loaded): allowed
        forward.append(f"-A {FORWARD_CHAIN} -i {plan.bridge} -o {plan.bridge} -j ACCEPT")
    if ordered:
        forward.append(f"-A {FORWARD_CHAIN} -i {BRIDGE_PREFIX}+ -o {BRIDGE_PREFIX}+ -j DROP")
    for plan in ordered:
        nat.append(f"-A {NAT_CHAIN} -s {plan.subnet} ! -d {plan.subnet} -j MASQUERADE")
        forward.append(f"-A {FORWARD_CHAIN} -i {plan.bridge} -j ACCEPT")
        forward.append(f"-A {FORWARD_CHAIN} -o {plan.bridge} -j ACCEPT")
    return {"nat": nat, "filter": forward}


def vip_rules(vips: Iterable[Vip]) -> dict[str, list[str]]:
    """A task's VIP chains per table: random DNAT over the backends, or a refusal.

    With ``n`` backends the ``k``-th rule matches with probability ``1/(n-k)`` and the last
    always, so each backend gets ``1/n`` of the connections. Every port is translated.
    """
    nat, reject = [], []
    for vip in vips:
        dst = f"-d {vip.address}/32"
        n = len(vip.backends)
        for k, backend in enumerate(vip.backends):
            chance = (
                "" if k == n - 1 else f"-m statistic --mode random --probability {1 / (n - k):.8f} "
            )
            nat.append(f"-A {VIP_CHAIN} {dst} {chance}-j DNAT --to-destination {backend}")
        if n == 0:
            reject.append(f"-A {VIP_FILTER_CHAIN} {dst} -p tcp -j REJECT --reject-with tcp-reset")
            reject.append(
                f"-A {VIP_FILTER_CHAIN} {dst} -j REJECT --reject-with icmp-port-unreachable"
            )
    return {"nat": nat, "filter": reject}


def restore_text(
    rules: Mapping[str, list[str]],
    chains: Mapping[str, str],
    jumps: Iterable[tuple[str, str, str]] = (),
) -> str:
    """``iptables-restore --noflush`` input replacing our chains (``table -> chain``) whole.

    ``jumps`` are ``(table, builtin chain, our chain)`` links still missing; they go first in
    their built-in chain. The restore applies a table all at once or not at all.
    """
    missing: dict[str, list[str]] = {}
    for table, builtin, chain in jumps:
        missing.setdefault(table, []).append(f"-I {builtin} 1 -j {chain}")
    out = []
    for table, chain in chains.items():
        out += [f"*{table}", f":{chain} - [0:0]", f"-F {chain}"]
        out += rules.get(table, [])
        out += missing.get(table, [])
        out.append("COMMIT")
    return "\n".join(out) + "\n"
