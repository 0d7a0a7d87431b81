"""The allocator's pure core: subnets, addresses, virtual IPs and published ports.

:func:`allocate` takes the previous :class:`Allocation` (None the first time) and the store's
networks, services and tasks, and returns the next one:

- every network gets a subnet and a gateway (its first host address): the network's own
  ``subnet`` when it names one, else the lowest free /24 of 10.0.0.0/8 from 10.0.1.0/24 on.
  The ``ingress`` network (id and name "ingress", 10.254.0.0/16 unless the store holds a
  network with that id and another subnet) always exists. No two subnets overlap.
- a service joins the networks its task template names (by id or by name), and ``ingress``
  when it publishes ports in ingress mode (only then: naming ``ingress`` is an error, as in
  Swarm). In endpoint mode vip it gets a virtual IP on each of them. Each of its tasks gets an
  address on the networks its own spec names (a task keeps the spec it was created with; an
  empty one means the service's), plus ``ingress``.
- published ports: ``published`` 0 becomes a free port in 30000-32767, in ingress and in host
  mode. A port published in ingress mode is open on every node, so no other service may
  publish the same (protocol, port), in either mode.

Allocations are stable: what the previous allocation gave an owner stays with it as long as
the owner exists. A task owns its addresses until it is removed or is done (desired state past
running and observed state terminal: no container is left to address). New addresses and
dynamic ports are handed out next-fit: a cursor, kept in the allocation, moves through the
range and wraps around, so a freed address or port is given again only once every never-used
one has been given, and freed ones come back in the order the cursor meets them.

Conflicts never raise. Each lands in :attr:`Allocation.errors` under the id of the service
(or network) at fault, with a message that says what to change, and everything else is
allocated anyway: one bad service does not hold up the others. What could not be given (a port
already taken, an address in a full subnet, a network that does not exist) is simply absent.

Nothing here waits, reads a clock or draws a random number: the same inputs, in any order, give
the same allocation.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from agent.manager.reconcile.allocation import DYNAMIC_PORTS, Allocation, Subnet
from agent.manager.reconcile.orchestrator import live, observed
from agent.manager.store.objects import Network, Service, Task
from agent.model.spec import NetworkAttachment, PortConfig, ServiceSpec

__all__ = [
    "DEFAULT_ADDR_POOL",
    "INGRESS_ID",
    "INGRESS_SUBNET",
    "INGRESS_VNI",
    "NetworkIndex",
    "allocate",
    "attachments",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

INGRESS_ID = "ingress"
INGRESS_SUBNET = "10.254.0.0/16"
INGRESS_VNI = 4096
_MAX_VNI = 2**24 - 1
DEFAULT_ADDR_POOL = ipaddress.IPv4Network("10.0.0.0/8")  # a network without a subnet gets a /24
_AUTO_POOL = DEFAULT_ADDR_POOL
_AUTO_FIRST = ipaddress.IPv4Network("10.0.1.0/24")


# --- networks by id or name ---------------------------------------------------------------------


class NetworkIndex:
    """The store's networks plus ``ingress``, found by id or by name."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.by_id = {n.id: n for n in networks}
        ingress = self.by_id.get(INGRESS_ID)
        if ingress is None:
            self.by_id[INGRESS_ID] = Network(id=INGRESS_ID, name=INGRESS_ID, subnet=INGRESS_SUBNET)
        elif not ingress.subnet:
            self.by_id[INGRESS_ID] = dataclasses.replace(ingress, subnet=INGRESS_SUBNET)
        self.by_name: dict[str, list[str]] = {}
        for ident in sorted(self.by_id):
            self.by_name.setdefault(self.by_id[ident].name, []).append(ident)

    def resolve(self, target: str) -> str:
        """The id of the network ``target`` names; LookupError says why there is none."""
        if target in self.by_id:
            return target
        found = self.by_name.get(target, [])
        if len(found) == 1:
            return found[0]
        if found:
            ids = ", ".join(found)
            raise LookupError(f'network name "{target}" is ambiguous ({ids}): name it by id')
        raise LookupError(f'network "{target}" not found: create it first or fix the name')

    def name(self, ident: str) -> str:
        net = self.by_id.get(ident)
        return net.name if net is not None and net.name else ident


