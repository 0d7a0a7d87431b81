"""The allocator's pure core (subnets, addresses, VIPs, ports) and the per-node routing tables."""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import msgpack
import pytest

from agent.manager.reconcile.allocation import DYNAMIC_PORTS, Allocation, AllocationError
from agent.manager.reconcile.allocator import INGRESS_ID, allocate
from agent.manager.reconcile.routes import receives_traffic, table_for
from agent.manager.store import Network, Node, NodeStatus, Service, Task
from agent.model import DesiredState
from agent.model.spec import (
    ContainerSpec,
    EndpointSpec,
    NetworkAttachment,
    PortConfig,
    ServiceSpec,
    TaskSpec,
)
from tests.store.store_values import status

# --- building objects -------------------------------------------------------------------------


def network(ident: str, name: str | None = None, *, subnet: str = "", created: str = "") -> Network:
    return Network(id=ident, name=name or ident, subnet=subnet, created=created or ident)


def service(
    ident: str,
    name: str | None = None,
    *,
    networks: tuple[str | NetworkAttachment, ...] = (),
    mode: str = "vip",
    ports: tuple[PortConfig, ...] = (),
    labels: dict[str, str] | None = None,
    created: str = "",
) -> Service:
    spec = ServiceSpec(
        name=name or ident,
        labels=labels or {},
        task_template=TaskSpec(
            container=ContainerSpec(image="nginx"),
            networks=tuple(
                n if isinstance(n, NetworkAttachment) else NetworkAttachment(target=n)
                for n in networks
            ),
        ),
        endpoint_spec=EndpointSpec(mode=mode, ports=ports),  # type: ignore[arg-type]
    )
    return Service(id=ident, name=spec.name, spec=spec, created=created or ident)


def task(
    ident: str,
    svc: Service,
    node: str = "",
    state: str = "running",
    *,
    desired: str = "running",
    health: str | None = None,
) -> Task:
    return Task(
        id=ident,
        service_id=svc.id,
        node_id=node,
        desired_state=DesiredState(desired),
        spec=svc.spec.task_template,
        status=status(state, state, health=health),
    )


def node(ident: str, status: str = "ready", **description: Any) -> Node:
    return Node(
        id=ident, hostname=f"host-{ident}", status=NodeStatus(status), description=description
    )


def ports(*configs: PortConfig) -> tuple[PortConfig, ...]:
    return configs


def addresses_of(alloc: Allocation, net: str) -> dict[str, str]:
    return {t: nets[net] for t, nets in alloc.addresses.items() if net in nets}


# --- subnets ------------------------------------------------------------------------------------


def test_networks_get_distinct_24s_from_10_0_1_0_in_creation_order() -> None:
    nets = [network("c", created="3"), network("a", created="1"), network("b", created="2")]

    alloc = allocate(None, nets, [], [])

    assert {k: (v.subnet, v.gateway) for k, v in alloc.networks.items()} == {
        "a": ("10.0.1.0/24", "10.0.1.1"),
        "b": ("10.0.2.0/24", "10.0.2.1"),
        "c": ("10.0.3.0/24", "10.0.3.1"),
        INGRESS_ID: ("10.254.0.0/16", "10.254.0.1"),
    }
    assert alloc.errors == {}


def test_a_named_subnet_is_honoured_and_automatic_ones_avoid_it() -> None:
    nets = [
        network("wide", subnet="10.0.0.0/16", created="1"),
        network("own", subnet="192.168.7.0/24", created="2"),
        network("auto", created="3"),
    ]

    alloc = allocate(None, nets, [], [])

    assert alloc.networks["wide"].subnet == "10.0.0.0/16"
    assert alloc.networks["own"].subnet == "192.168.7.0/24"
    assert alloc.networks["own"].gateway == "192.168.7.1"
    assert alloc.networks["auto"].subnet == "10.1.0.0/24"


