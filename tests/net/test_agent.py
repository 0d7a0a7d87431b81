"""The node's network agent: routing tables in, kernel state, DNS answers and mesh ports out.

The kernel backend and the routing mesh are in-memory fakes that record what they are given;
the tables are the real ones, made by the allocator and
:func:`agent.manager.reconcile.routes.table_for` from store objects. The embedded DNS server is
real: it is asked to listen on the networks' gateway addresses, which this machine does not hold,
so it only logs that it cannot."""

from __future__ import annotations

import asyncio
import copy
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from agent.manager.reconcile.allocation import Allocation
from agent.manager.reconcile.allocator import INGRESS_ID, allocate
from agent.manager.reconcile.routes import PROXY_PROTOCOL_LABEL, table_for
from agent.manager.store import Network, Node, NodeStatus, Service, Task
from agent.model import Assignment, DesiredState
from agent.model.spec import (
    ContainerSpec,
    EndpointSpec,
    NetworkAttachment,
    PortConfig,
    ServiceSpec,
    TaskSpec,
)
from agent.net.agent import NetAgent, NetworkUnavailable
from agent.net.linux import LinuxNetwork
from agent.net.mesh import Mesh
from agent.net.plan import Interface, NetworkState, NodeState, Peer, TaskNetState, Vip
from tests.store.store_values import status

N1_UNDERLAY = "192.0.2.1"
N2_UNDERLAY = "192.0.2.2"
N3_UNDERLAY = "192.0.2.3"
TIMEOUT = 5.0

# --- fakes --------------------------------------------------------------------------------------


class _Recording:
    """Something the agent calls; a test waits until what it recorded satisfies a predicate."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def _note(self) -> None:
        self._changed.set()

    async def until(self, predicate: Callable[[], Any], what: str) -> None:
        try:
            async with asyncio.timeout(TIMEOUT):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out after {TIMEOUT} s waiting for {what}") from None


class FakeKernel(_Recording):
    """The kernel backend: records every NodeState, returns ``problems`` from each apply."""

    def __init__(self) -> None:
        super().__init__()
        self.states: list[NodeState] = []
        self.problems: list[str] = []
        self.namespaces: list[str] = []
        self.removed = 0

    async def create_task_namespace(self, task_id: str) -> str:
        self.namespaces.append(task_id)
        return f"name:ns-{task_id}"

    async def apply(self, state: NodeState) -> list[str]:
        self.states.append(state)
        self._note()
        return list(self.problems)

    async def remove_all(self) -> None:
        self.removed += 1

    @property
    def last(self) -> NodeState:
        assert self.states, "the kernel backend was never given a state"
        return self.states[-1]


class FakeMesh(_Recording):
    """The routing mesh: records every table it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, Any]] = []
        self.closed = 0

    async def apply(self, table: dict[str, Any]) -> None:
        self.tables.append(copy.deepcopy(table))
        self._note()

    async def close(self) -> None:
        self.closed += 1


# --- building the cluster -----------------------------------------------------------------------


def network(ident: str) -> Network:
    return Network(id=ident, name=ident, created=ident)


def service(
    ident: str,
    *,
    networks: Iterable[str] = (),
    ports: Iterable[PortConfig] = (),
    labels: dict[str, str] | None = None,
) -> Service:
    spec = ServiceSpec(
        name=ident,
        labels=labels or {},
        task_template=TaskSpec(
            container=ContainerSpec(image="busybox"),
            networks=tuple(NetworkAttachment(target=n) for n in networks),
        ),
        endpoint_spec=EndpointSpec(mode="vip", ports=tuple(ports)),
    )
    return Service(id=ident, name=ident, spec=spec, created=ident)


def task(ident: str, svc: Service, node_id: str) -> Task:
    return Task(
        id=ident,
        service_id=svc.id,
        node_id=node_id,
        desired_state=DesiredState.RUNNING,
        spec=svc.spec.task_template,
        status=status("running", "running"),
    )


