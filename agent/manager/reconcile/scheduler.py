"""The scheduler's pure core: pending tasks in, a node for each (or why there is none) out.

Placement is a pipeline of filters in Swarm's order: availability, resources, platform,
constraints, host-mode ports, max replicas per node. Each filter can say why it refused a node,
so a task that fits nowhere carries an explanation such as "no suitable node (2 nodes not
available for new tasks; 1 node has insufficient memory)". Among the nodes that pass, tasks are
spread: evenly over the values of each placement preference (``spread=node.labels.zone``), then
to the node running the fewest tasks of the service, then the fewest tasks overall, then by id.

A node where tasks of the same service version were recently rejected (or kept failing) is
avoided while another node passes every filter, as Swarm does; when only such nodes fit, the
task still goes to the one with the fewest of them, so a reason that passes cannot starve the
service. The task's message names the nodes avoided.

Nothing here waits, reads a clock or draws a random number (the caller says what time it is):
the same inputs give the same decisions, so the driver around it (and a simulation) can replay
them.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.manager.reconcile.avoidance import (
    AVOID_AFTER,
    AVOID_WINDOW,
    avoidance,
    counted,
    is_avoided,
    recent_endings,
    window,
)
from agent.manager.reconcile.constraints import (
    ENGINE_LABELS,
    NODE_LABELS,
    Constraint,
    docker_arch,
    parse_constraint,
    parse_preference,
)
from agent.manager.store.objects import Node, NodeAvailability, NodeStatus, Task, TaskEndpoint
from agent.model import DesiredState, TaskState
from agent.model.limits import MAX_TASKS_PER_NODE
from agent.model.spec import TaskSpec

__all__ = [
    "AVOID_AFTER",
    "AVOID_WINDOW",
    "UNPLACED",
    "Constraint",
    "Decisions",
    "node_matches",
    "parse_constraint",
    "parse_preference",
    "schedule",
]


UNPLACED = "no suitable node"  # how every explanation of a task that fits nowhere begins


@dataclass(frozen=True, slots=True)
class Decisions:
    assigned: dict[str, str]  # task id -> node id
    unplaced: dict[str, str]  # task id -> why no node fits
    notes: dict[str, str] = field(default_factory=dict)  # assigned task id -> nodes avoided


# --- the nodes as the scheduler sees them -----------------------------------------------------


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _amount(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


class _NodeState:
    """One node: what it is (fixed) and what it carries (grows as this call places tasks).

    ``cpu``/``memory`` are what is left to reserve, None when the node did not say (unlimited).
    """

    __slots__ = (
        "arch",
        "available",
        "by_service",
        "cpu",
        "engine_labels",
        "hostname",
        "id",
        "labels",
        "memory",
        "os",
        "ports",
        "role",
        "total",
    )

    def __init__(self, node: Node) -> None:
        description = _mapping(node.description)
        platform = _mapping(description.get("platform"))
        resources = _mapping(description.get("resources"))
        engine_labels = _mapping(_mapping(description.get("engine")).get("labels"))
        self.id = node.id
        self.hostname = node.hostname or _text(description.get("hostname"))
        self.role = node.role
        self.available = (
            node.status == NodeStatus.READY and node.availability == NodeAvailability.ACTIVE
        )
        self.os = _text(platform.get("os")).strip().lower() or None
        self.arch = docker_arch(_text(platform.get("arch"))) or None
        self.labels = node.labels
        self.engine_labels = {k: v for k, v in engine_labels.items() if isinstance(v, str)}
        self.cpu = _amount(resources.get("nano_cpus"))
        self.memory = _amount(resources.get("memory_bytes"))
        self.total = 0
        self.by_service: dict[str, int] = {}
        self.ports: set[tuple[str, int]] = set()

    def attribute(self, key: str) -> str | None:
        if key.startswith(NODE_LABELS):
            return self.labels.get(key[len(NODE_LABELS) :])
        if key.startswith(ENGINE_LABELS):
            return self.engine_labels.get(key[len(ENGINE_LABELS) :])
        if key == "node.id":
            return self.id
        if key == "node.hostname":
            return self.hostname
        if key == "node.role":
            return self.role
        return self.os if key == "node.platform.os" else self.arch

    def occupy(self, service_id: str, cpu: int, memory: int, ports: frozenset[Any]) -> None:
        self.total += 1
        self.by_service[service_id] = self.by_service.get(service_id, 0) + 1
        if self.cpu is not None:
            self.cpu -= cpu
        if self.memory is not None:
            self.memory -= memory
        self.ports.update(ports)


_NO_PORTS: frozenset[tuple[str, int]] = frozenset()


def _occupies(task: Task) -> bool:
    """A task holds its node's resources and ports while it is meant to run and has not ended."""
    if not task.node_id or task.desired_state != DesiredState.RUNNING:
        return False
    return task.status is None or not task.status.state.is_terminal


