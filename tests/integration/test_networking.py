"""Networking across nodes that are separate network namespaces on this machine.

A manager and two workers (process driver) each live in a namespace of their own, wired by
veth pairs to one underlay bridge. Tasks run in namespaces the agents make for them; the
managers' routing tables decide the overlay (VXLAN between the nodes), the VIPs, the names the
embedded DNS answers and the routing mesh's published ports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.net.plan import namespace_name, namespace_prefix
from tests.harness import free_ports, kill_leftovers, kill_processes_under, wait_for
from tests.integration.netns import Fabric, can_make_namespaces, fabric, run

_CANNOT = can_make_namespaces()
pytestmark = [pytest.mark.integration, pytest.mark.skipif(_CANNOT is not None, reason=str(_CANNOT))]

SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(64)
while True:
    c, peer = s.accept()
    c.settimeout(2)
    try:
        first = c.recv(200).split(b"\\r\\n")[0].decode(errors="replace")
        c.sendall(f"{c.getsockname()[0]} {peer[0]} {first}\\n".encode())
    except OSError:
        pass
    c.close()
"""

CLIENT = """
import json, socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if port == 0:
    try:
        print(json.dumps(sorted({i[4][0] for i in socket.getaddrinfo(host, 0, socket.AF_INET)})))
    except socket.gaierror as exc:
        print(json.dumps({"error": str(exc)}))
    sys.exit(0)
seen = []
for _ in range(count):
    try:
        c = socket.create_connection((host, port), timeout=2)
        c.sendall(b"hello\\r\\n")
        seen.append(c.makefile().readline().strip())
        c.close()
    except OSError as exc:
        seen.append("error " + type(exc).__name__)
print(json.dumps(seen))
"""


@dataclass
class NetCluster:
    f: Fabric
    root: Path
    port: int
    enroll: int
    scripts: Path
    data: dict[str, Path] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def shoal(self, *args: str, node: str = "m", check: bool = True) -> str:
        cmd = [
            *self.f.prefix_of(node),
            sys.executable,
            "-m",
            "agent.cli",
            "--data-dir",
            str(self.data[node]),
            *args,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def service(self, name: str, *flags: str) -> None:
        self.shoal(
            "service", "create", "--detach", "--name", name, *flags,
            "python3", str(self.scripts / "server.py"), "8000",
        )  # fmt: skip

    def tasks(self, service: str) -> list[dict[str, Any]]:
        out = self.shoal("service", "ps", service, "--format", "json")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def running(self, service: str) -> list[dict[str, Any]]:
        return [
            t
            for t in self.tasks(service)
            if t["desired_state"] == "running" and t["state"] == "running"
        ]

    def task_ns(self, node: str, task_id: str) -> str:
        return namespace_name(self.ids[node], task_id)

    def client(self, ns: str, host: str, port: int, count: int = 1) -> Any:
        out = run(
            "ip", "netns", "exec", ns, "python3", str(self.scripts / "client.py"),
            host, str(port), str(count), timeout=60,
        )  # fmt: skip
        return json.loads(out)

    def from_node(self, node: str, host: str, port: int, count: int = 1) -> Any:
        return self.client(self.f.nodes[node], host, port, count)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetCluster]:
    root = tmp_path_factory.mktemp("net")
    scripts = root / "scripts"
    scripts.mkdir()
    (scripts / "server.py").write_text(SERVER)
    (scripts / "client.py").write_text(CLIENT)
    port, enroll = free_ports(2)
    names = ("m", "a", "b", "n", "d") if _docker() else ("m", "a", "b", "n")
    with fabric(*names) as f:
        c = NetCluster(f, root, port, enroll, scripts)
        c.data = {name: root / name for name in names}
        try:
            c.shoal(
                "swarm", "init", "--listen-addr", f"{f.addresses['m']}:{port}",
                "--advertise-addr", f.addresses["m"], "--enroll-port", str(enroll),
                "--hostname", "m", "--driver", "process",
            )  # fmt: skip
            token = c.shoal("swarm", "join-token", "-q", "worker").strip()
            for name in names[1:]:
                c.shoal(
                    "swarm", "join", "--token", token, "--hostname", name,
                    "--enroll-port", str(enroll),
                    "--driver", "docker" if name == "d" else "process",
                    *(("--behind-nat",) if name == "n" else ()),
                    f"mqtts://{f.addresses['m']}:{port}", node=name,
                )  # fmt: skip
            for name in names:
                c.ids[name] = json.loads(c.shoal("info", "--format", "json", node=name))["node_id"]
            c.shoal("network", "create", "back")
            yield c
        finally:
            for name in reversed(names):
                if name in c.data:
                    c.shoal("swarm", "leave", "--force", node=name, check=False)
            for d in c.data.values():
                kill_leftovers(d)
            kill_processes_under(root)
            listed = run("ip", "netns", "list", check=False)
            for node_id in c.ids.values():
                for line in listed.splitlines():
                    ns = line.split()[0] if line.strip() else ""
                    if ns.startswith(namespace_prefix(node_id)):
                        run("ip", "netns", "del", ns, check=False)