def attachments(
    refs: Iterable[NetworkAttachment], index: NetworkIndex, errors: list[str] | None = None
) -> dict[str, tuple[str, ...]]:
    """Network id -> aliases for the networks ``refs`` name; those not found go to ``errors``."""
    out: dict[str, tuple[str, ...]] = {}
    for ref in refs:
        try:
            ident = index.resolve(ref.target)
        except LookupError as exc:
            if errors is not None:
                errors.append(str(exc))
            continue
        out[ident] = tuple(dict.fromkeys((*out.get(ident, ()), *ref.aliases)))
    return out


# --- subnets ------------------------------------------------------------------------------------


def _subnets(
    previous: Allocation, index: NetworkIndex, reasons: dict[str, str]
) -> dict[str, tuple[IPNetwork, int]]:
    """Network id -> (subnet, cursor); ``reasons`` gets why the others have none.

    Networks keep what they had, then claim what they name, then the rest take the lowest free
    /24; each group in order of creation."""
    out: dict[str, tuple[IPNetwork, int]] = {}
    owners: list[tuple[IPNetwork, str]] = []
    named: list[tuple[Network, IPNetwork]] = []
    auto: list[Network] = []
    order = sorted(index.by_id.values(), key=lambda n: (n.id != INGRESS_ID, n.created, n.id))
    for net in order:
        wanted = None
        if net.subnet:
            try:
                wanted = _parse_subnet(net.subnet)
            except ValueError as exc:
                reasons[net.id] = str(exc)
                continue
        kept = _previous_subnet(previous, net.id)
        if kept is not None and (wanted is None or wanted == kept[0]):
            if _overlap(kept[0], owners) is None:
                out[net.id] = kept
                owners.append((kept[0], net.name))
                continue
        if wanted is not None:
            named.append((net, wanted))
        else:
            auto.append(net)
    for net, wanted in named:
        other = _overlap(wanted, owners)
        if other is not None:
            reasons[net.id] = f"subnet {wanted} overlaps {other}: choose another subnet"
            continue
        out[net.id] = (wanted, 2)
        owners.append((wanted, net.name))
    for net in auto:
        free = _lowest_free(owners)
        if free is None:
            reasons[net.id] = f"no free /24 left in {_AUTO_POOL}: give it a subnet"
            continue
        out[net.id] = (free, 2)
        owners.append((free, net.name))
    return out


def _parse_subnet(text: str) -> IPNetwork:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f'"{text}" is not a subnet (expected e.g. 10.0.9.0/24)') from None
    if net.num_addresses < 4:
        raise ValueError(f"subnet {net} is too small: it needs room for a gateway and tasks")
    return net


def _previous_subnet(previous: Allocation, ident: str) -> tuple[IPNetwork, int] | None:
    held = previous.networks.get(ident)
    if held is None:
        return None
    try:
        return ipaddress.ip_network(held.subnet), held.cursor
    except ValueError:
        return None


def _overlap(net: IPNetwork, owners: list[tuple[IPNetwork, str]]) -> str | None:
    for other, name in owners:
        if net.version == other.version and net.overlaps(other):
            return f'network "{name}" ({other})'
    return None