def _host_ports(endpoint: TaskEndpoint) -> frozenset[tuple[str, int]]:
    if not endpoint.ports:
        return _NO_PORTS
    return frozenset(
        (p.protocol, p.published)
        for p in endpoint.ports
        if p.publish_mode == "host" and p.published
    )


def _reservation(spec: TaskSpec) -> tuple[int, int]:
    reservations = spec.resources.reservations
    return reservations.nano_cpus, reservations.memory_bytes


# --- what a group of tasks asks for -----------------------------------------------------------


@dataclass(slots=True)
class _Group:
    """Pending tasks of one service sharing a spec and host ports: placed under the same rules."""

    service_id: str
    spec: TaskSpec  # to recognise the next task of the group
    ports: frozenset[tuple[str, int]] = _NO_PORTS
    tasks: list[Task] = field(default_factory=list)
    error: str = ""  # set when the spec itself cannot be scheduled
    cpu: int = 0
    memory: int = 0
    platforms: tuple[tuple[str, str], ...] = ()  # (os, arch), "" = any
    constraints: tuple[Constraint, ...] = ()
    preferences: tuple[str, ...] = ()
    max_replicas: int = 0  # 0 = unlimited

    @classmethod
    def of(cls, service_id: str, spec: TaskSpec) -> _Group:
        """Raises ValueError for a constraint that does not parse."""
        placement = spec.placement
        preferences = []
        for text in placement.preferences:
            try:
                preferences.append(parse_preference(text))
            except ValueError:
                continue  # a preference only steers; Swarm skips one it does not know
        return cls(
            service_id,
            spec,
            cpu=spec.resources.reservations.nano_cpus,
            memory=spec.resources.reservations.memory_bytes,
            platforms=tuple(
                (p.os.strip().lower(), docker_arch(p.architecture)) for p in placement.platforms
            ),
            constraints=tuple(parse_constraint(text) for text in placement.constraints),
            preferences=tuple(preferences),
            max_replicas=placement.max_replicas_per_node or 0,
        )


def _groups(pending: Sequence[Task]) -> list[_Group]:
    groups: list[_Group] = []
    index: dict[tuple[str, int, frozenset[tuple[str, int]]], list[_Group]] = {}
    seen: set[str] = set()
    for task in pending:
        if task.id in seen:
            continue
        seen.add(task.id)
        ports = _host_ports(task.endpoint)
        bucket = index.setdefault((task.service_id, task.spec_version, ports), [])
        group = next((g for g in bucket if g.spec is task.spec or g.spec == task.spec), None)
        if group is None:
            try:
                group = _Group.of(task.service_id, task.spec)
            except ValueError as exc:
                group = _Group(task.service_id, task.spec, error=str(exc))
            group.ports = ports
            bucket.append(group)
            groups.append(group)
        group.tasks.append(task)
    return groups


# --- the filters ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Filter:
    reason: str  # short, as node_matches returns it
    singular: str  # follows "1 node"
    plural: str  # follows "N nodes"
    static: bool  # depends on the node and the spec only, not on what the node carries
    check: Callable[[_Group, _NodeState], bool]

    def explain(self, count: int) -> str:
        return f"1 node {self.singular}" if count == 1 else f"{count} nodes {self.plural}"


def _available(group: _Group, node: _NodeState) -> bool:
    return node.available


def _memory(group: _Group, node: _NodeState) -> bool:
    return not group.memory or node.memory is None or group.memory <= node.memory


def _cpu(group: _Group, node: _NodeState) -> bool:
    return not group.cpu or node.cpu is None or group.cpu <= node.cpu


def _platform(group: _Group, node: _NodeState) -> bool:
    if not group.platforms:
        return True
    if node.os is None and node.arch is None:
        return False
    return any(
        (not want_os or want_os == node.os) and (not want_arch or want_arch == node.arch)
        for want_os, want_arch in group.platforms
    )


def _satisfies(constraint: Constraint, node: _NodeState) -> bool:
    actual, expected = node.attribute(constraint.key), constraint.value
    if constraint.key == "node.platform.arch":
        expected = docker_arch(expected)
    equal = actual is not None and actual.casefold() == expected.casefold()
    return equal if constraint.op == "==" else not equal