def test_a_subnet_overlapping_an_earlier_network_is_an_error_on_the_later_one() -> None:
    nets = [
        network("first", subnet="10.9.0.0/16", created="1"),
        network("second", subnet="10.9.3.0/24", created="2"),
        network("mesh", subnet="10.254.1.0/24", created="3"),
    ]

    alloc = allocate(None, nets, [], [])

    assert "first" in alloc.networks
    assert "second" not in alloc.networks and "mesh" not in alloc.networks
    assert 'overlaps network "first" (10.9.0.0/16)' in alloc.errors["second"][0]
    assert 'overlaps network "ingress"' in alloc.errors["mesh"][0]


def test_a_network_that_claims_a_held_subnet_later_does_not_take_it() -> None:
    auto = network("auto", created="2")
    before = allocate(None, [auto], [], [])
    late = network("late", subnet="10.0.1.0/24", created="1")  # created earlier, named later

    alloc = allocate(before, [auto, late], [], [])

    assert alloc.networks["auto"].subnet == "10.0.1.0/24"
    assert "late" in alloc.errors


def test_an_invalid_subnet_is_reported_on_the_network_and_on_its_services() -> None:
    nets = [network("bad", subnet="10.0.300.0/24")]
    web = service("web", networks=("bad",))

    alloc = allocate(None, nets, [web], [task("t1", web)])

    assert alloc.errors["bad"] == (
        'network "bad": "10.0.300.0/24" is not a subnet (expected e.g. 10.0.9.0/24)',
    )
    assert alloc.errors["web"] == (
        'network "bad" has no subnet: "10.0.300.0/24" is not a subnet (expected e.g. 10.0.9.0/24)',
    )
    assert alloc.addresses == {} and alloc.vips == {}


# --- addresses ----------------------------------------------------------------------------------


def test_vip_mode_services_get_a_vip_and_tasks_an_address_on_each_network() -> None:
    nets = [network("front", created="1"), network("back", created="2")]
    web = service("web", networks=("front", "back"))
    db = service("db", networks=("back",), mode="dnsrr")
    tasks = [task("t1", web), task("t2", db)]

    alloc = allocate(None, nets, [web, db], tasks)

    assert alloc.vips == {"web": {"back": "10.0.2.2", "front": "10.0.1.2"}}
    assert alloc.addresses == {
        "t1": {"back": "10.0.2.3", "front": "10.0.1.3"},
        "t2": {"back": "10.0.2.4"},
    }


def test_networks_are_named_by_name_or_by_id() -> None:
    nets = [network("n-123", "shop_backend")]
    by_name = service("a", networks=("shop_backend",))
    by_id = service("b", networks=("n-123",))

    alloc = allocate(None, nets, [by_name, by_id], [])

    assert set(alloc.vips) == {"a", "b"}
    assert alloc.errors == {}


def test_addresses_are_stable_across_calls_and_unrelated_changes() -> None:
    nets = [network("back")]
    web = service("web", networks=("back",))
    tasks = [task("t2", web), task("t5", web)]
    first = allocate(None, nets, [web], tasks)

    api = service("api", networks=("back",), created="0")  # created earlier, allocated later
    more = [*tasks, task("t1", api), task("t3", api)]
    second = allocate(first, [*nets, network("other", created="a")], [api, web], more)
    third = allocate(second, [*nets, network("other", created="a")], [api, web], more)

    assert second.vips["web"] == first.vips["web"]
    for t in ("t2", "t5"):
        assert second.addresses[t] == first.addresses[t]
    assert second.networks["back"].subnet == first.networks["back"].subnet
    assert third == second