def node(ident: str, address: str | None = None, **description: Any) -> Node:
    if address is not None:
        description["addresses"] = [address]
    return Node(
        id=ident, hostname=f"host-{ident}", status=NodeStatus.READY, description=description
    )


@dataclass
class Cluster:
    networks: list[Network]
    services: list[Service]
    tasks: list[Task]
    nodes: list[Node]
    allocation: Allocation

    def table(self, node_id: str = "n1") -> dict[str, Any]:
        return table_for(
            node_id, self.allocation, self.networks, self.services, self.tasks, self.nodes
        )

    def address(self, task_id: str, net: str = "back") -> str:
        return self.allocation.addresses[task_id][net]


def cluster(
    networks: list[Network], services: list[Service], tasks: list[Task], nodes: list[Node]
) -> Cluster:
    allocation = allocate(None, networks, services, tasks, nodes=[n.id for n in nodes])
    assert allocation.errors == {}
    return Cluster(networks, services, tasks, nodes, allocation)


def back_cluster(n2: Node | None = None) -> Cluster:
    """Network "back"; service "web" (vip) with t1 on n1, t2 and t3 on n2."""
    web = service("web", networks=["back"])
    return cluster(
        [network("back")],
        [web],
        [task("t1", web, "n1"), task("t2", web, "n2"), task("t3", web, "n2")],
        [node("n1", N1_UNDERLAY), n2 or node("n2", N2_UNDERLAY)],
    )


def ingress_cluster(labels: dict[str, str] | None = None) -> Cluster:
    """Service "api" publishes 8080->80 in ingress mode; its tasks t4, t5 run on n2."""
    api = service("api", ports=[PortConfig(target=80, published=8080)], labels=labels)
    return cluster(
        [],
        [api],
        [task("t4", api, "n2"), task("t5", api, "n2")],
        [node("n1", N1_UNDERLAY), node("n2", N2_UNDERLAY)],
    )


def assignment(
    task_id: str, *, networks: Iterable[str] = (), ports: Iterable[PortConfig] = ()
) -> Assignment:
    return Assignment(
        task_id=task_id,
        service_id="web",
        service_name="web",
        slot=1,
        node_id="n1",
        spec=TaskSpec(
            container=ContainerSpec(image="busybox"),
            networks=tuple(NetworkAttachment(target=n) for n in networks),
        ),
        cluster_id="c1",
        ports=tuple(ports),
    )


# --- the agent ----------------------------------------------------------------------------------


@pytest.fixture
def dns_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node1:
    """NetAgent for n1 with its fakes."""

    agent: NetAgent
    kernel: FakeKernel
    mesh: FakeMesh

    async def deliver(self, table: dict[str, Any]) -> None:
        """Hand ``table`` to the agent and wait until it has been applied once."""
        before = len(self.mesh.tables)
        await self.agent.on_table(table)
        await self.mesh.until(lambda: len(self.mesh.tables) > before, "the table to be applied")


Factory = Callable[..., Node1]


@pytest.fixture
async def make(dns_port: int, tmp_path: Path) -> AsyncIterator[Factory]:
    made: list[NetAgent] = []

    def factory(*, with_kernel: bool = True, known: bool = True, **kwargs: Any) -> Node1:
        kernel, mesh = FakeKernel(), FakeMesh()
        kwargs.setdefault("underlay", lambda: N1_UNDERLAY)
        kwargs.setdefault("wait", 0.2)
        kwargs.setdefault("resolv_conf", tmp_path / "no-resolv.conf")
        agent = NetAgent(
            "n1",
            kernel=cast(LinuxNetwork, kernel) if with_kernel else None,
            mesh=cast(Mesh, mesh),
            dns_port=dns_port,
            **kwargs,
        )
        made.append(agent)
        if known:  # what already ran on the node has been adopted
            agent.tasks_known.set()
        return Node1(agent, kernel, mesh)

    yield factory
    for agent in made:
        await agent.close()


@pytest.fixture
def n1(make: Factory) -> Node1:
    return make()