def _constraints(group: _Group, node: _NodeState) -> bool:
    return all(_satisfies(c, node) for c in group.constraints)


def _ports_free(group: _Group, node: _NodeState) -> bool:
    return not group.ports or group.ports.isdisjoint(node.ports)


def _below_max_replicas(group: _Group, node: _NodeState) -> bool:
    return not group.max_replicas or node.by_service.get(group.service_id, 0) < group.max_replicas


def _below_task_limit(group: _Group, node: _NodeState) -> bool:
    return node.total < MAX_TASKS_PER_NODE


_PLATFORM = _Filter(
    "unsupported platform",
    "has an unsupported platform",
    "have an unsupported platform",
    True,
    _platform,
)
_CONSTRAINTS = _Filter(
    "scheduling constraints not satisfied",
    "does not satisfy the scheduling constraints",
    "do not satisfy the scheduling constraints",
    True,
    _constraints,
)
_PIPELINE = (
    _Filter(
        "not available for new tasks",
        "not available for new tasks",
        "not available for new tasks",
        True,
        _available,
    ),
    _Filter(
        "insufficient memory", "has insufficient memory", "have insufficient memory", False, _memory
    ),
    _Filter("insufficient CPU", "has insufficient CPU", "have insufficient CPU", False, _cpu),
    _PLATFORM,
    _CONSTRAINTS,
    _Filter(
        "host-mode port already in use",
        "has a host-mode port already in use",
        "have a host-mode port already in use",
        False,
        _ports_free,
    ),
    _Filter(
        "max replicas per node reached",
        "has reached max replicas per node",
        "have reached max replicas per node",
        False,
        _below_max_replicas,
    ),
    _Filter(
        f"the node runs the most tasks a node may ({MAX_TASKS_PER_NODE:,})",
        f"runs the most tasks a node may ({MAX_TASKS_PER_NODE:,})",
        f"run the most tasks a node may ({MAX_TASKS_PER_NODE:,})",
        False,
        _below_task_limit,
    ),
)
_STATIC = tuple(f for f in _PIPELINE if f.static)
_LOAD = tuple(f for f in _PIPELINE if not f.static)


def _fits(group: _Group, node: _NodeState) -> bool:
    return all(f.check(group, node) for f in _LOAD)


def _explain(group: _Group, nodes: Sequence[_NodeState]) -> str:
    """Count each node once, under the first filter that refuses it."""
    if not nodes:
        return f"{UNPLACED} (no nodes in the cluster)"
    refused = dict.fromkeys(_PIPELINE, 0)
    for node in nodes:
        first = next((f for f in _PIPELINE if not f.check(group, node)), None)
        if first is not None:
            refused[first] += 1
    parts = [f.explain(count) for f, count in refused.items() if count]
    return f"{UNPLACED} ({'; '.join(parts)})" if parts else UNPLACED


def node_matches(spec: TaskSpec, node: Node) -> str | None:
    """None when ``node`` meets the spec's platforms and constraints, else the reason it does not.

    Only what the node is counts here, not what it carries or whether it is up.
    """
    try:
        group = _Group.of("", spec)
    except ValueError as exc:
        return str(exc)
    state = _NodeState(node)
    return next((f.reason for f in (_PLATFORM, _CONSTRAINTS) if not f.check(group, state)), None)


# --- spread -----------------------------------------------------------------------------------