def test_freed_addresses_come_back_only_after_every_never_used_one() -> None:
    nets = [network("small", subnet="10.7.0.0/29")]  # hosts .2 to .6 (.1 is the gateway)
    db = service("db", networks=("small",), mode="dnsrr")
    tasks = [task(f"t{i}", db) for i in (1, 2, 3)]
    alloc = allocate(None, nets, [db], tasks)
    assert addresses_of(alloc, "small") == {"t1": "10.7.0.2", "t2": "10.7.0.3", "t3": "10.7.0.4"}

    tasks = [*tasks[1:], task("t4", db)]  # t1 leaves, t4 comes
    alloc = allocate(alloc, nets, [db], tasks)
    assert addresses_of(alloc, "small")["t4"] == "10.7.0.5"

    tasks = [*tasks, task("t5", db)]
    alloc = allocate(alloc, nets, [db], tasks)
    assert addresses_of(alloc, "small")["t5"] == "10.7.0.6"

    tasks = [*tasks, task("t6", db)]  # every address has been used: t1's comes back
    alloc = allocate(alloc, nets, [db], tasks)
    assert addresses_of(alloc, "small")["t6"] == "10.7.0.2"
    assert alloc.errors == {}


def test_a_full_subnet_is_an_error_on_the_service_and_others_still_get_addresses() -> None:
    nets = [network("small", subnet="10.7.0.0/29"), network("big", created="z")]
    crowd = service("crowd", networks=("small",), mode="dnsrr")
    other = service("other", networks=("big",))
    tasks = [task(f"t{i}", crowd) for i in range(7)] + [task("o1", other)]

    alloc = allocate(None, nets, [crowd, other], tasks)

    assert len(addresses_of(alloc, "small")) == 5
    assert alloc.errors["crowd"] == (
        'network "small" (10.7.0.0/29) has no free address left: use a larger subnet or fewer '
        "tasks",
    )
    assert "o1" in alloc.addresses and "other" not in alloc.errors


def test_finished_tasks_give_their_addresses_back_but_stopping_ones_keep_them() -> None:
    nets = [network("back")]
    web = service("web", networks=("back",))
    tasks = [
        task("done", web, state="shutdown", desired="shutdown"),
        task("failed", web, state="failed", desired="shutdown"),
        task("stopping", web, state="running", desired="shutdown"),
        task("pending", web, state="pending"),
    ]

    alloc = allocate(None, nets, [web], tasks)

    assert set(alloc.addresses) == {"stopping", "pending"}


def test_tasks_keep_the_networks_of_the_spec_they_were_created_with() -> None:
    nets = [network("old", created="1"), network("new", created="2")]
    before = service("web", networks=("old",))
    old_task = task("t1", before)
    after = service("web", networks=("new",))

    alloc = allocate(None, nets, [after], [old_task, task("t2", after)])

    assert set(alloc.addresses["t1"]) == {"old"}
    assert set(alloc.addresses["t2"]) == {"new"}
    assert set(alloc.vips["web"]) == {"new"}


def test_an_unknown_network_is_an_error_and_the_service_gets_the_rest() -> None:
    nets = [network("back")]
    web = service("web", networks=("back", "nowhere"))
    good = service("good", networks=("back",))

    alloc = allocate(None, nets, [web, good], [task("t1", web)])

    assert alloc.errors == {
        "web": ('network "nowhere" not found: create it first or fix the name',)
    }
    assert set(alloc.vips["web"]) == {"back"}
    assert set(alloc.addresses["t1"]) == {"back"}
    assert "good" in alloc.vips


def test_an_ambiguous_network_name_is_an_error() -> None:
    nets = [network("n1", "shared"), network("n2", "shared")]
    web = service("web", networks=("shared",))

    alloc = allocate(None, nets, [web], [])

    assert "ambiguous (n1, n2)" in alloc.errors["web"][0]


# --- published ports ----------------------------------------------------------------------------