def task_state(state: NodeState, task_id: str) -> TaskNetState:
    found = [t for t in state.tasks if t.task_id == task_id]
    assert len(found) == 1, f"{task_id} in {state.tasks}"
    return found[0]


# --- 1. the kernel's state ----------------------------------------------------------------------


async def test_a_table_and_a_namespace_give_the_kernel_the_networks_and_the_task(
    n1: Node1,
) -> None:
    c = back_cluster()
    back = c.allocation.networks["back"]
    vip = c.allocation.vips["web"]["back"]
    t1, t2, t3 = c.address("t1"), c.address("t2"), c.address("t3")

    await n1.deliver(c.table())
    assert n1.kernel.last.tasks == ()  # no namespace yet: nothing to put in it
    netns = await asyncio.wait_for(
        n1.agent.namespace_for(assignment("t1", networks=["back"])), TIMEOUT
    )

    assert netns == "ns-t1"
    assert n1.kernel.namespaces == ["t1"]
    assert n1.kernel.last == NodeState(
        underlay=N1_UNDERLAY,
        networks=(
            NetworkState(
                ident="back",
                subnet=back.subnet,
                gateway=back.gateway,
                vni=back.vni,
                node_address=None,
                peers=(Peer(t2, N2_UNDERLAY), Peer(t3, N2_UNDERLAY)),
            ),
        ),
        tasks=(
            TaskNetState(
                task_id="t1",
                netns="name:ns-t1",
                interfaces=(Interface("back", t1),),  # eth0
                vips=(Vip(vip, (t1, t2, t3)),),
                nameserver=back.gateway,
            ),
        ),
    )
    assert (back.subnet, back.gateway) == ("10.0.1.0/24", "10.0.1.1")
    assert n1.agent.problems == []


async def test_the_underlay_is_asked_at_every_apply(make: Factory) -> None:
    underlay = [N1_UNDERLAY]
    n1 = make(underlay=lambda: underlay[-1])
    c = back_cluster()

    await n1.deliver(c.table())
    underlay.append("198.51.100.1")
    await n1.agent.namespace_for(assignment("t1", networks=["back"]))

    assert [s.underlay for s in n1.kernel.states] == [N1_UNDERLAY, "198.51.100.1"]


async def test_unbindable_dns_addresses_are_logged_and_the_rest_is_applied(
    n1: Node1, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shoal.net")
    c = back_cluster()
    gateway = c.allocation.networks["back"].gateway

    await n1.deliver(c.table())

    assert n1.agent.applied == 1
    assert len(n1.kernel.states) == 1
    dns_warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "shoal.net" and r.getMessage().startswith("dns:")
    ]
    # this machine does not hold the gateway address: the server says so and carries on
    assert gateway in n1.agent.dns.addresses or any(gateway in m for m in dns_warnings)
    assert await n1.agent.namespace_for(assignment("t1", networks=["back"])) == "ns-t1"
    assert n1.agent.applied == 2


# --- 2. waiting for the task's addresses --------------------------------------------------------


async def test_namespace_for_waits_for_a_table_that_lists_the_task(make: Factory) -> None:
    n1 = make(wait=TIMEOUT * 2)
    web = service("web", networks=["back"])
    nodes = [node("n1", N1_UNDERLAY), node("n2", N2_UNDERLAY)]
    before = cluster([network("back")], [web], [task("t2", web, "n2")], nodes)
    after = back_cluster()

    waiter = asyncio.create_task(n1.agent.namespace_for(assignment("t1", networks=["back"])))
    await n1.deliver(before.table())  # the waiter has run by now: this table does not list t1
    assert not waiter.done()
    assert n1.kernel.namespaces == []

    await n1.agent.on_table(after.table())
    assert await asyncio.wait_for(waiter, TIMEOUT) == "ns-t1"
    assert task_state(n1.kernel.last, "t1").interfaces == (Interface("back", after.address("t1")),)