def _lowest_free(owners: list[tuple[IPNetwork, str]]) -> IPNetwork | None:
    size = _AUTO_FIRST.num_addresses
    spans = [
        (int(n.network_address), int(n.broadcast_address)) for n, _ in owners if n.version == 4
    ]
    start, end = int(_AUTO_FIRST.network_address), int(_AUTO_POOL.broadcast_address)
    while start + size - 1 <= end:
        clash = [high for low, high in spans if low < start + size and start <= high]
        if not clash:
            return ipaddress.ip_network((start, _AUTO_FIRST.prefixlen))
        start = (max(clash) // size + 1) * size
    return None


# --- published ports ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Service:
    service: Service
    spec: ServiceSpec
    networks: dict[str, tuple[str, ...]]  # network id -> aliases
    ports: list[PortConfig | None] = field(default_factory=list)  # resolved, in spec order

    @property
    def order(self) -> tuple[str, str]:
        return (self.service.created, self.service.id)


def _next_fit(low: int, high: int, cursor: int, free: Callable[[int], bool]) -> int | None:
    if not low <= cursor <= high:
        cursor = low
    for value in itertools.chain(range(cursor, high + 1), range(low, cursor)):
        if free(value):
            return value
    return None


def _ports(
    previous: Allocation, services: list[_Service], cursor: int, errors: dict[str, list[str]]
) -> int:
    """Resolve every service's published ports into ``_Service.ports``; returns the cursor.

    Ports a service held keep going to it; then fixed ports are claimed, then ``published`` 0
    gets a dynamic port; each step in the order the services were created."""
    taken: dict[tuple[str, int], list[tuple[str, str]]] = {}  # -> [(service id, mode)]
    names = {s.service.id: s.spec.name for s in services}
    wanted: dict[str, list[tuple[int, PortConfig]]] = {}
    for svc in services:
        svc.ports = [None] * len(svc.spec.endpoint_spec.ports)
        wanted[svc.service.id] = []
        for i, port in enumerate(svc.spec.endpoint_spec.ports):
            if port.publish_mode == "ingress" and svc.spec.endpoint_spec.mode == "dnsrr":
                errors.setdefault(svc.service.id, []).append(
                    f"port {port.target}/{port.protocol}: ports published in ingress mode need "
                    "endpoint mode vip; publish it in host mode or use vip"
                )
            else:
                wanted[svc.service.id].append((i, port))

    def conflict(svc: _Service, port: PortConfig) -> str | None:
        for owner, mode in taken.get((port.protocol, port.published), ()):
            if owner == svc.service.id:
                return f"published port {port.published}/{port.protocol} is listed twice"
            if "ingress" in (mode, port.publish_mode):
                return (
                    f"published port {port.published}/{port.protocol} is already used by service "
                    f'"{names[owner]}" ({mode} mode); ingress mode publishes a port on every '
                    "node: choose another port"
                )
        return None

    def claim(svc: _Service, i: int, port: PortConfig) -> None:
        taken.setdefault((port.protocol, port.published), []).append(
            (svc.service.id, port.publish_mode)
        )
        svc.ports[i] = port

    for svc in services:  # what each service held keeps going to it
        held = list(previous.ports.get(svc.service.id, ()))
        for i, port in wanted[svc.service.id]:
            match = next((p for p in held if _same_port(port, p)), None)
            if match is not None:
                held.remove(match)
                if conflict(svc, match) is None:
                    claim(svc, i, match)
    for svc in services:  # then new fixed ports
        for i, port in wanted[svc.service.id]:
            if svc.ports[i] is None and port.published:
                problem = conflict(svc, port)
                if problem is None:
                    claim(svc, i, port)
                else:
                    errors.setdefault(svc.service.id, []).append(problem)
    for svc in services:  # then dynamic ones
        for i, port in wanted[svc.service.id]:
            if svc.ports[i] is None and not port.published:
                pick = _next_fit(*DYNAMIC_PORTS, cursor, _free_port(taken, port.protocol))
                if pick is None:
                    low, high = DYNAMIC_PORTS
                    errors.setdefault(svc.service.id, []).append(
                        f"no free port left in {low}-{high} to publish target port "
                        f"{port.target}/{port.protocol}: publish a fixed port"
                    )
                    continue
                claim(svc, i, dataclasses.replace(port, published=pick))
                cursor = pick + 1
    return cursor


def _free_port(taken: Mapping[tuple[str, int], object], protocol: str) -> Callable[[int], bool]:
    return lambda port: (protocol, port) not in taken


def _same_port(wanted: PortConfig, held: PortConfig) -> bool:
    """Whether ``held`` (resolved before) still answers ``wanted`` (from the spec)."""
    if (wanted.target, wanted.protocol, wanted.publish_mode, wanted.name) != (
        held.target,
        held.protocol,
        held.publish_mode,
        held.name,
    ):
        return False
    if wanted.published:
        return held.published == wanted.published
    return DYNAMIC_PORTS[0] <= held.published <= DYNAMIC_PORTS[1]


# --- addresses ----------------------------------------------------------------------------------


class _Pool:
    """The host addresses of one subnet (gateway excluded), handed out next-fit."""

    def __init__(self, net: IPNetwork, cursor: int) -> None:
        self.net = net
        self.base = int(net.network_address)
        self.first, self.last = 2, net.num_addresses - 2  # .0 the network, .1 the gateway
        self.cursor = cursor
        self.used: set[int] = set()
        self.full = False

    def keep(self, address: str) -> bool:
        try:
            offset = int(ipaddress.ip_address(address)) - self.base
        except ValueError:
            return False
        if not self.first <= offset <= self.last or offset in self.used:
            return False
        self.used.add(offset)
        return True

    def take(self) -> str | None:
        offset = None
        if not self.full:
            offset = _next_fit(self.first, self.last, self.cursor, lambda o: o not in self.used)
        if offset is None:
            self.full = True
            return None
        self.used.add(offset)
        self.cursor = offset + 1
        return str(ipaddress.ip_address(self.base + offset))


def _holds_addresses(task: Task) -> bool:
    return live(task) or not observed(task).is_terminal


def _task_networks(task: Task, svc: _Service, index: NetworkIndex) -> list[str]:
    nets = [n for n in attachments(task.spec.networks, index) if n != INGRESS_ID]
    if INGRESS_ID in svc.networks:
        nets.append(INGRESS_ID)
    return sorted(set(nets))


# --- the whole ----------------------------------------------------------------------------------


def allocate(
    previous: Allocation | None,
    networks: Iterable[Network],
    services: Iterable[Service],
    tasks: Iterable[Task],
    nodes: Iterable[str] = (),
) -> Allocation:
    """The next allocation; see the module's docstring for the rules. ``nodes`` are the ids of
    the nodes that get an address on ``ingress`` (the source of their routing mesh's
    connections) while some service publishes a port in ingress mode."""
    previous = previous or Allocation()
    errors: dict[str, list[str]] = {}
    index = NetworkIndex(networks)
    reasons: dict[str, str] = {}  # network id -> why it has no subnet
    subnets = _subnets(previous, index, reasons)
    for ident, reason in reasons.items():
        errors[ident] = [f'network "{index.name(ident)}": {reason}']
    parsed = _parse_services(services, index, subnets, reasons, errors)
    port_cursor = _ports(previous, parsed, previous.port_cursor, errors)
    for svc in parsed:
        if INGRESS_ID in subnets and any(p and p.publish_mode == "ingress" for p in svc.ports):
            svc.networks.setdefault(INGRESS_ID, ())
    pools = {ident: _Pool(net, cursor) for ident, (net, cursor) in subnets.items()}
    vips, addresses, node_addresses = _addresses(
        previous, parsed, tasks, nodes, index, pools, errors
    )
    vnis = _vnis(previous, subnets)
    return Allocation(
        networks={
            ident: Subnet(str(net), str(net.network_address + 1), pools[ident].cursor, vnis[ident])
            for ident, (net, _) in sorted(subnets.items())
        },
        vips=_sorted(vips),
        addresses=_sorted(addresses),
        nodes=_sorted(node_addresses),
        ports={
            svc.service.id: tuple(p for p in svc.ports if p is not None)
            for svc in sorted(parsed, key=lambda s: s.service.id)
            if any(svc.ports)
        },
        port_cursor=port_cursor,
        errors={k: tuple(v) for k, v in sorted(errors.items()) if v},
    )


def _parse_services(
    services: Iterable[Service],
    index: NetworkIndex,
    subnets: Mapping[str, object],
    reasons: Mapping[str, str],
    errors: dict[str, list[str]],
) -> list[_Service]:
    """The services, oldest first, with the networks they join that have a subnet; what is
    wrong with each lands in ``errors``."""
    parsed: list[_Service] = []
    for service in sorted(services, key=lambda s: (s.created, s.id)):
        spec = service.spec
        problems: list[str] = []
        nets = attachments(spec.task_template.networks, index, problems)
        if nets.pop(INGRESS_ID, None) is not None:
            problems.append(
                'network "ingress" is the routing mesh: a service joins it by publishing a port '
                "in ingress mode, not by naming it"
            )
        for ident in list(nets):
            if ident not in subnets:
                why = reasons.get(ident, "it has none")
                problems.append(f'network "{index.name(ident)}" has no subnet: {why}')
                del nets[ident]
        if problems:
            errors.setdefault(service.id, []).extend(problems)
        parsed.append(_Service(service, spec, nets))
    return parsed


_Table = dict[str, dict[str, str]]


def _addresses(
    previous: Allocation,
    parsed: list[_Service],
    tasks: Iterable[Task],
    nodes: Iterable[str],
    index: NetworkIndex,
    pools: Mapping[str, _Pool],
    errors: dict[str, list[str]],
) -> tuple[_Table, _Table, _Table]:
    """The VIPs, task addresses and node addresses, taken from ``pools``."""
    # Owners of addresses: VIPs first, then nodes, then tasks; each kept if it had one, then
    # new ones. An owner is (where it goes, where it was, owner id, network, service to blame).
    by_id = {svc.service.id: svc for svc in parsed}
    owners: list[tuple[_Table, _Table, str, str, _Service]] = []
    vips: _Table = {}
    addresses: _Table = {}
    node_addresses: _Table = {}
    for svc in sorted(parsed, key=lambda s: s.service.id):
        if svc.spec.endpoint_spec.mode == "vip":
            owners += [(vips, previous.vips, svc.service.id, n, svc) for n in sorted(svc.networks)]
    mesh = next((svc for svc in parsed if INGRESS_ID in svc.networks), None)
    if mesh is not None:
        for node in sorted(set(nodes)):
            owners.append((node_addresses, previous.nodes, node, INGRESS_ID, mesh))
    for task in sorted(tasks, key=lambda t: t.id):
        owner = by_id.get(task.service_id)
        if owner is not None and _holds_addresses(task):
            joined = [n for n in _task_networks(task, owner, index) if n in pools]
            owners += [(addresses, previous.addresses, task.id, n, owner) for n in joined]
    fresh = []
    for table, before, ident, net, svc in owners:
        held = before.get(ident, {}).get(net)
        if held is not None and pools[net].keep(held):
            table.setdefault(ident, {})[net] = held
        else:
            fresh.append((table, ident, net, svc))
    for table, ident, net, svc in fresh:
        address = pools[net].take()
        if address is not None:
            table.setdefault(ident, {})[net] = address
            continue
        message = (
            f'network "{index.name(net)}" ({pools[net].net}) has no free address left: '
            "use a larger subnet or fewer tasks"
        )
        if message not in errors.setdefault(svc.service.id, []):
            errors[svc.service.id].append(message)
    return vips, addresses, node_addresses


def _vnis(previous: Allocation, subnets: Mapping[str, object]) -> dict[str, int]:
    """Network id -> VXLAN id: ingress 4096; the others keep theirs, new ones the lowest free."""
    out: dict[str, int] = {}
    used = {INGRESS_VNI}
    for ident in sorted(subnets):
        held = previous.networks.get(ident)
        if ident == INGRESS_ID:
            out[ident] = INGRESS_VNI
        elif held is not None and INGRESS_VNI < held.vni <= _MAX_VNI and held.vni not in used:
            out[ident] = held.vni
            used.add(held.vni)
    candidate = INGRESS_VNI + 1
    for ident in sorted(subnets):
        if ident not in out:
            while candidate in used:
                candidate += 1
            out[ident] = candidate
            used.add(candidate)
    return out


def _sorted(table: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    return {k: dict(sorted(v.items())) for k, v in sorted(table.items())}