def test_published_zero_gets_a_stable_port_in_the_dynamic_range() -> None:
    web = service("web", ports=ports(PortConfig(target=80), PortConfig(target=81)))
    edge = service("edge", ports=ports(PortConfig(target=90, publish_mode="host")))

    alloc = allocate(None, [], [web, edge], [])
    again = allocate(alloc, [], [edge, web], [])

    published = [p.published for s in ("web", "edge") for p in alloc.ports[s]]
    assert all(DYNAMIC_PORTS[0] <= p <= DYNAMIC_PORTS[1] for p in published)
    assert len(set(published)) == 3
    assert again.ports == alloc.ports


def test_two_services_on_one_ingress_port_is_an_error_on_the_later_only() -> None:
    first = service("a", created="1", ports=ports(PortConfig(target=80, published=8080)))
    second = service(
        "b",
        created="2",
        ports=ports(PortConfig(target=80, published=8080), PortConfig(target=81, published=8081)),
    )

    alloc = allocate(None, [], [second, first], [])

    assert [p.published for p in alloc.ports["a"]] == [8080]
    assert [p.published for p in alloc.ports["b"]] == [8081]
    assert set(alloc.errors) == {"b"}
    assert 'published port 8080/tcp is already used by service "a"' in alloc.errors["b"][0]


def test_the_service_holding_a_port_keeps_it_whatever_the_creation_order() -> None:
    late = service("late", created="2", ports=ports(PortConfig(target=80, published=8080)))
    alloc = allocate(None, [], [late], [])
    early = service("early", created="1", ports=ports(PortConfig(target=80, published=8080)))

    alloc = allocate(alloc, [], [early, late], [])

    assert "late" in alloc.ports and "early" not in alloc.ports
    assert set(alloc.errors) == {"early"}


def test_host_ports_may_repeat_across_services_but_not_on_an_ingress_port() -> None:
    host = PortConfig(target=90, published=9000, publish_mode="host")
    a = service("a", created="1", ports=ports(host))
    b = service("b", created="2", ports=ports(host))
    mesh = service("mesh", created="0", ports=ports(PortConfig(target=80, published=9001)))
    clash = service(
        "c", created="3", ports=ports(PortConfig(target=1, published=9001, publish_mode="host"))
    )
    udp = service(
        "u", created="4", ports=ports(PortConfig(target=1, published=9001, protocol="udp"))
    )

    alloc = allocate(None, [], [a, b, mesh, clash, udp], [])

    assert "a" in alloc.ports and "b" in alloc.ports and "u" in alloc.ports
    assert set(alloc.errors) == {"c"}


def test_ingress_ports_put_the_service_on_the_ingress_network() -> None:
    web = service("web", ports=ports(PortConfig(target=80, published=8080)))
    edge = service("edge", ports=ports(PortConfig(target=90, published=9000, publish_mode="host")))

    alloc = allocate(None, [], [web, edge], [task("t1", web), task("t2", edge)])

    assert alloc.vips == {"web": {INGRESS_ID: "10.254.0.2"}}
    assert alloc.addresses == {"t1": {INGRESS_ID: "10.254.0.3"}}


def test_a_service_cannot_name_the_ingress_network() -> None:
    web = service("web", networks=("ingress",))

    alloc = allocate(None, [], [web], [task("t1", web)])

    assert "routing mesh" in alloc.errors["web"][0]
    assert alloc.vips == {} and alloc.addresses == {}


def test_dnsrr_services_cannot_publish_in_ingress_mode() -> None:
    rr = service(
        "rr",
        mode="dnsrr",
        ports=ports(
            PortConfig(target=80, published=8080),
            PortConfig(target=81, published=8081, publish_mode="host"),
        ),
    )

    alloc = allocate(None, [], [rr], [task("t1", rr)])

    assert [p.published for p in alloc.ports["rr"]] == [8081]
    assert "need endpoint mode vip" in alloc.errors["rr"][0]
    assert alloc.addresses == {}


# --- the allocation's own form ------------------------------------------------------------------


