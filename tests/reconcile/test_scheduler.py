"""The scheduler's pure core: filters that explain their refusals, then spread."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Literal

import pytest

from agent.manager.reconcile.scheduler import (
    Constraint,
    Decisions,
    node_matches,
    parse_constraint,
    parse_preference,
    schedule,
)
from agent.manager.reconcile.scheduler_loop import SchedulerLoop
from agent.manager.store import (
    Node,
    NodeAvailability,
    NodeRole,
    NodeStatus,
    Store,
    StoreError,
    Task,
)
from agent.model import DesiredState
from agent.model.limits import MAX_TASKS_PER_NODE
from agent.model.spec import (
    ContainerSpec,
    Placement,
    Platform,
    PortConfig,
    Resources,
    ResourceSpec,
    TaskSpec,
)
from tests.store.store_values import endpoint, status

GIB = 1 << 30
CPU = 1_000_000_000


def node(
    node_id: str,
    *,
    status: str = "ready",
    availability: str = "active",
    role: str = "worker",
    hostname: str | None = None,
    labels: dict[str, str] | None = None,
    engine_labels: dict[str, str] | None = None,
    os: str | None = "linux",
    arch: str | None = "x86_64",
    cpus: int | None = None,
    memory: int | None = None,
) -> Node:
    description: dict[str, Any] = {"hostname": hostname or node_id}
    if os is not None or arch is not None:
        description["platform"] = {k: v for k, v in (("os", os), ("arch", arch)) if v is not None}
    resources = {k: v for k, v in (("nano_cpus", cpus), ("memory_bytes", memory)) if v is not None}
    if resources:
        description["resources"] = resources
    if engine_labels is not None:
        description["engine"] = {"name": "docker", "labels": engine_labels}
    return Node(
        id=node_id,
        role=NodeRole(role),
        hostname=hostname or node_id,
        status=NodeStatus(status),
        availability=NodeAvailability(availability),
        labels=labels or {},
        description=description,
    )


def spec(
    *,
    constraints: tuple[str, ...] = (),
    preferences: tuple[str, ...] = (),
    platforms: tuple[Platform, ...] = (),
    max_replicas: int | None = None,
    cpus: int = 0,
    memory: int = 0,
) -> TaskSpec:
    return TaskSpec(
        container=ContainerSpec(image="nginx"),
        resources=Resources(reservations=ResourceSpec(nano_cpus=cpus, memory_bytes=memory)),
        placement=Placement(
            constraints=constraints,
            preferences=preferences,
            platforms=platforms,
            max_replicas_per_node=max_replicas,
        ),
    )


def task(
    task_id: str,
    service: str = "web",
    *,
    on: str = "",
    task_spec: TaskSpec | dict[str, Any] | None = None,
    state: str | None = None,
    desired: str = "running",
    host_ports: tuple[int, ...] = (),
    protocol: Literal["tcp", "udp", "sctp"] = "tcp",
) -> Task:
    typed = TaskSpec.from_dict(task_spec) if isinstance(task_spec, dict) else task_spec or spec()
    ports = [
        PortConfig(target=80, published=p, protocol=protocol, publish_mode="host")
        for p in host_ports
    ]
    return Task(
        id=task_id,
        service_id=service,
        node_id=on,
        desired_state=DesiredState(desired),
        spec=typed,
        status=status(state or ("running" if on else "pending")),
        endpoint=endpoint(ports),
    )


def pending(n: int, service: str = "web", **kwargs: Any) -> list[Task]:
    return [task(f"{service}-{i}", service, **kwargs) for i in range(n)]


def placed_on(decisions: Decisions) -> Counter[str]:
    return Counter(decisions.assigned.values())


# --- availability ---------------------------------------------------------------------------


def test_a_ready_active_node_gets_the_task() -> None:
    t = task("t1")
    assert schedule([t], [node("n1")], [t]) == Decisions({"t1": "n1"}, {})


def test_down_unknown_paused_and_drained_nodes_get_no_new_tasks() -> None:
    nodes = [
        node("down", status="down"),
        node("unknown", status="unknown"),
        node("paused", availability="pause"),
        node("drained", availability="drain"),
    ]
    d = schedule([task("t1")], nodes, [])
    assert d.assigned == {}
    assert d.unplaced == {"t1": "no suitable node (4 nodes not available for new tasks)"}
    d = schedule([task("t1")], [*nodes, node("ok")], [])
    assert d.assigned == {"t1": "ok"}


def test_no_nodes_at_all_is_explained() -> None:
    d = schedule([task("t1")], [], [])
    assert d.unplaced == {"t1": "no suitable node (no nodes in the cluster)"}


# --- resources ------------------------------------------------------------------------------


def test_memory_reservation_must_fit_what_running_tasks_leave() -> None:
    running = task("old", "db", on="n1", task_spec=spec(memory=3 * GIB))
    d = schedule(
        [task("t1", task_spec=spec(memory=2 * GIB))], [node("n1", memory=4 * GIB)], [running]
    )
    assert d.unplaced == {"t1": "no suitable node (1 node has insufficient memory)"}
    d = schedule([task("t1", task_spec=spec(memory=GIB))], [node("n1", memory=4 * GIB)], [running])
    assert d.assigned == {"t1": "n1"}


def test_cpu_reservation_must_fit_what_running_tasks_leave() -> None:
    running = task("old", "db", on="n1", task_spec=spec(cpus=CPU))
    nodes = [node("n1", cpus=2 * CPU), node("n2", cpus=CPU // 2)]
    d = schedule([task("t1", task_spec=spec(cpus=2 * CPU))], nodes, [running])
    assert d.unplaced == {"t1": "no suitable node (2 nodes have insufficient CPU)"}
    d = schedule([task("t1", task_spec=spec(cpus=CPU))], nodes, [running])
    assert d.assigned == {"t1": "n1"}


def test_reservations_accumulate_within_one_call() -> None:
    s = spec(memory=GIB, cpus=CPU // 4)
    d = schedule(pending(4, task_spec=s), [node("n1", memory=3 * GIB, cpus=4 * CPU)], [])
    assert sorted(d.assigned) == ["web-0", "web-1", "web-2"]
    assert d.unplaced == {"web-3": "no suitable node (1 node has insufficient memory)"}


def test_ended_or_stopping_tasks_free_their_reservations() -> None:
    s = spec(memory=2 * GIB)
    gone = [
        task("failed", on="n1", task_spec=s, state="failed"),
        task("complete", on="n1", task_spec=s, state="complete"),
        task("stopping", on="n1", task_spec=s, desired="shutdown"),
    ]
    d = schedule([task("t1", task_spec=s)], [node("n1", memory=2 * GIB)], gone)
    assert d.assigned == {"t1": "n1"}


def test_a_node_that_reports_no_resources_has_no_limit() -> None:
    d = schedule(pending(3, task_spec=spec(memory=100 * GIB, cpus=64 * CPU)), [node("n1")], [])
    assert len(d.assigned) == 3


def test_tasks_without_reservations_fit_an_overcommitted_node() -> None:
    running = task("old", "db", on="n1", task_spec=spec(memory=8 * GIB))
    d = schedule([task("t1")], [node("n1", memory=4 * GIB)], [running])
    assert d.assigned == {"t1": "n1"}


# --- platform -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "reported"),
    [("amd64", "x86_64"), ("x86_64", "amd64"), ("arm64", "aarch64"), ("arm", "armv7l")],
)
def test_platform_architectures_match_under_dockers_names(wanted: str, reported: str) -> None:
    s = spec(platforms=(Platform(os="linux", architecture=wanted),))
    assert schedule([task("t1", task_spec=s)], [node("n1", arch=reported)], []).assigned == {
        "t1": "n1"
    }


def test_platform_mismatch_and_unknown_platform_are_refused() -> None:
    s = spec(platforms=(Platform(os="linux", architecture="arm64"), Platform(os="windows")))
    nodes = [
        node("amd", arch="x86_64"),
        node("mystery", os=None, arch=None),
        node("pi", arch="aarch64"),
        node("win", os="windows", arch="x86_64"),
    ]
    d = schedule(pending(2, task_spec=s), nodes, [])
    assert set(d.assigned.values()) == {"pi", "win"}
    d = schedule([task("t1", task_spec=s)], nodes[:2], [])
    assert d.unplaced == {"t1": "no suitable node (2 nodes have an unsupported platform)"}


def test_an_empty_platform_field_means_any() -> None:
    s = spec(platforms=(Platform(architecture="arm64"),))
    d = schedule([task("t1", task_spec=s)], [node("n1", os="freebsd", arch="arm64")], [])
    assert d.assigned == {"t1": "n1"}


# --- constraints ----------------------------------------------------------------------------


def test_constraints_on_node_attributes() -> None:
    n = node(
        "abc123",
        role="manager",
        hostname="pi-1",
        labels={"zone": "east", "Disk": "SSD"},
        engine_labels={"kernel": "6.1"},
        arch="aarch64",
    )
    holding = [
        "node.id==abc123",
        "node.hostname == pi-1",
        "node.role==manager",
        "node.role!=worker",
        "node.platform.os==linux",
        "node.platform.arch==arm64",
        "node.platform.arch==aarch64",
        "node.labels.zone==east",
        "node.labels.Disk==ssd",
        "node.labels.rack!=r1",
        "engine.labels.kernel==6.1",
        "NODE.ROLE==Manager",
    ]
    failing = [
        "node.id!=abc123",
        "node.hostname==pi-2",
        "node.role==worker",
        "node.labels.zone!=east",
        "node.labels.rack==r1",
        "node.labels.disk==ssd",
        "engine.labels.kernel==5.10",
        "engine.labels.missing==x",
    ]
    for text in holding:
        assert node_matches(spec(constraints=(text,)), n) is None, text
    for text in failing:
        assert node_matches(spec(constraints=(text,)), n) == (
            "scheduling constraints not satisfied"
        ), text


def test_all_constraints_must_hold() -> None:
    s = spec(constraints=("node.role==worker", "node.labels.zone==east"))
    nodes = [
        node("m", role="manager", labels={"zone": "east"}),
        node("w-west", labels={"zone": "west"}),
        node("w-east", labels={"zone": "east"}),
    ]
    d = schedule(pending(2, task_spec=s), nodes, [])
    assert set(d.assigned.values()) == {"w-east"}
    d = schedule([task("t1", task_spec=s)], nodes[:2], [])
    assert d.unplaced == {
        "t1": "no suitable node (2 nodes do not satisfy the scheduling constraints)"
    }


def test_parse_constraint_accepts_both_operators_and_spaces() -> None:
    assert parse_constraint("node.labels.zone == east") == Constraint(
        "node.labels.zone", "==", "east"
    )
    assert parse_constraint("Node.Role!=manager") == Constraint("node.role", "!=", "manager")
    assert parse_constraint("engine.labels.Os==ubuntu-22.04").key == "engine.labels.Os"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("node.role=manager", "expected <attribute>==<value> or <attribute>!=<value>"),
        ("node.role", "expected <attribute>==<value>"),
        ("==manager", "the node attribute before the operator is missing"),
        ("node.role==", "the value after == is missing"),
        ("node.ip==10.0.0.1", "unknown node attribute 'node.ip'"),
        ("node.labels.==x", "unknown node attribute 'node.labels.'"),
        ("node labels==x", "'node labels' is not a node attribute"),
        ("node.role==manager!=worker", "value 'manager!=worker' has characters"),
        ("node.role=='manager'", "value \"'manager'\" has characters"),
    ],
)
def test_parse_constraint_rejects_malformed_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid constraint") as info:
        parse_constraint(text)
    assert message in str(info.value)


def test_a_task_with_a_malformed_constraint_stays_unplaced_with_the_reason() -> None:
    raw = spec().to_dict()
    raw["placement"]["constraints"] = ["node.role=manager"]
    d = schedule([task("t1", task_spec=raw)], [node("n1")], [])
    assert d.unplaced["t1"].startswith("invalid constraint 'node.role=manager'")


def test_a_task_with_a_malformed_spec_never_reaches_the_scheduler_the_store_says_why() -> None:
    raw = task("t1").to_dict()
    raw["spec"] = {"container": {}}
    with pytest.raises(StoreError) as info:
        Task.from_dict(raw)
    assert str(info.value) == "malformed task.spec: container.image: required key is missing"


# --- host-mode ports ------------------------------------------------------------------------


def test_host_port_in_use_by_a_running_task_refuses_the_node() -> None:
    running = task("old", "other", on="n1", host_ports=(8080,))
    d = schedule([task("t1", host_ports=(8080,))], [node("n1")], [running])
    assert d.unplaced == {"t1": "no suitable node (1 node has a host-mode port already in use)"}
    d = schedule([task("t1", host_ports=(8080,))], [node("n1"), node("n2")], [running])
    assert d.assigned == {"t1": "n2"}


def test_host_ports_conflict_within_one_call() -> None:
    d = schedule(pending(3, host_ports=(8080,)), [node("n1"), node("n2")], [])
    assert sorted(d.assigned.values()) == ["n1", "n2"]
    assert d.unplaced == {
        "web-2": "no suitable node (2 nodes have a host-mode port already in use)"
    }


def test_other_ports_protocols_and_ended_tasks_do_not_conflict() -> None:
    existing = [
        task("udp", "dns", on="n1", host_ports=(8080,), protocol="udp"),
        task("other", "api", on="n1", host_ports=(9090,)),
        task("failed", "old", on="n1", host_ports=(8080,), state="failed"),
    ]
    d = schedule([task("t1", host_ports=(8080,))], [node("n1")], existing)
    assert d.assigned == {"t1": "n1"}


def test_ingress_ports_never_conflict() -> None:
    ingress = PortConfig(target=80, published=8080)
    tasks = [
        Task(id=f"t{i}", service_id="web", spec=spec(), endpoint=endpoint([ingress]))
        for i in range(3)
    ]
    assert len(schedule(tasks, [node("n1")], []).assigned) == 3


# --- max replicas per node ------------------------------------------------------------------


def test_max_replicas_per_node_counts_running_and_newly_placed_tasks() -> None:
    s = spec(max_replicas=2)
    running = [task("old", on="n1", task_spec=s), task("db", "db", on="n2")]
    d = schedule(pending(4, task_spec=s), [node("n1"), node("n2")], running)
    assert placed_on(d) == {"n1": 1, "n2": 2}
    assert d.unplaced == {"web-3": "no suitable node (2 nodes have reached max replicas per node)"}


def test_zero_max_replicas_means_unlimited() -> None:
    d = schedule(pending(5, task_spec=spec(max_replicas=0)), [node("n1")], [])
    assert len(d.assigned) == 5


def test_a_node_takes_at_most_the_task_limit_of_tasks_of_all_services() -> None:
    running = [task(f"r{i}", "other", on="n1") for i in range(MAX_TASKS_PER_NODE - 2)]
    d = schedule(pending(5), [node("n1")], running)
    assert placed_on(d) == {"n1": 2}  # its assignment set stays one message under 4 MiB
    assert set(d.unplaced.values()) == {
        f"no suitable node (1 node runs the most tasks a node may ({MAX_TASKS_PER_NODE:,}))"
    }


# --- explanations ---------------------------------------------------------------------------


def test_explanation_counts_each_node_once_under_the_first_refusing_filter() -> None:
    s = spec(
        memory=2 * GIB,
        constraints=("node.labels.zone==east",),
        platforms=(Platform(architecture="amd64"),),
    )
    nodes = [
        node("drained", availability="drain", memory=GIB),  # also short of memory
        node("down", status="down"),
        node("small", memory=GIB, labels={"zone": "west"}),  # also constrained out
        node("pi", arch="aarch64", labels={"zone": "west"}),
        node("west-1", labels={"zone": "west"}),
        node("west-2"),
        node("busy", labels={"zone": "east"}),
    ]
    running = task("old", "proxy", on="busy", host_ports=(443,))
    d = schedule([task("t1", task_spec=s, host_ports=(443,))], nodes, [running])
    assert d.unplaced == {
        "t1": "no suitable node (2 nodes not available for new tasks; "
        "1 node has insufficient memory; 1 node has an unsupported platform; "
        "2 nodes do not satisfy the scheduling constraints; "
        "1 node has a host-mode port already in use)"
    }


def test_every_task_of_a_group_that_fits_nowhere_gets_the_explanation() -> None:
    d = schedule(pending(3), [node("n1", availability="pause")], [])
    assert d.unplaced == dict.fromkeys(
        ["web-0", "web-1", "web-2"], "no suitable node (1 node not available for new tasks)"
    )


# --- spread ---------------------------------------------------------------------------------


def test_spread_prefers_fewest_tasks_of_the_service_then_fewest_overall() -> None:
    existing = [
        task("w1", "web", on="a"),
        task("d1", "db", on="b"),
        task("d2", "db", on="b"),
        task("d3", "db", on="c"),
    ]
    nodes = [node("a"), node("b"), node("c")]
    # a holds web already; c holds less than b overall
    d = schedule([task("t1")], nodes, existing)
    assert d.assigned == {"t1": "c"}
    d = schedule(pending(2), nodes, existing)
    assert sorted(d.assigned.values()) == ["b", "c"]
    d = schedule(pending(3), nodes, existing)
    assert placed_on(d) == {"a": 1, "b": 1, "c": 1}


def test_spread_breaks_ties_by_node_id() -> None:
    d = schedule([task("t1")], [node("n3"), node("n1"), node("n2")], [])
    assert d.assigned == {"t1": "n1"}


def test_spread_over_zones_counts_nodes_missing_the_label_as_one_zone() -> None:
    s = spec(preferences=("spread=node.labels.zone",))
    nodes = [
        node("a1", labels={"zone": "a"}),
        node("a2", labels={"zone": "a"}),
        node("a3", labels={"zone": "a"}),
        node("b1", labels={"zone": "b"}),
        node("x1"),
    ]
    d = schedule(pending(6, task_spec=s), nodes, [])
    assert placed_on(d) == {"a1": 1, "a2": 1, "b1": 2, "x1": 2}


def test_spread_over_zones_counts_the_services_running_tasks() -> None:
    s = spec(preferences=("spread=node.labels.zone",))
    nodes = [node("a1", labels={"zone": "a"}), node("b1", labels={"zone": "b"})]
    running = [task(f"old{i}", on="a1", task_spec=s) for i in range(3)]
    d = schedule(pending(5, task_spec=s), nodes, running)
    assert placed_on(d) == {"a1": 1, "b1": 4}


def test_spread_skips_a_zone_whose_nodes_cannot_take_the_task() -> None:
    s = spec(preferences=("spread=node.labels.zone",))
    nodes = [
        node("a1", labels={"zone": "a"}),
        node("b1", labels={"zone": "b"}, availability="drain"),
    ]
    d = schedule(pending(4, task_spec=s), nodes, [])
    assert placed_on(d) == {"a1": 4}


def test_nested_spread_preferences_apply_in_order() -> None:
    s = spec(preferences=("spread=node.labels.region", "spread=node.labels.zone"))
    nodes = [
        node("eu-a1", labels={"region": "eu", "zone": "a"}),
        node("eu-a2", labels={"region": "eu", "zone": "a"}),
        node("eu-b1", labels={"region": "eu", "zone": "b"}),
        node("us-c1", labels={"region": "us", "zone": "c"}),
    ]
    d = schedule(pending(8, task_spec=s), nodes, [])
    assert placed_on(d) == {"us-c1": 4, "eu-b1": 2, "eu-a1": 1, "eu-a2": 1}


def test_spread_over_hostnames_and_engine_labels() -> None:
    by_host = spec(preferences=("spread=node.hostname",))
    nodes = [node(f"n{i}") for i in range(4)]
    assert placed_on(schedule(pending(8, task_spec=by_host), nodes, [])) == dict.fromkeys(
        ["n0", "n1", "n2", "n3"], 2
    )
    by_rack = spec(preferences=("spread=engine.labels.rack",))
    nodes = [
        node("r1a", engine_labels={"rack": "1"}),
        node("r1b", engine_labels={"rack": "1"}),
        node("r2a", engine_labels={"rack": "2"}),
    ]
    assert placed_on(schedule(pending(4, task_spec=by_rack), nodes, []))["r2a"] == 2


def test_parse_preference() -> None:
    assert parse_preference("spread=node.labels.zone") == "node.labels.zone"
    assert parse_preference("spread = Node.Hostname") == "node.hostname"
    with pytest.raises(ValueError, match="expected spread=<attribute>"):
        parse_preference("pack=node.labels.zone")
    with pytest.raises(ValueError, match="unknown node attribute"):
        parse_preference("spread=node.color")


def test_placement_is_deterministic() -> None:
    nodes = [node(f"n{i}", labels={"zone": str(i % 3)}) for i in range(10)]
    s = spec(preferences=("spread=node.labels.zone",))
    first = schedule(pending(25, task_spec=s), nodes, [])
    assert schedule(pending(25, task_spec=s), list(reversed(nodes)), []) == first


def test_thousands_of_tasks_spread_evenly_over_a_thousand_nodes() -> None:
    nodes = [node(f"node-{i:04d}", cpus=4 * CPU, memory=8 * GIB) for i in range(1000)]
    shared = spec(memory=64 << 20)
    tasks = [
        task(f"svc{s}-{i}", f"svc{s}", task_spec=shared) for s in range(10) for i in range(1000)
    ]
    d = schedule(tasks, nodes, tasks)
    assert d.unplaced == {}
    assert len(d.assigned) == 10_000
    per_node = placed_on(d)
    assert len(per_node) == 1000
    assert max(per_node.values()) - min(per_node.values()) <= 1
    for s in range(10):
        of_service = Counter(n for t, n in d.assigned.items() if t.startswith(f"svc{s}-"))
        assert max(of_service.values()) - min(of_service.values()) <= 1


# --- node_matches ---------------------------------------------------------------------------


def test_node_matches_checks_platform_and_constraints_only() -> None:
    s = spec(
        constraints=("node.role==worker",),
        platforms=(Platform(os="linux", architecture="arm64"),),
        memory=100 * GIB,
    )
    assert node_matches(s, node("pi", arch="aarch64", status="down", memory=GIB)) is None
    assert node_matches(s, node("amd", arch="x86_64")) == "unsupported platform"
    assert node_matches(s, node("m", arch="arm64", role="manager")) == (
        "scheduling constraints not satisfied"
    )


def test_node_matches_reports_a_malformed_constraint() -> None:
    s = spec(constraints=("node.role=worker",))
    reason = node_matches(s, node("n1"))
    assert reason is not None and reason.startswith("invalid constraint 'node.role=worker'")


def test_replacements_for_a_lost_node_spread_over_the_nodes_left() -> None:
    nodes = [node("a", status="down"), node("b"), node("c"), node("d")]
    existing = [
        task("old1", on="a", desired="shutdown"),
        task("old2", on="a", desired="shutdown"),
        task("b1", on="b"),
        task("c1", on="c"),
        task("d1", on="d"),
        task("d2", on="d"),
    ]
    d = schedule(pending(2), nodes, existing)
    assert placed_on(d) == {"b": 1, "c": 1}  # not both onto one node, none onto the down one


# --- nodes that rejected the service's tasks ------------------------------------------------

NOW = 1_000_000.0


def ended(
    task_id: str, on: str, state: str = "rejected", *, ago: float = 10.0, service: str = "web"
) -> Task:
    """A task of ``service`` that ended ``state`` on ``on`` ``ago`` seconds before NOW."""
    return Task(
        id=task_id,
        service_id=service,
        node_id=on,
        desired_state=DesiredState.SHUTDOWN,
        spec=spec(),
        status=status(state, "this node runs no overlay networks", timestamp=NOW - ago),
    )


def test_a_node_that_rejected_the_service_is_avoided_for_its_next_task() -> None:
    history = [ended("old", "n1")]
    # n1 is the node spread would choose (by id) without the rejection.
    d = schedule([task("t1")], [node("n1"), node("n2")], history, NOW)
    assert d.assigned == {"t1": "n2"}
    assert d.notes == {
        "t1": "avoided node n1: 1 task of this service rejected there in the last 5m"
    }


def test_when_only_the_rejecting_node_fits_the_task_still_goes_there() -> None:
    history = [ended("old1", "n1"), ended("old2", "n1")]
    d = schedule([task("t1")], [node("n1"), node("n2", availability="drain")], history, NOW)
    assert d.assigned == {"t1": "n1"}
    assert d.notes == {
        "t1": "no other node fits: n1 taken despite 2 tasks of this service rejected there "
        "in the last 5m"
    }


def test_when_every_node_rejected_the_least_rejecting_one_gets_the_task() -> None:
    history = [ended("a", "n1"), ended("b", "n1"), ended("c", "n2")]
    d = schedule([task("t1")], [node("n1"), node("n2")], history, NOW)
    assert d.assigned == {"t1": "n2"}


def test_rejections_older_than_the_window_do_not_count() -> None:
    history = [ended("old", "n1", ago=301.0)]
    d = schedule([task("t1")], [node("n1"), node("n2")], history, NOW)
    assert d.assigned == {"t1": "n1"}
    assert d.notes == {}


def test_rejections_of_another_service_do_not_count() -> None:
    history = [ended("old", "n1", service="db")]
    d = schedule([task("t1")], [node("n1"), node("n2")], history, NOW)
    assert d.assigned == {"t1": "n1"}
    assert d.notes == {}


def test_failures_count_from_five_as_in_swarm() -> None:
    nodes = [node("n1"), node("n2")]
    four = [ended(f"f{i}", "n1", "failed") for i in range(4)]
    assert schedule([task("t1")], nodes, four, NOW).assigned == {"t1": "n1"}
    five = [*four, ended("f4", "n1", "failed")]
    d = schedule([task("t1")], nodes, five, NOW)
    assert d.assigned == {"t1": "n2"}
    assert d.notes["t1"] == "avoided node n1: 5 tasks of this service failed there in the last 5m"


def test_a_new_service_version_starts_without_the_old_rejections() -> None:
    history = [ended("old", "n1")]
    newer = dataclasses.replace(task("t1"), spec_version=2)
    d = schedule([newer], [node("n1"), node("n2")], history, NOW)
    assert d.assigned == {"t1": "n1"}


def test_all_tasks_of_the_group_avoid_the_node_and_spread_over_the_others() -> None:
    history = [ended("old", "n1")]
    d = schedule(pending(4), [node("n1"), node("n2"), node("n3")], history, NOW)
    assert placed_on(d) == {"n2": 2, "n3": 2}


def test_without_a_clock_history_is_not_consulted() -> None:
    d = schedule([task("t1")], [node("n1"), node("n2")], [ended("old", "n1")])
    assert d.assigned == {"t1": "n1"}


async def test_the_loop_records_the_avoided_node_in_the_assigned_tasks_message() -> None:
    store = Store()
    index = 1

    async def commit(data: bytes) -> int:
        nonlocal index
        index += 1
        store.apply(index, data)
        return index

    store.proposer = commit
    await store.update(
        lambda tx: [tx.put(obj) for obj in (node("n1"), node("n2"), ended("old", "n1"), task("t1"))]
    )
    loop = SchedulerLoop(store, clock=lambda: NOW)
    assert await loop._pass()
    placed = store.view().get(Task, "t1")
    assert placed is not None and placed.node_id == "n2"
    assert placed.status is not None
    assert placed.status.message == (
        "assigned; avoided node n1: 1 task of this service rejected there in the last 5m"
    )


def test_a_rejection_stamped_by_a_node_whose_clock_runs_ahead_still_counts() -> None:
    d = schedule([task("t1")], [node("n1"), node("n2")], [ended("old", "n1", ago=-2.0)], NOW)
    assert d.assigned == {"t1": "n2"}
