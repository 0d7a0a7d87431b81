"""`shoal inspect` and every `<kind> inspect`: find the object, gather what its shape needs
(store version, the allocator's record, who leads) and return its Docker-shaped JSON
(:mod:`agent.manager.control.shapes`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agent.manager.control.networks import find_network, users_of
from agent.manager.control.secrets import find as find_data
from agent.manager.control.secrets import users_of as data_users
from agent.manager.control.services import find_node, find_service
from agent.manager.control.shapes import (
    ManagerInfo,
    ServiceCounts,
    config_shape,
    network_shape,
    node_shape,
    secret_shape,
    service_shape,
    task_shape,
)
from agent.manager.control.views import service_row
from agent.manager.reconcile.allocator import INGRESS_ID, INGRESS_SUBNET
from agent.manager.reconcile.allocator_loop import stored_allocation
from agent.manager.reconcile.orchestrator import runs_global_task
from agent.manager.store import (
    Config,
    Network,
    Node,
    NodeRole,
    NodeStatus,
    Secret,
    Service,
    Store,
    StoreObject,
    Task,
    View,
)
from agent.model.errors import ShoalError
from agent.model.registry import bind

__all__ = ["KINDS", "InspectAPI", "Leadership"]

# Who leads and who votes, as this manager's Raft sees it.
Leadership = Callable[[], tuple[str | None, tuple[str, ...]]]

# `shoal inspect --type` values, in the order a reference is looked for.
KINDS = ("node", "service", "task", "network", "secret", "config")


def _no_leader() -> tuple[str | None, tuple[str, ...]]:
    return None, ()


def _ref(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise ShoalError(f"{key} is required")
    return value


class InspectAPI:
    def __init__(self, store: Store, *, leadership: Leadership = _no_leader) -> None:
        self.store = store
        self.leadership = leadership
        self.commands: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = bind(self, "inspect")

    # commands ----------------------------------------------------------------------------
    async def service(self, args: dict[str, Any]) -> dict[str, Any]:
        view = self.store.view()
        return self._service(view, find_service(view, _ref(args, "service")))

    async def node(self, args: dict[str, Any]) -> dict[str, Any]:
        view = self.store.view()
        return self._node(view, find_node(view, _ref(args, "node")))

    async def network(self, args: dict[str, Any]) -> dict[str, Any]:
        view = self.store.view()
        ref = _ref(args, "ref")
        if ref == INGRESS_ID and view.get(Network, INGRESS_ID) is None:
            return self._network(view, _default_ingress())
        return self._network(view, find_network(view, ref))

    async def secret(self, args: dict[str, Any]) -> dict[str, Any]:
        view = self.store.view()
        return self._shape(view, find_data(view, Secret, _ref(args, "ref")))

    async def config(self, args: dict[str, Any]) -> dict[str, Any]:
        view = self.store.view()
        return self._shape(view, find_data(view, Config, _ref(args, "ref")))

    async def lookup(self, args: dict[str, Any]) -> dict[str, Any]:
        """Docker's `inspect`: the object of any kind (or of ``type``) that ``ref`` names: an
        exact id first, then a name, then a unique id prefix."""
        view = self.store.view()
        ref = _ref(args, "ref")
        kind = args.get("type") or ""
        if kind and kind not in KINDS:
            raise ShoalError(f"invalid type {kind!r}: use {', '.join(KINDS)}")
        found = _lookup(view, ref, (kind,) if kind else KINDS)
        if found is None:
            raise ShoalError(f"No such object: {ref}")
        return self._shape(view, found)

    # shapes ------------------------------------------------------------------------------
    def _shape(self, view: View, obj: StoreObject) -> dict[str, Any]:
        if isinstance(obj, Service):
            return self._service(view, obj)
        if isinstance(obj, Node):
            return self._node(view, obj)
        if isinstance(obj, Task):
            return task_shape(obj, version=view.version("task", obj.id))
        if isinstance(obj, Network):
            return self._network(view, obj)
        if isinstance(obj, Secret):
            users = data_users(view, Secret, obj)
            return secret_shape(obj, version=view.version("secret", obj.id), services=users)
        if isinstance(obj, Config):
            users = data_users(view, Config, obj)
            return config_shape(obj, version=view.version("config", obj.id), services=users)
        raise ShoalError(f"{type(obj).KIND} objects cannot be inspected")

    def _service(self, view: View, s: Service) -> dict[str, Any]:
        allocation = stored_allocation(view)
        nodes = {n.id: n for n in view.list(Node)}
        tasks = [t for t in view.list(Task) if t.service_id == s.id]
        published = allocation.ports.get(s.id, ())
        row = service_row(s, tasks, nodes, published)
        vips = []
        for ident, vip in allocation.vips.get(s.id, {}).items():
            subnet = allocation.networks.get(ident)
            prefix = subnet.subnet.partition("/")[2] if subnet else ""
            vips.append((ident, f"{vip}/{prefix}" if prefix else vip))
        out = service_shape(
            s,
            version=view.version("service", s.id),
            ports=published,
            vips=vips,
            counts=ServiceCounts(row["running"], row["desired"], row["completed"]),
            endpoint_errors=allocation.errors.get(s.id, ()),
        )
        if s.spec.mode.kind == "global":
            # the nodes the orchestrator gives a task: `service create` waits for each
            eligible = sorted(n.id for n in nodes.values() if runs_global_task(s.spec, n))
            out["Shoal"]["EligibleNodes"] = eligible
        return out

    def _node(self, view: View, n: Node) -> dict[str, Any]:
        manager = None
        if n.role == NodeRole.MANAGER:
            leader, voters = self.leadership()
            if n.id == leader:
                manager = ManagerInfo(leader=True, reachability="reachable")
            elif n.id in voters and n.status == NodeStatus.READY:
                manager = ManagerInfo(leader=False, reachability="reachable")
            else:
                manager = ManagerInfo(leader=False, reachability="unreachable")
        return node_shape(n, version=view.version("node", n.id), manager=manager)

    def _network(self, view: View, n: Network) -> dict[str, Any]:
        allocation = stored_allocation(view)
        held = allocation.networks.get(n.id)
        ingress = n.id == INGRESS_ID
        if ingress:
            users = sorted(
                s.name
                for s in view.list(Service)
                if any(p.publish_mode == "ingress" for p in s.spec.endpoint_spec.ports)
            )
        else:
            users = users_of(view, n)
        return network_shape(
            n,
            subnet=held.subnet if held else n.subnet,
            gateway=held.gateway if held else "",
            ingress=ingress,
            services=users,
        )


def _default_ingress() -> Network:
    return Network(id=INGRESS_ID, name=INGRESS_ID, subnet=INGRESS_SUBNET)


_CLASSES: dict[str, type[StoreObject]] = {
    "node": Node,
    "service": Service,
    "task": Task,
    "network": Network,
    "secret": Secret,
    "config": Config,
}


def _name(obj: StoreObject) -> str:
    if isinstance(obj, Node):
        return obj.hostname
    return str(getattr(obj, "name", ""))


def _lookup(view: View, ref: str, kinds: tuple[str, ...]) -> StoreObject | None:
    candidates: list[StoreObject] = [o for k in kinds for o in view.list(_CLASSES[k])]
    if "network" in kinds and ref == INGRESS_ID and view.get(Network, INGRESS_ID) is None:
        candidates.append(_default_ingress())
    for match in (
        lambda o: o.id == ref,
        lambda o: _name(o) == ref,
    ):
        found = [o for o in candidates if match(o)]
        if found:
            return found[0]
    prefixed = [o for o in candidates if o.id.startswith(ref)]
    if len(prefixed) > 1:
        raise ShoalError(f"{ref} is ambiguous ({len(prefixed)} objects match): use a longer id")
    return prefixed[0] if prefixed else None