def test_an_allocation_round_trips_through_json_and_msgpack() -> None:
    web = service("web", networks=("back",), ports=ports(PortConfig(target=80)))
    alloc = allocate(None, [network("back")], [web, service("x", networks=("gone",))], [])

    as_json = Allocation.from_dict(json.loads(json.dumps(alloc.to_dict())))
    as_msgpack = Allocation.from_dict(msgpack.unpackb(msgpack.packb(alloc.to_dict())))

    assert as_json == alloc and as_msgpack == alloc


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"networks": {"n": {"subnet": 1, "gateway": "x"}}},
        {"ports": {"s": [{"target": "eighty"}]}},
        {"port_cursor": "soon"},
        {"vips": {"s": {"n": 7}}},
    ],
)
def test_a_malformed_allocation_is_refused(data: object) -> None:
    with pytest.raises(AllocationError):
        Allocation.from_dict(data)


def test_the_same_inputs_in_any_order_give_the_same_allocation() -> None:
    nets = [network(f"n{i}", created=str(i % 3)) for i in range(5)]
    svcs = [
        service(f"s{i}", networks=(f"n{i % 5}",), ports=ports(PortConfig(target=80 + i)))
        for i in range(6)
    ]
    tasks = [task(f"t{i}", svcs[i % 6]) for i in range(20)]
    expected = allocate(None, nets, svcs, tasks)
    rng = random.Random(7)

    for _ in range(5):
        for items in (nets, svcs, tasks):
            rng.shuffle(items)
        assert allocate(None, nets, svcs, tasks).to_dict() == expected.to_dict()


# --- routing tables -----------------------------------------------------------------------------

NODES = [
    node("n1", advertise="192.0.2.1"),
    node("n2", addresses=["192.0.2.2", "2001:db8::2"]),
    node("n3"),
]


def cluster(
    *tasks_of: Task, nets: list[Network] | None = None, svcs: list[Service] | None = None
) -> tuple[Allocation, list[Network], list[Service], list[Task]]:
    nets = nets if nets is not None else [network("back")]
    svcs = svcs or []
    tasks = list(tasks_of)
    return allocate(None, nets, svcs, tasks), nets, svcs, tasks


def table(
    node_id: str,
    world: tuple[Allocation, list[Network], list[Service], list[Task]],
    nodes: list[Node] = NODES,
) -> dict[str, Any]:
    alloc, nets, svcs, tasks = world
    return table_for(node_id, alloc, nets, svcs, tasks, nodes)


def test_vip_mode_names_and_aliases_resolve_to_the_vip_and_tasks_name_to_every_task() -> None:
    web = service("web", networks=(NetworkAttachment(target="back", aliases=("www",)),))
    world = cluster(task("t1", web, "n1"), task("t2", web, "n2"), svcs=[web])
    vip, t1, t2 = world[0].vips["web"]["back"], "10.0.1.3", "10.0.1.4"

    back = table("n1", world)["networks"]["back"]

    assert back["dns"] == {"tasks.web": [t1, t2], "web": [vip], "www": [vip]}
    assert back["vips"] == [{"service": "web", "vip": vip, "backends": [t1, t2]}]


def test_dnsrr_names_resolve_to_every_healthy_task() -> None:
    db = service("db", networks=("back",), mode="dnsrr")
    world = cluster(task("t1", db, "n1"), task("t2", db, "n2"), svcs=[db])

    back = table("n1", world)["networks"]["back"]

    assert back["dns"] == {"db": ["10.0.1.2", "10.0.1.3"], "tasks.db": ["10.0.1.2", "10.0.1.3"]}
    assert back["vips"] == []