IMAGE = "shoal/busybox:latest"


def _docker() -> bool:
    try:
        run("docker", "image", "inspect", IMAGE, timeout=20)
    except (AssertionError, OSError, subprocess.TimeoutExpired):
        return False
    return True


def _container(task_id: str) -> str:
    out = run("docker", "ps", "-q", "--filter", f"label=com.shoal.task.id={task_id}")
    (container,) = out.split()
    return container


def _ready(c: NetCluster, service: str, n: int) -> list[dict[str, Any]]:
    return wait_for(lambda: len(r := c.running(service)) == n and r, 30, f"{n} {service} tasks")


def _on(t: dict[str, Any], c: NetCluster) -> str:
    return str(t["node"])


def test_a_task_reaches_a_service_on_another_node_by_name_and_the_vip_spreads(
    net: NetCluster,
) -> None:
    c = net
    c.service("web", "--replicas", "2", "--network", "back", "--constraint", "node.hostname==b")
    c.shoal(
        "service", "create", "--detach", "--name", "client", "--network", "back",
        "--constraint", "node.hostname==a", "sleep", "600",
    )  # fmt: skip
    web = _ready(c, "web", 2)
    (client,) = _ready(c, "client", 1)
    assert {_on(t, c) for t in web} == {"b"} and _on(client, c) == "a"
    ns = c.task_ns("a", client["id"])

    (vip,) = wait_for(lambda: _addresses(c.client(ns, "web", 0)), 10, "web resolves")
    task_addresses = wait_for(
        lambda: len(found := _addresses(c.client(ns, "tasks.web", 0))) == 2 and found,
        10,
        "tasks.web resolves to both tasks",
    )
    assert vip not in task_addresses
    (inspected,) = json.loads(c.shoal("service", "inspect", "web"))
    (back,) = json.loads(c.shoal("network", "inspect", "back"))
    assert inspected["Endpoint"]["VirtualIPs"] == [{"NetworkID": back["Id"], "Addr": f"{vip}/24"}]

    answers = wait_for(
        lambda: (
            {line.split()[0] for line in c.client(ns, "web", 8000, 20) if "error" not in line}
            == set(task_addresses)
        ),
        15,
        "connections to the VIP reach both tasks",
    )
    assert answers
    by_vip = c.client(ns, vip, 8000, 20)
    assert {line.split()[0] for line in by_vip} == set(task_addresses)
    # the connection arrives from the client task's own address: nothing rewrote the source
    assert {line.split()[1] for line in by_vip} == set(_addresses(c.client(ns, "tasks.client", 0)))


def test_networks_are_kept_apart(net: NetCluster) -> None:
    c = net
    c.shoal("network", "create", "other")
    c.service("apart", "--network", "other", "--constraint", "node.hostname==a")
    if not c.running("client"):
        pytest.skip("needs the client task of the first test")
    (task,) = _ready(c, "apart", 1)
    (client,) = c.running("client")
    client_ns = c.task_ns("a", client["id"])
    apart_ns = c.task_ns("a", task["id"])
    (address,) = [
        line.split()[3].split("/")[0]
        for line in run("ip", "-n", apart_ns, "-4", "-o", "addr", "show", "eth0").splitlines()
    ]
    # the task answers on its own network (from the node, which is on every local network) ...
    wait_for(lambda: "error" not in c.from_node("a", address, 8000)[0], 15, "apart answers")
    # ... but not to a task on another network, on the same node
    assert c.client(client_ns, address, 8000) == ["error TimeoutError"]
    # and its name is not the client's to know: it goes to the node's own resolvers, which
    # know nothing of it (with none reachable from here, the answer is a failure)
    assert "error" in c.client(client_ns, "apart", 0)