async def test_namespace_for_gives_up_after_wait_seconds(n1: Node1) -> None:
    await n1.deliver(back_cluster().table())
    loop = asyncio.get_running_loop()
    start = loop.time()

    with pytest.raises(NetworkUnavailable, match=r"within 0\.2 s"):
        await asyncio.wait_for(n1.agent.namespace_for(assignment("t9", networks=["back"])), TIMEOUT)

    assert 0.15 <= loop.time() - start < TIMEOUT
    assert n1.kernel.namespaces == []


async def test_namespace_for_gives_up_when_no_table_ever_comes(n1: Node1) -> None:
    with pytest.raises(NetworkUnavailable):
        await asyncio.wait_for(n1.agent.namespace_for(assignment("t1", networks=["back"])), TIMEOUT)
    assert n1.kernel.namespaces == []


async def test_without_a_kernel_backend_a_task_on_a_network_is_refused_at_once(
    make: Factory,
) -> None:
    n1 = make(with_kernel=False, wait=60.0)
    await n1.deliver(back_cluster().table())

    with pytest.raises(NetworkUnavailable) as caught:
        await asyncio.wait_for(n1.agent.namespace_for(assignment("t1", networks=["back"])), TIMEOUT)
    assert caught.value.reason
    with pytest.raises(NetworkUnavailable):  # an ingress port needs a namespace too
        await asyncio.wait_for(
            n1.agent.namespace_for(assignment("t1", ports=[PortConfig(target=80)])), TIMEOUT
        )


async def test_a_task_that_joins_no_network_gets_no_namespace_without_waiting(
    make: Factory,
) -> None:
    n1 = make(wait=60.0)
    host_port = PortConfig(target=80, published=8080, publish_mode="host")

    assert await asyncio.wait_for(n1.agent.namespace_for(assignment("t1")), TIMEOUT) is None
    assert (
        await asyncio.wait_for(n1.agent.namespace_for(assignment("t2", ports=[host_port])), 1)
        is None
    )
    assert n1.kernel.namespaces == []
    assert n1.kernel.states == []


# --- 3. peers that cannot be reached ------------------------------------------------------------


async def test_tasks_on_a_node_behind_nat_are_no_peers(n1: Node1) -> None:
    c = back_cluster(n2=node("n2", N2_UNDERLAY, nat=True))
    remote = c.table()["networks"]["back"]["remote"]
    assert [p["reachable"] for p in remote] == [False, False]

    await n1.deliver(c.table())
    await n1.agent.namespace_for(assignment("t1", networks=["back"]))

    (back,) = n1.kernel.last.networks
    assert back.peers == ()
    # and they are no backends of the VIP either: n1 could not reach them
    (vip,) = task_state(n1.kernel.last, "t1").vips
    assert vip.backends == (c.address("t1"),)


async def test_a_peer_known_only_by_hostname_is_no_peer(n1: Node1) -> None:
    web = service("web", networks=["back"])
    c = cluster(
        [network("back")],
        [web],
        [task("t1", web, "n1"), task("t2", web, "n2"), task("t3", web, "n3")],
        [node("n1", N1_UNDERLAY), node("n2"), node("n3", N3_UNDERLAY)],
    )
    vias = {p["task"]: p["via"] for p in c.table()["networks"]["back"]["remote"]}
    assert vias == {"t2": ["host-n2"], "t3": [N3_UNDERLAY]}

    await n1.deliver(c.table())

    (back,) = n1.kernel.last.networks
    assert back.peers == (Peer(c.address("t3"), N3_UNDERLAY),)


async def test_a_peer_of_the_other_address_family_is_no_peer(n1: Node1) -> None:
    c = back_cluster(n2=node("n2", "2001:db8::2"))

    await n1.deliver(c.table())

    (back,) = n1.kernel.last.networks
    assert back.peers == ()  # n1's underlay is IPv4: its VXLAN cannot reach an IPv6 one