def test_only_healthy_running_tasks_receive_traffic() -> None:
    db = service("db", networks=("back",), mode="dnsrr")
    nodes = [*NODES, node("gone", status="down")]
    tasks = [
        task("healthy", db, "n1", health="healthy"),
        task("no-check", db, "n2"),
        task("starting", db, "n1", state="starting"),
        task("warming", db, "n1", health="starting"),
        task("unhealthy", db, "n2", health="unhealthy"),
        task("failed", db, "n2", state="failed"),
        task("stopping", db, "n1", desired="shutdown"),
        task("on-down-node", db, "gone"),
    ]
    world = cluster(*tasks, svcs=[db])
    alloc = world[0]

    serving = {t.id for t in tasks if receives_traffic(t, {n.id: n for n in nodes})}
    answers = table("n1", world, nodes)["networks"]["back"]["dns"]["tasks.db"]

    assert serving == {"healthy", "no-check"}
    assert answers == sorted(alloc.addresses[t]["back"] for t in serving)


def test_a_node_gets_only_the_networks_its_live_tasks_are_on() -> None:
    nets = [network("front", created="1"), network("back", created="2"), network("idle")]
    web = service("web", networks=("front",))
    db = service("db", networks=("back",))
    tasks = [task("w1", web, "n1"), task("d1", db, "n2"), task("old", db, "n1", desired="shutdown")]
    world = cluster(*tasks, nets=nets, svcs=[web, db])

    assert list(table("n1", world)["networks"]) == ["front"]
    assert list(table("n2", world)["networks"]) == ["back"]
    assert table("n3", world)["networks"] == {}
    assert "db" not in json.dumps(table("n1", world)["networks"])


def test_a_network_lists_local_addresses_and_remote_tasks_with_their_nodes() -> None:
    web = service("web", networks=("back",))
    tasks = [task("t1", web, "n1"), task("t2", web, "n2"), task("t3", web, "n3", health="starting")]
    back = table("n1", cluster(*tasks, svcs=[web]))["networks"]["back"]

    assert back["name"] == "back" and back["subnet"] == "10.0.1.0/24"
    assert back["gateway"] == "10.0.1.1"
    assert back["local"] == {"t1": "10.0.1.3"}
    assert back["remote"] == [
        {
            "task": "t2",
            "address": "10.0.1.4",
            "node": "n2",
            "via": ["192.0.2.2", "2001:db8::2"],
            "reachable": True,
        },
        {"task": "t3", "address": "10.0.1.5", "node": "n3", "via": ["host-n3"], "reachable": True},
    ]


def test_every_ready_node_gets_the_ingress_table() -> None:
    web = service("web", ports=ports(PortConfig(target=80, published=8080)))
    nodes = [*NODES, node("n4", status="down")]
    world = cluster(task("t1", web, "n1"), task("t2", web, "n2", health="unhealthy"), svcs=[web])

    expected_ports = [
        {
            "protocol": "tcp",
            "published": 8080,
            "target": 80,
            "service": "web",
            "vip": "10.254.0.2",
            "proxy_protocol": False,
            "backends": [
                {
                    "task": "t1",
                    "address": "10.254.0.3",
                    "node": "n1",
                    "via": ["192.0.2.1"],
                    "reachable": True,
                }
            ],
        }
    ]
    on_n3 = table("n3", world, nodes)
    assert on_n3["ingress"] == {
        "subnet": "10.254.0.0/16",
        "gateway": "10.254.0.1",
        "vni": 4096,
        "node_address": None,  # no node was given an address on ingress in this allocation
        "local": {},
        "remote": [
            {
                "task": "t1",
                "address": "10.254.0.3",
                "node": "n1",
                "via": ["192.0.2.1"],
                "reachable": True,
            },
            {
                "task": "t2",
                "address": "10.254.0.4",
                "node": "n2",
                "via": ["192.0.2.2", "2001:db8::2"],
                "reachable": True,
            },
        ],
        "ports": expected_ports,
    }
    assert on_n3["networks"] == {}  # ingress is its own section, never under networks
    assert table("n2", world, nodes)["ingress"]["ports"] == expected_ports
    assert table("n4", world, nodes)["ingress"]["ports"] == []
    on_n1 = table("n1", world, nodes)["ingress"]
    assert on_n1["local"] == {"t1": "10.254.0.3"}
    assert on_n1["ports"][0]["backends"][0]["via"] == []