def test_dnsrr_names_every_task_and_a_killed_task_leaves_the_rotation_at_once(
    net: NetCluster,
) -> None:
    c = net
    c.service(
        "rr", "--replicas", "2", "--network", "back", "--endpoint-mode", "dnsrr",
        "--constraint", "node.hostname==b", "--restart-condition", "none",
    )  # fmt: skip
    if not c.running("client"):
        pytest.skip("needs the client task of the first test")
    rr = _ready(c, "rr", 2)
    (client,) = c.running("client")
    ns = c.task_ns("a", client["id"])
    both = wait_for(
        lambda: len(found := _addresses(c.client(ns, "rr", 0))) == 2 and found, 10, "rr resolves"
    )
    assert _addresses(c.client(ns, "tasks.rr", 0)) == both

    victim = rr[0]
    victim_ns = c.task_ns("b", victim["id"])
    pids = run("ip", "netns", "pids", victim_ns).split()
    assert pids, "the task's process runs in its own namespace"
    (victim_address,) = [
        a for a in both if a in run("ip", "-n", victim_ns, "-4", "-o", "addr", "show")
    ]
    for pid in pids:
        run("kill", "-9", pid, check=False)
    started = time.monotonic()
    wait_for(
        lambda: _addresses(c.client(ns, "rr", 0)) == [a for a in both if a != victim_address],
        10,
        "the killed task's address leaves the name",
    )
    assert time.monotonic() - started < 5


def test_the_routing_mesh_answers_on_every_node_and_host_mode_only_where_tasks_run(
    net: NetCluster,
) -> None:
    c = net
    c.service("pub", "--replicas", "1", "-p", "8080:8000", "--constraint", "node.hostname==b")
    c.service(
        "hostly", "--replicas", "1", "--publish", "published=8090,target=8000,mode=host",
        "--network", "back", "--constraint", "node.hostname==b",
    )  # fmt: skip
    _ready(c, "pub", 1)
    _ready(c, "hostly", 1)
    for node in ("m", "a", "b"):

        def answer(address: str = c.f.addresses[node]) -> str:
            reply = str(c.from_node("a", address, 8080)[0])
            return "" if "error" in reply else reply

        got = wait_for(answer, 15, f"the mesh answers on {node}")
        assert got.split()[0].startswith("10.254."), got  # a task's ingress address
    b, a = c.f.addresses["b"], c.f.addresses["a"]
    wait_for(lambda: "error" not in c.from_node("m", b, 8090)[0], 15, "host port on b")
    assert c.from_node("m", a, 8090)[0].startswith("error")  # no task on a: nothing there


def test_the_proxy_protocol_option_delivers_the_clients_address(net: NetCluster) -> None:
    c = net
    c.service(
        "keep", "--replicas", "1", "-p", "8081:8000", "--label", "shoal.proxy-protocol=true",
        "--constraint", "node.hostname==b",
    )  # fmt: skip
    _ready(c, "keep", 1)
    client = c.f.addresses["a"]
    line = wait_for(
        lambda: "PROXY" in (r := c.from_node("a", c.f.addresses["m"], 8081)[0]) and r,
        15,
        "a PROXY header",
    )
    header = line.split(" ", 2)[2]
    mesh = re.escape(c.f.addresses["m"])
    assert re.fullmatch(rf"PROXY TCP4 {re.escape(client)} {mesh} \d+ 8081", header), line


def _addresses(answer: Any) -> list[str]:
    return answer if isinstance(answer, list) else []


