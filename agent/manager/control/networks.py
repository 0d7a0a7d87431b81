"""Networks: `shoal network create|ls|inspect|rm`, and the check that services name networks
that exist. A network gets its subnet when it is created (the one asked for, or the next free
/24 of 10.0.0.0/8, as the allocator hands them out); a subnet that overlaps another network's
is refused."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from typing import Any

from agent.manager.control.filters import NETWORKS
from agent.manager.reconcile.allocator import INGRESS_ID, INGRESS_SUBNET, allocate
from agent.manager.store import Network, Service, Store, Tx, View
from agent.model.errors import ShoalError
from agent.model.limits import check_labels
from agent.model.registry import bind
from agent.model.spec import ServiceSpec
from agent.model.stamps import now_text
from certs.identity import new_node_id

__all__ = ["NetworksAPI", "check_networks", "with_subnet"]

_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,63}")


def find_network(view: View, ref: str) -> Network:
    items = view.list(Network)
    for n in items:
        if n.id == ref or n.name == ref:
            return n
    matches = [n for n in items if n.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    raise ShoalError(f"network {ref} not found")


def check_networks(view: View, spec: ServiceSpec) -> None:
    """Refuse a spec that names a network the swarm does not have."""
    for attachment in spec.task_template.networks:
        if attachment.target in (INGRESS_ID, "ingress") or (
            find_network(view, attachment.target).id == INGRESS_ID
        ):
            raise ShoalError("the ingress network is for published ports; services cannot name it")


def with_subnet(existing: list[Network], network: Network) -> Network:
    """``network`` with its subnet: as asked (if it overlaps nothing) or the next free one."""
    result = allocate(None, [*existing, network], [], [])
    problems = result.errors.get(network.id)
    if problems:
        raise ShoalError("; ".join(problems))
    subnet = result.networks.get(network.id)
    if subnet is None:
        raise ShoalError(f"network {network.name}: no subnet could be given")
    return dataclasses.replace(network, subnet=subnet.subnet)


def users_of(view: View, network: Network) -> list[str]:
    out = []
    for s in view.list(Service):
        for a in s.spec.task_template.networks:
            if a.target in (network.id, network.name):
                out.append(s.name)
                break
    return sorted(out)


def _publishing(view: View) -> list[str]:
    """Services that publish a port in ingress mode (they hold the ingress network)."""
    out = []
    for s in view.list(Service):
        if any(p.publish_mode == "ingress" for p in s.spec.endpoint_spec.ports):
            out.append(s.name)
    return sorted(out)


def _ingress_name(view: View) -> str | None:
    held = view.get(Network, INGRESS_ID)
    return held.name if held is not None else None


class NetworksAPI:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.commands: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = bind(
            self, "networks"
        )

    async def create(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("name")
        ingress = bool(args.get("ingress"))
        if (
            not isinstance(name, str)
            or not _NAME.fullmatch(name)
            or (name == "ingress" and not ingress)
        ):
            raise ShoalError(
                f"invalid network name {name!r}: use letters, digits, '-', '_' and '.' (at most"
                " 64, starting with a letter or digit; 'ingress' is taken)"
            )
        driver = args.get("driver") or "overlay"
        if driver != "overlay":
            raise ShoalError(f"network driver {driver!r} is not supported: use overlay")
        subnet = args.get("subnet") or ""
        labels = args.get("labels") or {}
        if not isinstance(subnet, str) or not isinstance(labels, dict):
            raise ShoalError("malformed network request")
        check_labels({str(k): str(v) for k, v in labels.items()}, f"labels of network {name}")
        stamp = now_text()
        wanted = Network(
            id=INGRESS_ID if ingress else new_node_id(),
            name=name,
            driver=driver,
            subnet=subnet,
            attachable=bool(args.get("attachable")),
            labels={str(k): str(v) for k, v in labels.items()},
            created=stamp,
        )
        result: dict[str, Any] = {}

        def put(tx: Tx) -> None:
            existing = tx.list(Network)
            if any(n.name == name for n in existing):
                raise ShoalError(f"network with name {name} already exists")
            if ingress:
                if any(n.id == INGRESS_ID for n in existing):
                    raise ShoalError(
                        "an ingress network exists already: remove it first (network rm ingress)"
                    )
                publishing = _publishing(tx)
                if publishing:
                    raise ShoalError(
                        "the ingress network cannot change while services publish ports in"
                        f" ingress mode: {', '.join(publishing)}"
                    )
            network = with_subnet(existing, wanted)
            tx.put(network)
            result.update(id=network.id, name=name, subnet=network.subnet)
            tx.answer(dict(result))

        await self.store.update(put)
        return result

    async def ls(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        view = self.store.view()
        networks = [*view.list(Network)]
        if view.get(Network, INGRESS_ID) is None:  # the default routing mesh network
            networks.append(Network(id=INGRESS_ID, name=INGRESS_ID, subnet=INGRESS_SUBNET))
        chosen = NETWORKS.select(networks, args.get("filters"))
        return [self._row(view, n) for n in sorted(chosen, key=lambda n: (n.name, n.id))]

    def _row(self, view: View, n: Network) -> dict[str, Any]:
        return {
            "id": n.id,
            "name": n.name,
            "driver": n.driver,
            "scope": "swarm",
            "subnet": n.subnet,
            "attachable": n.attachable,
            "labels": dict(n.labels),
            "created": n.created,
            "ingress": n.id == INGRESS_ID,
            "services": _publishing(view) if n.id == INGRESS_ID else users_of(view, n),
        }

    async def rm(self, args: dict[str, Any]) -> dict[str, Any]:
        ref = str(args.get("ref", ""))
        result: dict[str, Any] = {}

        def remove(tx: Tx) -> None:
            if ref == INGRESS_ID or ref == (_ingress_name(tx)):
                publishing = _publishing(tx)
                if publishing:
                    raise ShoalError(
                        "network ingress is in use by the following service(s): "
                        + ", ".join(publishing)
                    )
                if tx.get(Network, INGRESS_ID) is None:
                    raise ShoalError("the ingress network is the default one: nothing to remove")
                tx.delete(Network, INGRESS_ID)
                result.update(id=INGRESS_ID, name=ref)
                return
            n = find_network(tx, ref)
            users = users_of(tx, n)
            if users:
                raise ShoalError(
                    f"network {n.name} is in use by the following service(s): {', '.join(users)}"
                )
            tx.delete(Network, n.id)
            result.update(id=n.id, name=n.name)

        await self.store.update(remove)
        return result