def test_host_mode_ports_only_on_the_nodes_running_the_task() -> None:
    host = PortConfig(target=90, published=9000, publish_mode="host")
    edge = service("edge", ports=ports(host, PortConfig(target=91, publish_mode="host")))
    world = cluster(task("t1", edge, "n1"), task("t2", edge, "n2"), svcs=[edge])
    dynamic = world[0].ports["edge"][1].published

    assert table("n1", world)["host_ports"] == [
        {
            "task": "t1",
            "service": "edge",
            "protocol": "tcp",
            "published": 9000,
            "target": 90,
            "address": None,
            "proxy_protocol": False,
        },
        {
            "task": "t1",
            "service": "edge",
            "protocol": "tcp",
            "published": dynamic,
            "target": 91,
            "address": None,
            "proxy_protocol": False,
        },
    ]
    assert [p["task"] for p in table("n2", world)["host_ports"]] == ["t2", "t2"]
    assert table("n3", world)["host_ports"] == []
    assert table("n3", world)["ingress"]["ports"] == []


def test_a_node_behind_nat_is_marked_unreachable_and_gets_no_traffic_from_others() -> None:
    nodes = [*NODES, node("edge", nat=True)]
    web = service("web", networks=("back",), ports=ports(PortConfig(target=80, published=80)))
    world = cluster(task("t1", web, "n1"), task("t2", web, "edge"), svcs=[web])
    t2 = world[0].addresses["t2"]

    on_n1 = table("n1", world, nodes)
    on_edge = table("edge", world, nodes)

    remote = on_n1["networks"]["back"]["remote"]
    assert remote == [
        {
            "task": "t2",
            "address": t2["back"],
            "node": "edge",
            "via": ["host-edge"],
            "reachable": False,
        }
    ]
    assert t2["back"] not in on_n1["networks"]["back"]["dns"]["tasks.web"]
    assert [b["task"] for b in on_n1["ingress"]["ports"][0]["backends"]] == ["t1"]
    # The NAT node itself serves its own tasks and reaches the others.
    assert on_edge["networks"]["back"]["dns"]["tasks.web"] == sorted(
        [t2["back"], world[0].addresses["t1"]["back"]]
    )
    assert [b["task"] for b in on_edge["ingress"]["ports"][0]["backends"]] == ["t1", "t2"]


def test_the_proxy_protocol_label_marks_published_ports() -> None:
    every = service(
        "every",
        ports=ports(PortConfig(target=80, published=80)),
        labels={"shoal.proxy-protocol": "true"},
    )
    some = service(
        "some",
        ports=ports(
            PortConfig(target=443, published=443),
            PortConfig(target=8443, published=8443, publish_mode="host"),
            PortConfig(target=53, published=53, protocol="udp"),
        ),
        labels={"shoal.proxy-protocol": "443, 8443/tcp"},
    )
    world = cluster(task("t1", every, "n1"), task("t2", some, "n1"), svcs=[every, some])

    result = table("n1", world)

    ingress = {p["published"]: p["proxy_protocol"] for p in result["ingress"]["ports"]}
    assert ingress == {53: False, 80: True, 443: True}
    assert [p["proxy_protocol"] for p in result["host_ports"]] == [True]