def test_containers_join_the_overlay_find_each_other_and_process_tasks_by_name(
    net: NetCluster,
) -> None:
    c = net
    if "d" not in c.data:
        pytest.skip(f"needs Docker Engine and the {IMAGE} image")
    serve = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8000 -h /www"
    for name, command in (("dweb", serve), ("dclient", "exec sleep 600")):
        c.shoal(
            "service", "create", "--detach", "--name", name, "--network", "back",
            "--constraint", "node.hostname==d", *(("--replicas", "2") if name == "dweb" else ()),
            IMAGE, "sh", "-c", command,
        )  # fmt: skip
    _ready(c, "dweb", 2)
    (client,) = _ready(c, "dclient", 1)
    container = _container(client["id"])

    def fetch(host: str) -> str:  # the last line of the answer: the page, a hostname
        request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} 8000"
        out = run("docker", "exec", container, "sh", "-c", request, check=False).strip()
        return out.splitlines()[-1] if out else ""

    hostnames = wait_for(
        lambda: len(seen := {fetch("dweb") for _ in range(12)} - {""}) == 2 and seen,
        20,
        "both dweb containers answer through the VIP",
    )
    assert len(hostnames) == 2
    resolv = run("docker", "exec", container, "cat", "/etc/resolv.conf")
    assert "nameserver 10." in resolv, resolv
    if c.running("web"):  # a process task on node b, reached by name from a container on d
        line = run(
            "docker", "exec", container, "sh", "-c", "echo hello | nc -w 3 web 8000", check=False
        )
        assert line.split()[-1:] == ["hello"], line


def test_a_node_behind_nat_gets_no_traffic_from_other_nodes(net: NetCluster) -> None:
    c = net
    (described,) = json.loads(c.shoal("node", "inspect", "n"))
    assert described["Shoal"]["NAT"] is True
    assert described["Status"]["Addr"] == c.f.addresses["n"]
    for node in ("b", "n"):
        c.shoal("node", "update", "--label-add", "pair=1", node)
    c.service(
        "split", "--replicas", "2", "--replicas-max-per-node", "1", "-p", "8082:8000",
        "--constraint", "node.labels.pair==1",
    )  # fmt: skip
    tasks = {_on(t, c): t for t in _ready(c, "split", 2)}
    assert sorted(tasks) == ["b", "n"]
    on_b = run("ip", "-n", c.task_ns("b", tasks["b"]["id"]), "-4", "-o", "addr", "show")

    def answers() -> list[str]:
        got = [str(line) for line in c.from_node("a", c.f.addresses["m"], 8082, 20)]
        return [] if any("error" in line for line in got) else got

    got = wait_for(answers, 15, "the mesh on m answers every connection")
    addresses = {line.split()[0] for line in got}
    assert len(addresses) == 1 and f" {addresses.pop()}/" in on_b, (got, on_b)


def _devices(c: NetCluster, node: str) -> list[str]:
    out = run("ip", "-n", c.f.nodes[node], "-o", "link", "show")
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def _task_namespaces(c: NetCluster, node: str) -> list[str]:
    listed = run("ip", "netns", "list").split("\n")
    prefix = namespace_prefix(c.ids[node])
    return [line.split()[0] for line in listed if line.startswith(prefix)]


def test_what_a_network_and_its_tasks_leave_behind_is_removed(net: NetCluster) -> None:
    c = net
    if not c.running("apart"):
        pytest.skip("needs the service of the network test")
    bridges = [d for d in _devices(c, "a") if d.startswith(("shb", "shv"))]
    assert len(bridges) >= 4  # back and other (and ingress): a bridge and a VXLAN device each
    c.shoal("service", "rm", "apart")
    c.shoal("network", "rm", "other")
    wait_for(
        lambda: (
            len([d for d in _devices(c, "a") if d.startswith(("shb", "shv"))]) == len(bridges) - 2
        ),
        15,
        "the other network's bridge and VXLAN device gone from node a",
    )


def test_a_node_that_leaves_removes_everything_it_set_up(net: NetCluster) -> None:
    c = net
    assert _task_namespaces(c, "a"), "node a runs tasks in namespaces of their own"
    c.shoal("swarm", "leave", node="a")
    assert [d for d in _devices(c, "a") if d.startswith(("sh",))] == []
    assert _task_namespaces(c, "a") == []
    rules = run("ip", "netns", "exec", c.f.nodes["a"], "iptables-save")
    assert "SHOAL" not in rules, rules
