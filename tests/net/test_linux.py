"""The kernel networking backend: pure builders, then two nodes joined by VXLAN in namespaces.

The namespace tests build a private underlay (a namespace holding a bridge, two "node"
namespaces plugged into it) with random private subnets and names, drive one LinuxNetwork per
node through ``ip netns exec <node>``, and tear every namespace down afterwards. Nothing touches
the namespace the tests run in. Servers are small Python processes that answer each connection
with their name; waits are for conditions (a server's "ready" line), never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.net.linux import (
    Interface,
    LinuxNetwork,
    NetworkState,
    NodeState,
    Peer,
    TaskNetState,
    Vip,
)
from agent.net.plan import (
    DEVICE_PREFIXES,
    bridge_name,
    fdb_lines,
    mac_for,
    namespace_name,
    namespace_prefix,
    neigh_lines,
    network_lines,
    node_rules,
    parse_links,
    plan_interfaces,
    plan_network,
    restore_text,
    veth_name,
    vip_rules,
    vxlan_name,
)
from tests.worker.helpers import until

# -- pure builders ----------------------------------------------------------------------------


def test_mac_is_locally_administered_and_carries_the_address() -> None:
    assert mac_for("10.0.1.4") == "02:53:0a:00:01:04"
    assert mac_for("192.168.77.255") == "02:53:c0:a8:4d:ff"
    assert int(mac_for("10.0.0.1").split(":")[0], 16) & 0b11 == 0b10  # local, unicast


def test_device_names_fit_the_kernel_limit_and_differ() -> None:
    idents = ["n1", "x" * 200, "ünïcode net", "n2"]
    names = [f(i) for i in idents for f in (bridge_name, vxlan_name)]
    names += [veth_name(t, n) for t in ("t1", "t" * 64) for n in idents]
    assert all(len(n) <= 15 and n.startswith(DEVICE_PREFIXES) for n in names)
    assert len(set(names)) == len(names)
    assert bridge_name("n1") == bridge_name("n1")  # derived, so every restart finds them


def test_namespace_names_are_sanitized_and_short() -> None:
    name = namespace_name("Node_ABC-123xyz", "Task/ID With Spaces and more")
    assert name == "shnodeab-task-id-with"
    assert len(name) <= 32 and re.fullmatch("[a-z0-9-]+", name)
    assert name.startswith(namespace_prefix("Node_ABC-123xyz"))
    # a hyphen never enters the node part, so one node's prefix never covers another's
    assert not namespace_name("ab-cd", "t").startswith(namespace_prefix("ab"))


def test_vip_rules_for_zero_one_and_three_backends() -> None:
    vips = (
        Vip("10.0.1.2", ("10.0.1.4", "10.0.1.5", "10.0.1.6")),
        Vip("10.0.1.7", ("10.0.1.8",)),
        Vip("10.0.1.9", ()),
    )
    text = restore_text(vip_rules(vips), {"nat": "SHOAL-VIP", "filter": "SHOAL-VIP-FILTER"})
    assert text == (
        "*nat\n"
        ":SHOAL-VIP - [0:0]\n"
        "-F SHOAL-VIP\n"
        "-A SHOAL-VIP -d 10.0.1.2/32 -m statistic --mode random --probability 0.33333333"
        " -j DNAT --to-destination 10.0.1.4\n"
        "-A SHOAL-VIP -d 10.0.1.2/32 -m statistic --mode random --probability 0.50000000"
        " -j DNAT --to-destination 10.0.1.5\n"
        "-A SHOAL-VIP -d 10.0.1.2/32 -j DNAT --to-destination 10.0.1.6\n"
        "-A SHOAL-VIP -d 10.0.1.7/32 -j DNAT --to-destination 10.0.1.8\n"
        "COMMIT\n"
        "*filter\n"
        ":SHOAL-VIP-FILTER - [0:0]\n"
        "-F SHOAL-VIP-FILTER\n"
        "-A SHOAL-VIP-FILTER -d 10.0.1.9/32 -p tcp -j REJECT --reject-with tcp-reset\n"
        "-A SHOAL-VIP-FILTER -d 10.0.1.9/32 -j REJECT --reject-with icmp-port-unreachable\n"
        "COMMIT\n"
    )
    assert vip_rules(()) == {"nat": [], "filter": []}


def test_node_rules_masquerade_egress_and_jump_first() -> None:
    plan = plan_network(NetworkState("n1", "10.0.1.0/24", "10.0.1.1", 42))
    rules = node_rules([plan])
    text = restore_text(
        rules,
        {"nat": "SHOAL-POSTROUTING", "filter": "SHOAL-FORWARD"},
        [("filter", "FORWARD", "SHOAL-FORWARD")],
    )
    br = plan.bridge
    assert "-A SHOAL-POSTROUTING -s 10.0.1.0/24 ! -d 10.0.1.0/24 -j MASQUERADE\n" in text
    assert text.endswith(
        f"-A SHOAL-FORWARD -i {br} -o {br} -j ACCEPT\n"
        "-A SHOAL-FORWARD -i shb+ -o shb+ -j DROP\n"
        f"-A SHOAL-FORWARD -i {br} -j ACCEPT\n-A SHOAL-FORWARD -o {br} -j ACCEPT\n"
        "-I FORWARD 1 -j SHOAL-FORWARD\nCOMMIT\n"
    )
    assert "POSTROUTING 1" not in text  # that jump was not reported missing


def _observed(plan_cidrs: list[str], mac: str, vni: int, local: str) -> str:
    """``ip -d -j addr show`` output for a bridge and VXLAN device as ``network_lines`` wants."""
    br, vx = bridge_name("n1"), vxlan_name("n1")
    addrs = [{"family": "inet", "local": c.split("/")[0], "prefixlen": 24} for c in plan_cidrs]
    data = {"id": vni, "local": local, "port": 4789, "learning": False, "proxy": True}
    return json.dumps(
        [
            {"ifindex": 3, "ifname": br, "flags": ["UP"], "mtu": 1450, "address": mac,
             "linkinfo": {"info_kind": "bridge"}, "addr_info": addrs},
            {"ifindex": 4, "ifname": vx, "flags": ["UP"], "mtu": 1450, "master": br,
             "address": "aa:bb:cc:dd:ee:ff", "linkinfo": {"info_kind": "vxlan", "info_data": data}},
        ]
    )  # fmt: skip


def test_network_lines_create_keep_and_repair() -> None:
    plan = plan_network(NetworkState("n1", "10.0.1.0/24", "10.0.1.1", 42, "10.0.1.250"))
    br, vx = plan.bridge, plan.vxlan
    lines, fresh = network_lines(plan, "192.168.7.1", 1450, {})
    assert fresh and lines == [
        f"link add {br} type bridge",
        f"link set {br} address 02:53:0a:00:01:fa mtu 1450 up",
        f"addr add 10.0.1.1/24 dev {br}",
        f"addr add 10.0.1.250/24 dev {br}",
        f"link add {vx} mtu 1450 type vxlan id 42 local 192.168.7.1 dstport 4789 nolearning proxy",
        f"link set {vx} master {br} mtu 1450 up",
    ]
    good = parse_links(_observed(list(plan.cidrs), plan.bridge_mac, 42, "192.168.7.1"))
    assert network_lines(plan, "192.168.7.1", 1450, good) == ([], False)
    half = parse_links(_observed(["10.0.1.1/24"], plan.bridge_mac, 42, "192.168.7.1"))
    assert network_lines(plan, "192.168.7.1", 1450, half) == (
        [f"addr add 10.0.1.250/24 dev {br}"],
        False,
    )
    wrong = parse_links(_observed(["10.0.1.9/24"], plan.bridge_mac, 43, "192.168.7.1"))
    lines, fresh = network_lines(plan, "192.168.7.1", 1450, wrong)
    assert fresh
    assert lines[:3] == [
        f"addr flush dev {br} scope global",
        f"addr add 10.0.1.1/24 dev {br}",
        f"addr add 10.0.1.250/24 dev {br}",
    ]
    assert lines[3] == f"link del {vx}"


def test_peer_entries_follow_moves_and_removals() -> None:
    have = {"02:53:0a:00:01:04": "192.168.7.2", "02:53:0a:00:01:05": "192.168.7.2"}
    want = {"02:53:0a:00:01:04": "192.168.7.3", "02:53:0a:00:01:06": "192.168.7.2"}
    assert fdb_lines("shv1", have, want) == [
        "fdb del 02:53:0a:00:01:05 dev shv1 dst 192.168.7.2",
        "fdb replace 02:53:0a:00:01:04 dev shv1 dst 192.168.7.3 self permanent",
        "fdb replace 02:53:0a:00:01:06 dev shv1 dst 192.168.7.2 self permanent",
    ]
    assert neigh_lines("shv1", {"10.0.1.5": "m5"}, {"10.0.1.6": "m6"}) == [
        "neigh del 10.0.1.5 dev shv1",
        "neigh replace 10.0.1.6 lladdr m6 dev shv1 nud permanent",
    ]
    assert fdb_lines("shv1", want, want) == []


def test_plans_reject_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="outside"):
        plan_network(NetworkState("n1", "10.0.1.0/24", "10.0.2.1", 42))
    with pytest.raises(ValueError, match="vni"):
        plan_network(NetworkState("n1", "10.0.1.0/24", "10.0.1.1", 0))
    plans = {"n1": plan_network(NetworkState("n1", "10.0.1.0/24", "10.0.1.1", 42))}
    task = TaskNetState("t1", "name:x", (Interface("n1", "10.0.1.3"),))
    (eth0,), gateway = plan_interfaces(task, plans, 1400)
    assert (eth0.name, eth0.cidr, eth0.mtu, gateway) == ("eth0", "10.0.1.3/24", 1400, "10.0.1.1")
    with pytest.raises(KeyError):
        plan_interfaces(TaskNetState("t1", "name:x", (Interface("n2", "10.0.1.3"),)), plans, 1400)


# -- two nodes in namespaces ------------------------------------------------------------------

CAN_NETNS = os.geteuid() == 0 and all(
    shutil.which(t) for t in ("ip", "bridge", "iptables-restore", "nsenter", "unshare")
)
netns = pytest.mark.skipif(
    not CAN_NETNS, reason="needs root and ip, bridge, iptables-restore, nsenter, unshare"
)

SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(f"{sys.argv[3]} {peer[0]}".encode())
    c.close()
"""