def test_tables_are_identical_whatever_the_input_order_and_versioned_by_content() -> None:
    nets = [network("front", created="1"), network("back", created="2")]
    web = service("web", networks=("front", "back"), ports=ports(PortConfig(target=80)))
    db = service("db", networks=("back",), mode="dnsrr")
    tasks = [task(f"w{i}", web, f"n{i % 3 + 1}") for i in range(4)]
    tasks += [task(f"d{i}", db, f"n{i % 3 + 1}") for i in range(3)]
    alloc = allocate(None, nets, [web, db], tasks)
    expected = json.dumps(table_for("n1", alloc, nets, [web, db], tasks, NODES))
    rng = random.Random(3)

    for _ in range(5):
        n, s, t = rng.sample(nets, len(nets)), rng.sample([web, db], 2), rng.sample(tasks, 7)
        again = allocate(None, n, s, t)
        got = table_for("n1", again, n, s, t, rng.sample(NODES, len(NODES)))
        assert json.dumps(got) == expected

    version = json.loads(expected)["version"]
    sick = [dataclasses.replace(tasks[0], status=status("running", health="unhealthy"))]
    changed = table_for("n1", alloc, nets, [web, db], sick + tasks[1:], NODES)
    assert changed["version"] != version
    unrelated = table_for("n1", alloc, [*nets, network("spare")], [web, db], tasks, NODES)
    assert unrelated["version"] == version


# --- what nodes need to apply tables ----------------------------------------------------------


def test_networks_get_stable_distinct_vxlan_ids_and_ingress_has_4096() -> None:
    nets = [network("a"), network("b")]
    first = allocate(None, nets, [], [])
    assert {k: v.vni for k, v in first.networks.items()} == {"a": 4097, "b": 4098, INGRESS_ID: 4096}

    later = allocate(first, [network("b"), network("c", created="z")], [], [])
    assert later.networks["b"].vni == 4098  # kept for life
    assert later.networks["c"].vni == 4097  # the lowest free one
    assert Allocation.from_dict(later.to_dict()) == later


def test_nodes_get_an_ingress_address_only_while_a_port_is_published_in_ingress_mode() -> None:
    web = service("web", ports=ports(PortConfig(target=80, published=8080)))
    plain = service("plain")
    assert allocate(None, [], [plain], [], ["n1", "n2"]).nodes == {}

    alloc = allocate(None, [], [web], [task("t1", web, "n1")], ["n2", "n1"])
    assert alloc.nodes == {"n1": {INGRESS_ID: "10.254.0.3"}, "n2": {INGRESS_ID: "10.254.0.4"}}
    assert alloc.addresses["t1"] == {INGRESS_ID: "10.254.0.5"}
    again = allocate(alloc, [], [web], [task("t1", web, "n1")], ["n1", "n2", "n3"])
    assert again.nodes["n1"] == alloc.nodes["n1"] and again.nodes["n2"] == alloc.nodes["n2"]
    assert again.nodes["n3"] == {INGRESS_ID: "10.254.0.6"}


def test_a_table_names_its_node_address_remote_nodes_and_each_task_interfaces_in_order() -> None:
    nets = [network("front"), network("back")]
    web = service(
        "web",
        networks=("back", "front"),
        ports=ports(PortConfig(target=80, published=8080)),
    )
    tasks = [task("t1", web, "n1"), task("t2", web, "n2")]
    alloc = allocate(None, nets, [web], tasks, ["n1", "n2"])
    on_n1 = table_for("n1", alloc, nets, [web], tasks, NODES)

    back, front = alloc.addresses["t1"]["back"], alloc.addresses["t1"]["front"]
    assert on_n1["tasks"] == {
        "t1": [
            {"network": "back", "address": back},
            {"network": "front", "address": front},
            {"network": INGRESS_ID, "address": alloc.addresses["t1"][INGRESS_ID]},
        ]
    }
    assert on_n1["networks"]["back"]["vni"] == alloc.networks["back"].vni
    ingress = on_n1["ingress"]
    assert ingress["node_address"] == alloc.nodes["n1"][INGRESS_ID]
    n2_address = alloc.nodes["n2"][INGRESS_ID]
    assert {
        "address": n2_address,
        "node": "n2",
        "via": ["192.0.2.2", "2001:db8::2"],
        "reachable": True,
    } in ingress["remote"]
    assert all(p["node"] != "n1" for p in ingress["remote"])