# --- 4. the routing mesh ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "proxy"), [(None, False), ({PROXY_PROTOCOL_LABEL: "true"}, True)]
)
async def test_ports_published_in_ingress_mode_go_to_the_mesh(
    n1: Node1, labels: dict[str, str] | None, proxy: bool
) -> None:
    c = ingress_cluster(labels)
    source = c.allocation.nodes["n1"][INGRESS_ID]
    backends = sorted(
        (c.address(t, INGRESS_ID) for t in ("t4", "t5")),
        key=lambda a: tuple(int(x) for x in a.split(".")),
    )

    await n1.deliver(c.table())

    assert n1.mesh.tables[-1] == {
        "ingress": [
            {
                "protocol": "tcp",
                "published": 8080,
                "proxy_protocol": proxy,
                "source": source,
                "backends": [{"host": b, "port": 80} for b in backends],
            }
        ]
    }


async def test_the_ingress_network_carries_this_nodes_address(n1: Node1) -> None:
    c = ingress_cluster()
    ingress = c.allocation.networks[INGRESS_ID]
    n2_address = c.allocation.nodes["n2"][INGRESS_ID]

    await n1.deliver(c.table())

    assert n1.kernel.last.tasks == ()
    (state,) = n1.kernel.last.networks
    assert state == NetworkState(
        ident=INGRESS_ID,
        subnet=ingress.subnet,
        gateway=ingress.gateway,
        vni=ingress.vni,
        node_address=c.allocation.nodes["n1"][INGRESS_ID],
        peers=tuple(
            sorted(
                (
                    Peer(a, N2_UNDERLAY)
                    for a in (n2_address, c.address("t4", INGRESS_ID), c.address("t5", INGRESS_ID))
                ),
                key=lambda p: (p.address, p.via),
            )
        ),
    )


async def test_without_a_kernel_backend_the_mesh_still_runs_from_the_nodes_own_address(
    make: Factory,
) -> None:
    n1 = make(with_kernel=False)
    c = ingress_cluster()

    await n1.deliver(c.table())

    (port,) = n1.mesh.tables[-1]["ingress"]
    assert port["published"] == 8080
    assert port["source"] is None
    assert len(port["backends"]) == 2
    assert n1.kernel.states == []
    assert n1.agent.dns.addresses == []


async def test_a_host_port_of_a_task_in_its_own_namespace_goes_to_the_mesh(n1: Node1) -> None:
    web = service(
        "web",
        networks=["back"],
        ports=[PortConfig(target=90, published=9000, publish_mode="host")],
    )
    c = cluster(
        [network("back")],
        [web],
        [task("t1", web, "n1")],
        [node("n1", N1_UNDERLAY), node("n2", N2_UNDERLAY)],
    )

    await n1.deliver(c.table())
    assert n1.mesh.tables[-1] == {"ingress": []}  # t1 has no namespace of its own yet
    await n1.agent.namespace_for(assignment("t1", networks=["back"]))

    assert n1.mesh.tables[-1] == {
        "ingress": [
            {
                "protocol": "tcp",
                "published": 9000,
                "proxy_protocol": False,
                "backends": [{"host": c.address("t1"), "port": 90}],
            }
        ]
    }


# --- 5. DNS -------------------------------------------------------------------------------------


async def test_lookups_answer_a_local_task_from_its_networks_names(n1: Node1) -> None:
    web = service("web", networks=["back"])
    c = cluster(
        [network("back")],
        [web],
        [task("t1", web, "n1"), task("t2", web, "n2")],
        [node("n1", N1_UNDERLAY), node("n2", N2_UNDERLAY)],
    )
    vip = c.allocation.vips["web"]["back"]
    t1, t2 = c.address("t1"), c.address("t2")
    assert n1.agent.lookup(t1, "web") is None  # no table yet

    await n1.agent.on_table(c.table())

    lookup = n1.agent.lookup
    assert lookup(t1, "web") == [vip]
    assert lookup(t1, "WEB.") == [vip]
    assert lookup(t1, "Web") == [vip]
    assert lookup(t1, "tasks.web") == [t1, t2]
    assert lookup(t1, "TASKS.Web.") == [t1, t2]
    assert lookup(t1, "db") is None
    assert lookup(t1, "example.com.") is None
    assert lookup(t2, "web") is None  # t2 runs on n2: not a client of this node
    assert lookup("127.0.0.1", "web") is None