CLIENT = """
import json, socket, sys
host, port, count, source = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
out = []
for _ in range(count):
    try:
        bind = (source, 0) if source else None
        with socket.create_connection((host, port), timeout=3, source_address=bind) as s:
            out.append(s.recv(100).decode())
    except OSError as e:
        out.append(type(e).__name__)
print(json.dumps(out))
"""


async def run(*argv: str, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if check and proc.returncode:
        raise AssertionError(f"{argv}: {err.decode()}")
    return out.decode()


def enter(ns: str) -> tuple[str, ...]:
    """The command prefix into a namespace: a name, or ``pid:<pid>``."""
    if ns.startswith("pid:"):
        return ("nsenter", f"--net=/proc/{ns[4:]}/ns/net")
    return ("ip", "netns", "exec", ns.removeprefix("name:"))


@dataclass
class Lab:
    """Underlay, two nodes, one overlay network; addresses and names random per test."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    under: str = field(
        default_factory=lambda: f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
    )
    over: str = field(
        default_factory=lambda: f"10.{random.randint(100, 199)}.{random.randint(0, 255)}"
    )
    vni: int = field(default_factory=lambda: random.randint(1000, 16_000_000))
    node_ids: dict[str, str] = field(default_factory=dict)
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.node_ids = {side: f"{side}{secrets.token_hex(3)}" for side in "ab"}

    @property
    def underlay_ns(self) -> str:
        return f"shu-{self.tag}"

    def node_ns(self, side: str) -> str:
        return f"shn-{self.tag}-{side}"

    def node_ip(self, side: str) -> str:
        return f"{self.under}.{11 if side == 'a' else 12}"

    def ip(self, host: int) -> str:
        return f"{self.over}.{host}"

    def backend(self, side: str) -> LinuxNetwork:
        return LinuxNetwork(self.node_ids[side], run_prefix=enter(self.node_ns(side)))

    def namespaces(self) -> list[str]:
        prefixes = (
            f"shu-{self.tag}",
            f"shn-{self.tag}-",
            *map(namespace_prefix, self.node_ids.values()),
        )
        with contextlib.suppress(OSError):
            return sorted(n for n in os.listdir("/run/netns") if n.startswith(prefixes))
        return []

    async def start(self) -> None:
        u = self.underlay_ns
        await run("ip", "netns", "add", u)
        await run("ip", "-n", u, "link", "add", "br0", "type", "bridge")
        await run("ip", "-n", u, "link", "set", "br0", "up")
        for side in "ab":
            ns = self.node_ns(side)
            await run("ip", "netns", "add", ns)
            veth = ("type", "veth", "peer", "name", "eth0", "netns", ns)
            await run("ip", "-n", u, "link", "add", f"u{side}", *veth)
            await run("ip", "-n", u, "link", "set", f"u{side}", "master", "br0", "up")
            await run("ip", "-n", ns, "addr", "add", f"{self.node_ip(side)}/24", "dev", "eth0")
            await run("ip", "-n", ns, "link", "set", "eth0", "up")
            await run("ip", "-n", ns, "link", "set", "lo", "up")
            await run(*enter(ns), "iptables", "-P", "FORWARD", "DROP")  # as Docker leaves hosts

    async def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        for name in self.namespaces():
            await run("ip", "netns", "del", name, check=False)
            shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)

    async def server(self, ns: str, host: str, port: int, name: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *enter(ns),
            sys.executable,
            "-c",
            SERVER,
            host,
            str(port),
            name,
            stdout=asyncio.subprocess.PIPE,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        async with asyncio.timeout(10):
            assert await proc.stdout.readline() == b"ready\n"

    async def connect(
        self, ns: str, host: str, port: int, count: int = 1, source: str = ""
    ) -> list[str]:
        argv = (host, str(port), str(count), source)
        out = await run(*enter(ns), sys.executable, "-c", CLIENT, *argv)
        return list(json.loads(out))

    async def links(self, ns: str) -> dict[str, dict]:
        return {
            d["ifname"]: d for d in json.loads(await run(*enter(ns), "ip", "-j", "addr", "show"))
        }

    def network(self, side: str) -> NetworkState:
        """Network n1 as ``side`` sees it: the other node's endpoints are its peers."""
        other = "b" if side == "a" else "a"
        hosts = {"a": (3, 6, 7, 250), "b": (4, 5, 251)}[other]
        return NetworkState(
            "n1",
            f"{self.over}.0/24",
            self.ip(1),
            self.vni,
            node_address=self.ip(250 if side == "a" else 251),
            peers=tuple(Peer(self.ip(h), self.node_ip(other)) for h in hosts),
        )

    def task(
        self,
        task_id: str,
        ns: str,
        host: int,
        vips: tuple[Vip, ...] = (),
        nameserver: str | None = None,
    ) -> TaskNetState:
        return TaskNetState(task_id, ns, (Interface("n1", self.ip(host)),), vips, nameserver)

    def state(self, side: str, tasks: tuple[TaskNetState, ...], networks: bool = True) -> NodeState:
        nets = (self.network(side),) if networks else ()
        return NodeState(self.node_ip(side), nets, tasks)


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    lab = Lab()
    try:
        await lab.start()
        yield lab
    finally:
        await lab.stop()
    assert lab.namespaces() == []


async def two_nodes(
    lab: Lab, vips: tuple[Vip, ...] = ()
) -> tuple[LinuxNetwork, LinuxNetwork, dict[str, str]]:
    """Node A with task ta (.3), node B with tb1 (.4) and tb2 (.5), each answering on 7000."""
    a, b = lab.backend("a"), lab.backend("b")
    ns = {t: await (a if t == "ta" else b).create_task_namespace(t) for t in ("ta", "tb1", "tb2")}
    ta = lab.task("ta", ns["ta"], 3, vips=vips, nameserver=lab.ip(1))
    assert await a.apply(lab.state("a", (ta,))) == []
    tbs = (lab.task("tb1", ns["tb1"], 4), lab.task("tb2", ns["tb2"], 5))
    assert await b.apply(lab.state("b", tbs)) == []
    for t, host in (("tb1", 4), ("tb2", 5)):
        await lab.server(ns[t], lab.ip(host), 7000, t)
    return a, b, ns


@netns
async def test_tasks_on_two_nodes_reach_each_other_and_the_outside(lab: Lab) -> None:
    a, _, ns = await two_nodes(lab)
    assert await lab.connect(ns["ta"], lab.ip(4), 7000) == [f"tb1 {lab.ip(3)}"]
    assert await lab.connect(ns["ta"], lab.ip(5), 7000) == [f"tb2 {lab.ip(3)}"]
    # the task side: address, derived MAC, MTU from the underlay (1500 - 50), default route
    eth0 = (await lab.links(ns["ta"]))["eth0"]
    assert (eth0["address"], eth0["mtu"]) == (mac_for(lab.ip(3)), 1450)
    route = await run(*enter(ns["ta"]), "ip", "route", "show", "default")
    assert f"default via {lab.ip(1)} dev eth0" in route
    # egress: node B's own underlay address, reached masqueraded behind node A's
    await lab.server(lab.node_ns("b"), lab.node_ip("b"), 7001, "node-b")
    assert await lab.connect(ns["ta"], lab.node_ip("b"), 7001) == [f"node-b {lab.node_ip('a')}"]
    # the routing mesh's path: node A itself, from its node_address, to a task on node B
    reply = await lab.connect(lab.node_ns("a"), lab.ip(4), 7000, source=lab.ip(250))
    assert reply == [f"tb1 {lab.ip(250)}"]
    name = ns["ta"].removeprefix("name:")
    assert Path(f"/etc/netns/{name}/resolv.conf").read_text() == f"nameserver {lab.ip(1)}\n"
    # the same state again changes nothing: only the device listing runs
    before = a.commands_run
    ta = lab.task("ta", ns["ta"], 3, nameserver=lab.ip(1))
    assert await a.apply(lab.state("a", (ta,))) == []
    assert a.commands_run - before == 1
    # concurrent applies queue up and agree
    results = await asyncio.gather(*(a.apply(lab.state("a", (ta,))) for _ in range(3)))
    assert results == [[], [], []]


@netns
async def test_vip_spreads_over_backends_and_refuses_without_any(lab: Lab) -> None:
    vip, empty = lab.ip(2), lab.ip(9)
    vips = (Vip(vip, (lab.ip(4), lab.ip(5))), Vip(empty, ()))
    a, _, ns = await two_nodes(lab, vips)
    answers = await lab.connect(ns["ta"], vip, 7000, count=30)
    assert {r.split()[0] for r in answers} == {"tb1", "tb2"}, answers
    ta = lab.task("ta", ns["ta"], 3, vips=(Vip(vip, (lab.ip(4),)), Vip(empty, ())))
    assert await a.apply(lab.state("a", (ta,))) == []
    assert {r.split()[0] for r in await lab.connect(ns["ta"], vip, 7000, count=20)} == {"tb1"}
    started = time.monotonic()
    assert await lab.connect(ns["ta"], empty, 7000) == ["ConnectionRefusedError"]
    assert time.monotonic() - started < 2.5  # refused at once, not a 3 s connect timeout


@netns
async def test_removed_tasks_and_networks_leave_nothing_behind(lab: Lab) -> None:
    a, b, ns = await two_nodes(lab)
    tb1 = lab.task("tb1", ns["tb1"], 4)
    tb2_ns = ns["tb2"].removeprefix("name:")
    assert Path(f"/run/netns/{tb2_ns}").exists()
    assert await b.apply(lab.state("b", (tb1,))) == []
    node_b = await lab.links(lab.node_ns("b"))
    assert veth_name("tb2", "n1") not in node_b and veth_name("tb1", "n1") in node_b
    assert not Path(f"/run/netns/{tb2_ns}").exists()
    assert not Path(f"/etc/netns/{tb2_ns}").exists()
    assert await lab.connect(ns["ta"], lab.ip(4), 7000) == [f"tb1 {lab.ip(3)}"]
    # a peer that moves: node A's entries follow it
    moved = NetworkState(
        "n1", f"{lab.over}.0/24", lab.ip(1), lab.vni, lab.ip(250), (Peer(lab.ip(4), "192.0.2.9"),)
    )
    ta = lab.task("ta", ns["ta"], 3)
    assert await a.apply(NodeState(lab.node_ip("a"), (moved,), (ta,))) == []
    fdb = await run(
        *enter(lab.node_ns("a")), "bridge", "-j", "fdb", "show", "dev", vxlan_name("n1")
    )
    assert {e["mac"]: e["dst"] for e in json.loads(fdb) if "dst" in e} == {
        mac_for(lab.ip(4)): "192.0.2.9"
    }
    # the network goes: bridge, VXLAN device, veth, chains and the task's namespace with it
    assert await a.apply(lab.state("a", (), networks=False)) == []
    names = set(await lab.links(lab.node_ns("a")))
    assert not {n for n in names if n.startswith(DEVICE_PREFIXES)}
    rules = await run(*enter(lab.node_ns("a")), "iptables-save")
    assert "SHOAL" not in rules
    assert not Path(f"/run/netns/{ns['ta'].removeprefix('name:')}").exists()


@netns
async def test_a_fresh_backend_adopts_or_removes_leftovers(lab: Lab) -> None:
    _, _, ns = await two_nodes(lab)
    ifindex = (await lab.links(ns["ta"]))["eth0"]["ifindex"]
    # a restarted agent with the same state keeps the devices it finds in order
    again = lab.backend("a")
    ta = lab.task("ta", ns["ta"], 3, nameserver=lab.ip(1))
    assert await again.apply(lab.state("a", (ta,))) == []
    assert (await lab.links(ns["ta"]))["eth0"]["ifindex"] == ifindex
    assert await lab.connect(ns["ta"], lab.ip(4), 7000) == [f"tb1 {lab.ip(3)}"]
    # one with an empty state removes what an earlier one left
    fresh = lab.backend("a")
    assert await fresh.apply(NodeState(lab.node_ip("a"), (), ())) == []
    names = set(await lab.links(lab.node_ns("a")))
    assert not {n for n in names if n.startswith(DEVICE_PREFIXES)}
    assert "SHOAL" not in await run(*enter(lab.node_ns("a")), "iptables-save")
    prefix = namespace_prefix(lab.node_ids["a"])
    assert not [n for n in lab.namespaces() if n.startswith(prefix)]


@netns
async def test_remove_all_clears_the_node(lab: Lab) -> None:
    _, b, _ = await two_nodes(lab)
    await b.remove_all()
    names = set(await lab.links(lab.node_ns("b")))
    assert not {n for n in names if n.startswith(DEVICE_PREFIXES)}
    assert "SHOAL" not in await run(*enter(lab.node_ns("b")), "iptables-save")
    prefix = namespace_prefix(lab.node_ids["b"])
    assert not [n for n in lab.namespaces() if n.startswith(prefix)]


@netns
async def test_a_process_namespace_by_pid(lab: Lab) -> None:
    sleeper = await asyncio.create_subprocess_exec("unshare", "--net", "sleep", "60")
    lab.procs.append(sleeper)
    pid_ns = f"pid:{sleeper.pid}"
    own = os.stat("/proc/self/ns/net").st_ino
    path = f"/proc/{sleeper.pid}/ns/net"
    await until(lambda: os.stat(path).st_ino != own, what="the sleeper's own namespace")
    a = lab.backend("a")
    ta_ns = await a.create_task_namespace("ta")
    tasks = (lab.task("ta", ta_ns, 3), lab.task("tp", pid_ns, 6))
    assert await a.apply(lab.state("a", tasks)) == []
    out = await run(*enter(pid_ns), "ip", "-j", "addr", "show")
    eth0 = next(d for d in json.loads(out) if d["ifname"] == "eth0")
    assert [i["local"] for i in eth0["addr_info"] if i["family"] == "inet"] == [lab.ip(6)]
    await lab.server(ta_ns, lab.ip(3), 7000, "ta")
    assert await lab.connect(pid_ns, lab.ip(3), 7000) == [f"ta {lab.ip(6)}"]
    sleeper.kill()
    await sleeper.wait()
    problems = await a.apply(lab.state("a", tasks))
    assert problems == [f"task tp: namespace {pid_ns} is gone"]
    assert veth_name("tp", "n1") not in await lab.links(lab.node_ns("a"))


@netns
async def test_a_missing_namespace_is_reported_then_applied(lab: Lab) -> None:
    a = lab.backend("a")
    later = f"name:{namespace_name(lab.node_ids['a'], 'later')}"
    state = lab.state("a", (lab.task("later", later, 7),))
    assert await a.apply(state) == [f"task later: namespace {later} does not exist"]
    assert await a.create_task_namespace("later") == later
    assert await a.apply(state) == []
    assert "eth0" in await lab.links(later)
    await a.remove_all()
