"""Per-node routing tables: the part of the cluster's networking that one node applies.

:func:`table_for` turns the :class:`~agent.manager.reconcile.allocation.Allocation` and the store's
objects into one node's table, a JSON-friendly dict that the leader publishes to that node:

.. code-block:: python

    {
        "node": "n1",
        "version": "5c0f7e2a9b41d3e8",   # digest of the rest: unchanged digest, unchanged table
        "networks": {                     # the networks this node's live tasks are on, but ingress
            "net-backend": {
                "name": "shop_backend",
                "subnet": "10.0.1.0/24",
                "gateway": "10.0.1.1",
                "local": {"t1": "10.0.1.3"},  # task id -> address, for tasks on this node
                "remote": [                   # every other live task on the network
                    {"task": "t2", "address": "10.0.1.4", "node": "n2",
                     "via": ["192.0.2.7"], "reachable": True},
                    {"task": "t3", "address": "10.0.1.5", "node": "n3",
                     "via": ["edge-3"], "reachable": False},   # n3 is behind NAT
                ],
                "vips": [{"service": "api", "vip": "10.0.1.2",
                          "backends": ["10.0.1.3", "10.0.1.4"]}],
                "dns": {"api": ["10.0.1.2"], "backend-api": ["10.0.1.2"],   # name, alias -> VIP
                        "tasks.api": ["10.0.1.3", "10.0.1.4"]},
            },
        },
        "ingress": {                      # the routing mesh; "ports" is empty unless ready
            "subnet": "10.254.0.0/16",
            "gateway": "10.254.0.1",
            "local": {"t1": "10.254.0.3"},  # this node's tasks' ingress addresses
            "ports": [
                {"protocol": "tcp", "published": 8080, "target": 80, "service": "api",
                 "vip": "10.254.0.2", "proxy_protocol": False,
                 "backends": [{"task": "t2", "address": "10.254.0.4", "node": "n2",
                               "via": ["192.0.2.7"], "reachable": True}]},
            ],
        },
        "host_ports": [                   # ports published in host mode by this node's tasks
            {"task": "t1", "service": "api", "protocol": "tcp", "published": 9000,
             "target": 9000, "proxy_protocol": False},
        ],
    }

Rules:

- Only tasks that should receive traffic are backends (VIP backends, dnsrr answers,
  ``tasks.<service>``, ingress backends): desired and observed state running, health neither
  "starting" nor "unhealthy", on a ready node. Routes (``local``, ``remote``) list every live
  task with an address, whatever its health.
- A node whose description says ``"nat": true`` cannot be reached by others: its tasks appear
  in ``remote`` with ``"reachable": false`` and are never backends on another node, so traffic
  goes only where it can arrive. ``via`` is where a node can be reached: its description's
  ``addresses`` (or ``advertise``), else its hostname; empty for this node's own tasks.
- Every ready node publishes every ingress port, whether or not it runs a task of the service,
  and forwards connections over the ingress network to the port's backends, wherever they run.
- DNS (per network; ingress has none): a service's name and its aliases on that network resolve
  to its VIP in endpoint mode vip, to its backends' addresses in dnsrr; ``tasks.<name>`` to
  its backends' addresses either way.
- A service labelled ``shoal.proxy-protocol=true`` has the PROXY protocol header (the client's
  source address) sent on all its published ports; a comma-separated list of target ports
  (``"80,443/tcp"``) limits it to those.

Everything is sorted, so two managers given the same store compute byte-identical tables.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
from collections.abc import Iterable, Mapping
from typing import Any

from agent.manager.reconcile.allocation import Allocation
from agent.manager.reconcile.allocator import INGRESS_ID, NetworkIndex, attachments
from agent.manager.reconcile.orchestrator import live, observed
from agent.manager.store.objects import Network, Node, NodeStatus, Service, Task
from agent.model import TaskState
from agent.model.spec import PortConfig, ServiceSpec

__all__ = ["PROXY_PROTOCOL_LABEL", "receives_traffic", "table_for", "tables_for"]

PROXY_PROTOCOL_LABEL = "shoal.proxy-protocol"
_NOT_SERVING = ("starting", "unhealthy")


def receives_traffic(task: Task, nodes: Mapping[str, Node]) -> bool:
    """Running as desired, not known to be unhealthy or still starting, on a ready node."""
    if not live(task) or observed(task) is not TaskState.RUNNING:
        return False
    if task.status is not None and task.status.health in _NOT_SERVING:
        return False
    node = nodes.get(task.node_id)
    return node is not None and node.status == NodeStatus.READY


def _reachable(node: Node | None) -> bool:
    return node is not None and node.description.get("nat") is not True


def _via(node: Node | None) -> list[str]:
    if node is None:
        return []
    for key in ("addresses", "advertise"):
        found = node.description.get(key)
        if isinstance(found, str) and found:
            return [found]
        if isinstance(found, list | tuple) and found:
            return [str(a) for a in found]
    hostname = node.hostname or node.description.get("hostname")
    return [hostname] if isinstance(hostname, str) and hostname else []


def _address_key(address: str) -> tuple[int, int, str]:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return (99, 0, address)
    return (ip.version, int(ip), address)


def _proxy_protocol(spec: ServiceSpec, port: PortConfig) -> bool:
    value = spec.labels.get(PROXY_PROTOCOL_LABEL, "").strip().lower()
    if value in ("true", "yes", "1", "all"):
        return True
    wanted = {item.strip() for item in value.split(",")}
    return str(port.target) in wanted or f"{port.target}/{port.protocol}" in wanted


class _Cluster:
    """The inputs of the tables, indexed once for every node."""

    def __init__(
        self,
        allocation: Allocation,
        networks: Iterable[Network],
        services: Iterable[Service],
        tasks: Iterable[Task],
        nodes: Iterable[Node],
    ) -> None:
        self.allocation = allocation
        self.index = NetworkIndex(networks)
        self.nodes = {n.id: n for n in nodes}
        self.specs: dict[str, ServiceSpec] = {}
        for service in sorted(services, key=lambda s: s.id):
            self.specs[service.id] = service.spec
        self.tasks = sorted(
            (t for t in tasks if live(t) and t.service_id in self.specs), key=lambda t: t.id
        )
        self.by_service: dict[str, list[Task]] = {}
        self.by_node: dict[str, list[Task]] = {}
        for task in self.tasks:
            self.by_service.setdefault(task.service_id, []).append(task)
            self.by_node.setdefault(task.node_id, []).append(task)
        self.aliases = {
            ident: attachments(spec.task_template.networks, self.index)
            for ident, spec in self.specs.items()
        }
        self._serving: dict[tuple[str, str], list[tuple[Task, str]]] = {}
        self._on_network: dict[str, list[tuple[Task, str]]] | None = None

    def peer(self, node_id: str, task_node: str, address: str, task: str = "") -> dict[str, Any]:
        local = task_node == node_id
        node = self.nodes.get(task_node)
        found = {
            "task": task,
            "address": address,
            "node": task_node,
            "via": [] if local else _via(node),
            "reachable": local or _reachable(node),
        }
        if not task:
            del found["task"]
        return found

    def serving(self, service_id: str, network: str) -> list[tuple[Task, str]]:
        """Tasks of the service that receive traffic, with their addresses on ``network``."""
        key = (service_id, network)
        if key not in self._serving:
            found = []
            for task in self.by_service.get(service_id, ()):
                address = self.allocation.addresses.get(task.id, {}).get(network)
                if address is not None and receives_traffic(task, self.nodes):
                    found.append((task, address))
            self._serving[key] = sorted(found, key=lambda item: _address_key(item[1]))
        return self._serving[key]

    def backends(self, node_id: str, service_id: str, network: str) -> list[tuple[Task, str]]:
        """Tasks of the service that take traffic from ``node_id``, with their addresses."""
        return [
            (task, address)
            for task, address in self.serving(service_id, network)
            if task.node_id == node_id or _reachable(self.nodes.get(task.node_id))
        ]

    def endpoints(self, node_id: str, ident: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """The network's task addresses on ``node_id`` (task id -> address), and the others
        as peers, sorted by address."""
        if self._on_network is None:
            self._on_network = {}
            for task in self.tasks:
                if task.node_id:
                    for net, address in self.allocation.addresses.get(task.id, {}).items():
                        self._on_network.setdefault(net, []).append((task, address))
        local: dict[str, str] = {}
        remote = []
        for task, address in self._on_network.get(ident, ()):
            if task.node_id == node_id:
                local[task.id] = address
            else:
                remote.append(self.peer(node_id, task.node_id, address, task.id))
        remote.sort(key=lambda p: (_address_key(p["address"]), p["task"]))
        return dict(sorted(local.items())), remote

    def interfaces(self, task: Task) -> list[dict[str, str]]:
        """The task's addresses, in the order its spec names its networks, ingress last."""
        held = self.allocation.addresses.get(task.id, {})
        order = []
        for ref in task.spec.networks:
            with contextlib.suppress(LookupError):
                order.append(self.index.resolve(ref.target))
        ranked = {ident: i for i, ident in enumerate(order)}
        idents = sorted(
            (i for i in held if i in self.allocation.networks),
            key=lambda i: (i == INGRESS_ID, ranked.get(i, len(ranked)), i),
        )
        return [{"network": ident, "address": held[ident]} for ident in idents]

    def network(self, node_id: str, ident: str) -> dict[str, Any]:
        subnet = self.allocation.networks[ident]
        local, remote = self.endpoints(node_id, ident)
        vips = []
        dns: dict[str, set[str]] = {}
        for service_id, spec in self.specs.items():
            answers = [a for _, a in self.backends(node_id, service_id, ident)]
            vip = self.allocation.vips.get(service_id, {}).get(ident)
            if vip is not None:
                vips.append({"service": spec.name, "vip": vip, "backends": answers})
            aliases = self.aliases[service_id].get(ident)
            if aliases is None:
                continue
            named = ([vip] if vip else []) if spec.endpoint_spec.mode == "vip" else answers
            for name in (spec.name, *aliases):
                dns.setdefault(name, set()).update(named)
            dns.setdefault(f"tasks.{spec.name}", set()).update(answers)
        return {
            "name": self.index.name(ident),
            "subnet": subnet.subnet,
            "gateway": subnet.gateway,
            "vni": subnet.vni,
            "local": dict(sorted(local.items())),
            "remote": remote,
            "vips": sorted(vips, key=lambda v: (_address_key(v["vip"]), v["service"])),
            "dns": {name: sorted(dns[name], key=_address_key) for name in sorted(dns)},
        }

    def ingress(self, node_id: str) -> dict[str, Any]:
        subnet = self.allocation.networks.get(INGRESS_ID)
        here = self.nodes.get(node_id)
        ports = []
        if here is not None and here.status == NodeStatus.READY:
            for service_id, published in self.allocation.ports.items():
                spec = self.specs.get(service_id)
                if spec is None:
                    continue
                backends = [
                    self.peer(node_id, t.node_id, a, t.id)
                    for t, a in self.backends(node_id, service_id, INGRESS_ID)
                ]
                for port in published:
                    if port.publish_mode != "ingress":
                        continue
                    ports.append(
                        {
                            "protocol": port.protocol,
                            "published": port.published,
                            "target": port.target,
                            "service": spec.name,
                            "vip": self.allocation.vips.get(service_id, {}).get(INGRESS_ID),
                            "proxy_protocol": _proxy_protocol(spec, port),
                            "backends": list(backends),
                        }
                    )
        ports.sort(key=lambda p: (p["protocol"], p["published"], p["service"]))
        local, remote = self.endpoints(node_id, INGRESS_ID)
        for other, held in self.allocation.nodes.items():
            address = held.get(INGRESS_ID)
            if address is not None and other != node_id and other in self.nodes:
                remote.append(self.peer(node_id, other, address))
        remote.sort(key=lambda p: (_address_key(p["address"]), p.get("task", "")))
        return {
            "subnet": subnet.subnet if subnet else None,
            "gateway": subnet.gateway if subnet else None,
            "vni": subnet.vni if subnet else None,
            "node_address": self.allocation.nodes.get(node_id, {}).get(INGRESS_ID),
            "local": dict(sorted(local.items())),
            "remote": remote,
            "ports": ports,
        }

    def host_ports(self, node_id: str) -> list[dict[str, Any]]:
        found = []
        for task in self.by_node.get(node_id, ()):
            spec = self.specs[task.service_id]
            for port in self.allocation.ports.get(task.service_id, ()):
                if port.publish_mode == "host":
                    interfaces = self.interfaces(task)
                    found.append(
                        {
                            "task": task.id,
                            "service": spec.name,
                            "protocol": port.protocol,
                            "published": port.published,
                            "target": port.target,
                            "address": interfaces[0]["address"] if interfaces else None,
                            "proxy_protocol": _proxy_protocol(spec, port),
                        }
                    )
        return sorted(found, key=lambda p: (p["protocol"], p["published"], p["task"]))

    def table(self, node_id: str) -> dict[str, Any]:
        mine = self.by_node.get(node_id, []) if node_id else []
        nets = {
            ident
            for task in mine
            for ident in self.allocation.addresses.get(task.id, {})
            if ident in self.allocation.networks and ident != INGRESS_ID
        }
        body: dict[str, Any] = {
            "node": node_id,
            "networks": {ident: self.network(node_id, ident) for ident in sorted(nets)},
            "ingress": self.ingress(node_id),
            "host_ports": self.host_ports(node_id),
            "tasks": {
                t.id: self.interfaces(t) for t in mine if self.allocation.addresses.get(t.id)
            },
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return {"version": hashlib.sha256(canonical.encode()).hexdigest()[:16], **body}


def table_for(
    node_id: str,
    allocation: Allocation,
    networks: Iterable[Network],
    services: Iterable[Service],
    tasks: Iterable[Task],
    nodes: Iterable[Node],
) -> dict[str, Any]:
    """The routing table of ``node_id``, in the format the module's docstring shows."""
    return _Cluster(allocation, networks, services, tasks, nodes).table(node_id)


def tables_for(
    node_ids: Iterable[str],
    allocation: Allocation,
    networks: Iterable[Network],
    services: Iterable[Service],
    tasks: Iterable[Task],
    nodes: Iterable[Node],
) -> dict[str, dict[str, Any]]:
    """:func:`table_for` of several nodes at once, indexing the inputs once."""
    cluster = _Cluster(allocation, networks, services, tasks, nodes)
    return {node_id: cluster.table(node_id) for node_id in node_ids}