async def test_a_task_only_sees_the_names_of_its_own_networks(n1: Node1) -> None:
    web = service("web", networks=["back"])
    db = service("db", networks=["data"])
    c = cluster(
        [network("back"), network("data")],
        [web, db],
        [task("t1", web, "n1"), task("t2", db, "n1")],
        [node("n1", N1_UNDERLAY)],
    )

    await n1.agent.on_table(c.table())

    assert n1.agent.lookup(c.address("t1"), "web") == [c.allocation.vips["web"]["back"]]
    assert n1.agent.lookup(c.address("t1"), "db") is None
    assert n1.agent.lookup(c.address("t2", "data"), "db") == [c.allocation.vips["db"]["data"]]
    assert n1.agent.lookup(c.address("t2", "data"), "web") is None


# --- 6. malformed tables ------------------------------------------------------------------------


def _bad_subnet(table: dict[str, Any]) -> object:
    table["networks"]["back"]["subnet"] = "10.0.1.0/33"
    return table


def _networks_not_a_dict(table: dict[str, Any]) -> object:
    table["networks"] = [table["networks"]["back"]]
    return table


def _another_node(table: dict[str, Any]) -> object:
    table["node"] = "n2"
    return table


def _bad_vip(table: dict[str, Any]) -> object:
    table["networks"]["back"]["vips"][0]["vip"] = "ten.zero.one.two"
    return table


def _task_without_address(table: dict[str, Any]) -> object:
    del table["tasks"]["t1"][0]["address"]
    return table


@pytest.mark.parametrize(
    ("spoil", "where"),
    [
        (lambda table: ["node", "n1"], "not a mapping"),
        (lambda table: None, "not a mapping"),
        (_networks_not_a_dict, "networks: expected a dict"),
        (_bad_subnet, "networks.back: "),
        (_bad_vip, "networks.back.vips[0]: "),
        (_task_without_address, "tasks.t1: "),
        (_another_node, "for node n2 rejected on n1"),
    ],
    ids=[
        "a list",
        "none",
        "networks a list",
        "bad subnet",
        "bad vip",
        "task without address",
        "another node",
    ],
)
async def test_a_malformed_table_is_rejected_and_what_was_applied_stays(
    n1: Node1,
    caplog: pytest.LogCaptureFixture,
    spoil: Callable[[dict[str, Any]], object],
    where: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="shoal.net")
    c = back_cluster()
    good = c.table()
    await n1.deliver(good)
    applied = (n1.agent.applied, len(n1.kernel.states), len(n1.mesh.tables))
    caplog.clear()

    await n1.agent.on_table(spoil(copy.deepcopy(good)))

    assert n1.agent.rejected == 1
    assert n1.agent.table == good
    messages = [r.getMessage() for r in caplog.records if r.name == "shoal.net"]
    assert any(where in m for m in messages), messages
    # the earlier table still answers and still gives a task its namespace
    t1 = c.address("t1")
    assert n1.agent.lookup(t1, "web") == [c.allocation.vips["web"]["back"]]
    assert (n1.agent.applied, len(n1.kernel.states), len(n1.mesh.tables)) == applied
    assert await n1.agent.namespace_for(assignment("t1", networks=["back"])) == "ns-t1"
    assert task_state(n1.kernel.last, "t1").interfaces == (Interface("back", t1),)


async def test_every_rejected_table_is_counted(n1: Node1) -> None:
    for bad in ("table", 42, {"node": "n1", "tasks": []}, {"node": "n9"}):
        await n1.agent.on_table(bad)
    assert n1.agent.rejected == 4
    assert n1.agent.table == {}
    assert n1.kernel.states == []
    assert n1.mesh.tables == []


async def test_a_table_with_malformed_dns_records_is_rejected(n1: Node1) -> None:
    c = back_cluster()
    good = c.table()
    await n1.deliver(good)
    bad = copy.deepcopy(good)
    bad["networks"]["back"]["dns"] = None

    await n1.agent.on_table(bad)

    assert n1.agent.rejected == 1
    assert n1.agent.table == good