class _Spread:
    """The nodes sharing one value of each preference so far (the root: all of them).

    ``tasks`` counts the service's tasks on every node of the branch, eligible or not (as in
    Swarm), so the service evens out over the values. A leaf keeps a heap of its eligible nodes
    keyed (tasks of the service, tasks overall, id); a branch keeps a heap of its children keyed
    (their ``tasks``, their best node's key). Keys only grow (counts rise, nodes drop out when a
    filter refuses them), so a stored key is a lower bound and is refreshed when it reaches the
    top: the top of a heap is then the true minimum without a scan.
    """

    __slots__ = ("branches", "children", "nodes", "tasks")

    def __init__(self) -> None:
        self.tasks = 0
        self.branches: dict[str, _Spread] = {}
        self.children: list[tuple[Any, int, _Spread]] | None = None
        self.nodes: list[tuple[int, int, str, _NodeState]] = []

    @classmethod
    def build(
        cls, group: _Group, nodes: Sequence[_NodeState], only: Callable[[str], bool] | None = None
    ) -> _Spread:
        """All ``nodes`` count for spread; only those ``only`` admits (all: None) take tasks."""
        root = cls()
        for node in nodes:
            count = node.by_service.get(group.service_id, 0)
            branch = root
            for key in group.preferences:
                value = node.attribute(key) or ""
                branch = branch.branches.setdefault(value, cls())
                branch.tasks += count
            if (only is None or only(node.id)) and all(f.check(group, node) for f in _STATIC):
                branch.nodes.append((count, node.total, node.id, node))
        root.finish()
        return root

    def finish(self) -> None:
        if self.branches:
            ordered = sorted(self.branches.items())
            self.children = [((), i, child) for i, (_, child) in enumerate(ordered)]
            for _, child in ordered:
                child.finish()
        else:
            heapq.heapify(self.nodes)

    def best(self, group: _Group) -> tuple[Any, ...] | None:
        """The key of the node the next task would go to, or None when no node fits."""
        if self.children is None:
            nodes = self.nodes
            while nodes:
                if _fits(group, nodes[0][3]):
                    return nodes[0][:3]
                heapq.heappop(nodes)  # a refusal lasts: this call only adds load
            return None
        children = self.children
        while children:
            stored, seq, child = children[0]
            inner = child.best(group)
            if inner is None:
                heapq.heappop(children)
                continue
            key = (child.tasks, inner)
            if key == stored:
                return key
            heapq.heapreplace(children, (key, seq, child))
        return None

    def place(self, group: _Group) -> _NodeState:
        """Place one task on the node ``best`` just chose."""
        branch = self
        while branch.children is not None:
            branch = branch.children[0][2]
            branch.tasks += 1
        node = branch.nodes[0][3]
        node.occupy(group.service_id, group.cpu, group.memory, group.ports)
        count = node.by_service[group.service_id]
        heapq.heapreplace(branch.nodes, (count, node.total, node.id, node))
        return node


# --- the entry point --------------------------------------------------------------------------


def schedule(
    pending: Sequence[Task], nodes: Sequence[Node], tasks: Sequence[Task], now: float | None = None
) -> Decisions:
    """Choose a node for each pending task, or say why none fits.

    ``tasks`` is every task in the store; those assigned to a node, desired running and not
    ended occupy it (resources, host ports, spread counts). Tasks placed by this call occupy
    their node for the tasks placed after them. Given ``now``, those of the same service version
    that ended rejected or failed within :data:`AVOID_WINDOW` make their node a last resort
    (:data:`AVOID_AFTER`).
    """
    states: dict[str, _NodeState] = {}
    for node in nodes:
        states.setdefault(node.id, _NodeState(node))
    for task in tasks:
        state = states.get(task.node_id)
        if state is not None and _occupies(task):
            cpu, memory = _reservation(task.spec)
            state.occupy(task.service_id, cpu, memory, _host_ports(task.endpoint))
    candidates = list(states.values())
    history = recent_endings(tasks, now)
    decisions = Decisions({}, {})
    for group in _groups(pending):
        if group.error:
            decisions.unplaced.update(dict.fromkeys((t.id for t in group.tasks), group.error))
            continue
        recent = history.get((group.service_id, group.tasks[0].spec_version), {})
        _place(group, candidates, recent, decisions)
    return decisions


def _place(
    group: _Group,
    candidates: Sequence[_NodeState],
    recent: Mapping[str, Counter[TaskState]],
    decisions: Decisions,
) -> None:
    """Place the group's tasks: on nodes it need not avoid, else on the least-failing ones."""
    avoided = {
        n.id: (n.hostname or n.id, recent[n.id])
        for n in candidates
        if n.id in recent and is_avoided(recent[n.id])
    }
    tiers = [_Spread.build(group, candidates, lambda i: i not in avoided)]
    for total in sorted({counts.total() for _, counts in avoided.values()}):
        tier = {i for i, (_, counts) in avoided.items() if counts.total() == total}
        tiers.append(_Spread.build(group, candidates, tier.__contains__))
    for i, task in enumerate(group.tasks):
        spread = next((s for s in tiers if s.best(group) is not None), None)
        if spread is None:
            why = _explain(group, candidates)
            decisions.unplaced.update(dict.fromkeys((t.id for t in group.tasks[i:]), why))
            return
        node = spread.place(group)
        decisions.assigned[task.id] = node.id
        if node.id in avoided:
            name, counts = avoided[node.id]
            decisions.notes[task.id] = (
                f"no other node fits: {name} taken despite {counted(counts)} in the last {window()}"
            )
        elif avoided:
            decisions.notes[task.id] = avoidance(avoided)