async def test_an_ingress_port_without_a_protocol_is_rejected(n1: Node1) -> None:
    table = ingress_cluster().table()
    del table["ingress"]["ports"][0]["protocol"]

    await n1.agent.on_table(table)

    assert n1.agent.rejected == 1


# --- 7. problems the kernel reports -------------------------------------------------------------


async def test_a_kernel_problem_of_the_task_refuses_it(n1: Node1) -> None:
    await n1.deliver(back_cluster().table())
    n1.kernel.problems = ["task t1: cannot move shp0123456789 into ns-t1: File exists"]

    with pytest.raises(NetworkUnavailable) as caught:
        await n1.agent.namespace_for(assignment("t1", networks=["back"]))

    assert caught.value.reason == "task t1: cannot move shp0123456789 into ns-t1: File exists"
    assert str(caught.value) == caught.value.reason


async def test_a_kernel_problem_of_another_task_does_not_refuse_this_one(n1: Node1) -> None:
    web = service("web", networks=["back"])
    c = cluster(
        [network("back")],
        [web],
        [task("t1", web, "n1"), task("t2", web, "n1")],
        [node("n1", N1_UNDERLAY)],
    )
    await n1.deliver(c.table())
    n1.kernel.problems = ["task t2: no such device"]

    assert await n1.agent.namespace_for(assignment("t1", networks=["back"])) == "ns-t1"


async def test_a_kernel_problem_of_a_task_whose_id_extends_this_ones_does_not_refuse_it(
    n1: Node1,
) -> None:
    web = service("web", networks=["back"])
    c = cluster(
        [network("back")],
        [web],
        [task("t1", web, "n1"), task("t10", web, "n1")],
        [node("n1", N1_UNDERLAY)],
    )
    await n1.deliver(c.table())
    n1.kernel.problems = ["task t10: no such device"]

    assert await n1.agent.namespace_for(assignment("t1", networks=["back"])) == "ns-t1"


async def test_a_task_is_refused_while_the_node_does_not_know_its_own_address(
    make: Factory,
) -> None:
    n1 = make(underlay=lambda: None)
    await n1.deliver(back_cluster().table())

    with pytest.raises(NetworkUnavailable):
        await n1.agent.namespace_for(assignment("t1", networks=["back"]))


async def test_a_task_on_ingress_only_gets_no_nameserver_that_never_answers(n1: Node1) -> None:
    api = service("api", ports=[PortConfig(target=80, published=8080)])
    c = cluster([], [api], [task("t1", api, "n1")], [node("n1", N1_UNDERLAY)])
    table = c.table()
    assert table["networks"] == {}
    listened = {str(n["gateway"]) for n in table["networks"].values()}
    await n1.deliver(table)

    published = PortConfig(target=80, published=8080)
    assert await n1.agent.namespace_for(assignment("t1", ports=[published])) == "ns-t1"

    state = task_state(n1.kernel.last, "t1")
    assert state.interfaces == (Interface(INGRESS_ID, c.address("t1", INGRESS_ID)),)
    assert state.nameserver is None or state.nameserver in listened


# --- container tasks ----------------------------------------------------------------------------


async def test_a_container_task_is_wired_in_by_its_first_process(n1: Node1) -> None:
    c = back_cluster()
    await n1.deliver(c.table())

    n1.agent.attach_container("t1", 4242)
    await n1.kernel.until(lambda: n1.kernel.last.tasks, "the container's namespace")

    state = task_state(n1.kernel.last, "t1")
    assert state.netns == "pid:4242"
    assert state.interfaces == (Interface("back", c.address("t1")),)
    assert n1.kernel.namespaces == []


async def test_a_container_task_gets_a_resolv_conf_naming_its_first_networks_gateway(
    make: Factory, tmp_path: Path
) -> None:
    n1 = make(state_dir=tmp_path / "state")
    c = back_cluster()
    await n1.deliver(c.table())

    path = await n1.agent.container_network(assignment("t1", networks=["back"]))

    assert path is not None
    gateway = c.allocation.networks["back"].gateway
    assert Path(path).read_text() == f"nameserver {gateway}\noptions ndots:0\n"
    assert await n1.agent.container_network(assignment("t2")) is None


async def test_a_task_the_table_no_longer_lists_leaves_the_kernels_state(
    make: Factory, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    n1 = make(state_dir=state_dir)
    web = service("web", networks=["back"])
    nodes = [node("n1", N1_UNDERLAY), node("n2", N2_UNDERLAY)]
    both = cluster([network("back")], [web], [task("t1", web, "n1"), task("t2", web, "n1")], nodes)
    await n1.deliver(both.table())
    await n1.agent.namespace_for(assignment("t1", networks=["back"]))
    resolv = await n1.agent.container_network(assignment("t2", networks=["back"]))
    assert resolv is not None and Path(resolv).is_file()
    n1.agent.attach_container("t2", 4242)
    await n1.kernel.until(lambda: len(n1.kernel.last.tasks) == 2, "both tasks in the kernel")

    gone = cluster([network("back")], [web], [], nodes)
    await n1.deliver(gone.table())

    assert n1.kernel.last.tasks == ()
    assert not (state_dir / "t2").exists()


# --- 8. the end ---------------------------------------------------------------------------------


async def test_leaving_the_cluster_removes_everything_from_the_kernel(n1: Node1) -> None:
    await n1.deliver(back_cluster().table())

    await n1.agent.close(leaving=True)

    assert n1.kernel.removed == 1
    assert n1.mesh.closed == 1
    assert n1.agent.dns.addresses == []


async def test_closing_without_leaving_keeps_the_kernels_state(n1: Node1) -> None:
    await n1.deliver(back_cluster().table())

    await n1.agent.close()

    assert n1.kernel.removed == 0
    assert n1.mesh.closed == 1
    assert n1.agent.dns.addresses == []


async def test_the_kernel_is_left_alone_until_the_tasks_already_running_are_known(
    make: Factory,
) -> None:
    node = make(known=False)
    await node.agent.on_table(back_cluster().table())
    assert await node.agent.apply() == []
    assert node.kernel.states == []  # a restarted agent must not take interfaces away
    node.agent.known()
    await node.kernel.until(lambda: node.kernel.states, "the kernel to be given a state")


async def test_a_network_overlapping_the_nodes_resolver_is_refused_not_taken_over(
    make: Factory, tmp_path: Path
) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.0.1.53\n")  # inside back's subnet, 10.0.1.0/24
    node = make(resolv_conf=resolv)
    await node.deliver(back_cluster().table())
    with pytest.raises(NetworkUnavailable, match=r"back \(10\.0\.1\.0/24\) overlaps its resolver"):
        await node.agent.namespace_for(assignment("t1", networks=["back"]))
    assert all(n.ident != "back" for n in node.kernel.last.networks)  # no bridge for it here


async def test_a_stopping_task_is_drained_once_the_table_drops_it(n1: Node1) -> None:
    await n1.deliver(back_cluster().table())
    await asyncio.wait_for(n1.agent.drained("not-here"), TIMEOUT)  # not listed: at once

    waiter = asyncio.create_task(n1.agent.drained("t1", timeout=TIMEOUT))
    await asyncio.sleep(0)  # let it look at the table, which still lists t1
    assert not waiter.done()
    web = service("web", networks=["back"])
    without_t1 = cluster(
        [network("back")],
        [web],
        [task("t2", web, "n2"), task("t3", web, "n2")],
        [node("n1", N1_UNDERLAY), node("n2", N2_UNDERLAY)],
    )
    await n1.agent.on_table(without_t1.table())
    await asyncio.wait_for(waiter, TIMEOUT)


async def test_draining_gives_up_after_its_timeout(n1: Node1) -> None:
    await n1.deliver(back_cluster().table())
    started = asyncio.get_running_loop().time()
    await n1.agent.drained("t1", timeout=0.2)  # the table never drops it
    assert asyncio.get_running_loop().time() - started >= 0.2
