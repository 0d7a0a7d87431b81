"""Stacks: `shoal stack deploy|ls|services|ps|rm`, and deploy by topic.

A stack is a label namespace (``com.docker.stack.namespace``) on services, networks, secrets
and configs. A deployment is one transaction: every secret, config and network it needs is
created, every service created or updated (a rolling update where its tasks change), and with
``prune`` the stack's services no longer in the file removed. If anything is wrong nothing
changes. Secrets and configs are immutable, as in Docker: a deployment that would change one's
data is refused.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agent.manager.control.filters import SERVICES, TASKS
from agent.manager.control.networks import with_subnet
from agent.manager.control.secrets import resolve_refs
from agent.manager.control.services import check_spec, check_total
from agent.manager.control.views import ps_order, service_row, task_row
from agent.manager.reconcile.allocator_loop import stored_allocation
from agent.manager.reconcile.updater import start_update
from agent.manager.store import Config, Network, Node, Secret, Service, Store, Task, Tx, View
from agent.model.errors import ShoalError
from agent.model.limits import MAX_OBJECT_BYTES, check_labels
from agent.model.registry import bind
from agent.model.spec import SpecError
from agent.model.stamps import now_text
from certs.identity import new_node_id
from stacks.model import StackSpec
from stacks.services import LABEL_NAMESPACE

__all__ = ["StackAPI", "decode_stack"]


def decode_stack(doc: Any) -> StackSpec:
    if not isinstance(doc, dict):
        raise ShoalError("malformed stack")
    doc = dict(doc)
    try:
        for key in ("secrets", "configs"):
            items = []
            for item in doc.get(key) or []:
                item = dict(item)
                data = item.get("data", "")
                item["data"] = (
                    base64.b64decode(data, validate=True) if isinstance(data, str) else data
                )
                items.append(item)
            doc[key] = items
        return StackSpec.from_dict(doc)
    except (SpecError, binascii.Error, ValueError, TypeError, AttributeError) as exc:
        raise ShoalError(f"malformed stack: {exc}") from None


def _in(stack: str, labels: dict[str, str]) -> bool:
    return labels.get(LABEL_NAMESPACE) == stack


class StackAPI:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.commands: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = bind(self, "stacks")

    async def deploy_command(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.deploy(decode_stack(args.get("stack")), prune=bool(args.get("prune")))

    async def deploy(self, stack: StackSpec, *, prune: bool = False) -> dict[str, Any]:
        specs = [check_spec(s.to_dict()) for s in stack.services]
        _check_items(stack)
        now = self.clock()
        stamp = now_text()
        actions: list[str] = []

        def deploy(tx: Tx) -> None:
            actions.clear()
            _deploy_items(tx, stack, stamp, actions)
            _deploy_networks(tx, stack, stamp, actions)
            _deploy_services(tx, stack, specs, now, stamp, actions, prune=prune)

        await self.store.update(deploy)
        return {"stack": stack.name, "actions": list(actions), "services": [s.name for s in specs]}

    def _stack_services(self, view: View, name: str) -> list[Service]:
        out = [s for s in view.list(Service) if _in(name, s.spec.labels)]
        if not out and not self._other_objects(view, name):
            raise ShoalError(f"nothing found in stack: {name}")
        return out

    def _other_objects(self, view: View, name: str) -> list[Any]:
        kinds: list[Any] = [Secret, Config, Network]
        return [o for cls in kinds for o in view.list(cls) if _in(name, o.labels)]

    async def ls(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        counts: dict[str, int] = {}
        for s in self.store.view().list(Service):
            ns = s.spec.labels.get(LABEL_NAMESPACE)
            if ns:
                counts[ns] = counts.get(ns, 0) + 1
        return [{"name": k, "services": v} for k, v in sorted(counts.items())]

    async def services(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        view = self.store.view()
        nodes = {n.id: n for n in view.list(Node)}
        tasks = view.list(Task)
        ports = stored_allocation(view).ports
        mine = SERVICES.select(
            self._stack_services(view, str(args.get("stack"))), args.get("filters")
        )
        return [
            service_row(s, tasks, nodes, ports.get(s.id, ()))
            for s in sorted(mine, key=lambda s: (s.name, s.id))
        ]

    async def ps(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        TASKS.parse(args.get("filters"))
        view = self.store.view()
        nodes = {n.id: n for n in view.list(Node)}
        mine = {s.id: s for s in self._stack_services(view, str(args.get("stack")))}
        now = self.clock()
        tasks = view.list(Task)
        rows = [  # service by service (by name), each in `service ps` order
            task_row(t, s, nodes, now)
            for s in sorted(mine.values(), key=lambda s: s.name)
            for t in ps_order(t for t in tasks if t.service_id == s.id)
        ]
        return TASKS.select(rows, args.get("filters"))

    async def rm(self, args: dict[str, Any]) -> dict[str, Any]:
        name = str(args.get("stack"))
        removed: list[str] = []

        def remove(tx: Tx) -> None:
            removed.clear()
            services = [s for s in tx.list(Service) if _in(name, s.spec.labels)]
            for s in services:
                tx.delete(Service, s.id)
                removed.append(f"Removing service {s.name}")
            kinds: list[tuple[Any, str]] = [
                (Secret, "secret"),
                (Config, "config"),
                (Network, "network"),
            ]
            for cls, kind in kinds:
                for o in tx.list(cls):
                    if _in(name, o.labels):
                        tx.delete(cls, o.id)
                        removed.append(f"Removing {kind} {o.name}")
            if not removed:
                raise ShoalError(f"nothing found in stack: {name}")

        await self.store.update(remove)
        return {"stack": name, "actions": removed}


def _check_items(stack: StackSpec) -> None:
    """The sizes and labels of a stack's secrets, configs and networks."""
    items: list[Any] = [*stack.secrets, *stack.configs]
    for item in items:
        if len(item.data) > MAX_OBJECT_BYTES:
            raise ShoalError(
                f"{item.name} is {len(item.data):,} bytes; at most {MAX_OBJECT_BYTES:,}"
                " (500 KB) are allowed: split it"
            )
        check_labels(item.labels, f"labels of {item.name}")
    for net in stack.networks:
        check_labels(net.labels, f"labels of network {net.name}")


def _deploy_items(tx: Tx, stack: StackSpec, stamp: str, actions: list[str]) -> None:
    """A deployment's secrets and configs: created when missing, never changed."""
    pairs: list[tuple[Any, Any]] = [(Secret, stack.secrets), (Config, stack.configs)]
    for cls, wanted_items in pairs:
        kind = "secret" if cls is Secret else "config"
        existing: dict[str, Any] = {o.name: o for o in tx.list(cls)}
        for item in wanted_items:
            have = existing.get(item.name)
            if item.external:
                if have is None:
                    raise ShoalError(f"{kind} not found: {item.name} (declared external)")
                continue
            if have is None:
                tx.put(
                    cls(
                        id=new_node_id(),
                        name=item.name,
                        data=item.data,
                        labels=dict(item.labels),
                        created=stamp,
                        updated=stamp,
                    )
                )
                actions.append(f"Creating {kind} {item.name}")
            elif have.data != item.data:
                raise ShoalError(
                    f"failed to update {kind} {item.name}: only updates to labels are"
                    f" allowed; create a {kind} with a new name instead"
                )


def _deploy_networks(tx: Tx, stack: StackSpec, stamp: str, actions: list[str]) -> None:
    """A deployment's networks: created when missing, each with its subnet."""
    networks = {n.name: n for n in tx.list(Network)}
    for net in stack.networks:
        if net.external:
            if net.name not in networks:
                raise ShoalError(f"network {net.name} not found (declared external)")
            continue
        if net.name not in networks:
            subnet = net.ipam.config[0].subnet if net.ipam and net.ipam.config else ""
            network = with_subnet(
                list(networks.values()),
                Network(
                    id=new_node_id(),
                    name=net.name,
                    driver=net.driver,
                    subnet=subnet,
                    attachable=net.attachable,
                    labels=dict(net.labels),
                    created=stamp,
                ),
            )
            networks[network.name] = network
            tx.put(network)
            actions.append(f"Creating network {net.name}")


def _deploy_services(
    tx: Tx,
    stack: StackSpec,
    specs: list[Any],
    now: float,
    stamp: str,
    actions: list[str],
    *,
    prune: bool,
) -> None:
    """A deployment's services: created, updated (a rolling update) or, with `prune`, the
    stack's services it no longer names removed."""
    services = {s.name: s for s in tx.list(Service)}
    for spec in specs:
        wanted = resolve_refs(tx, spec)
        current = services.get(spec.name)
        check_total(tx, current, spec.name, wanted)
        if current is None:
            tx.put(
                Service(
                    id=new_node_id(),
                    name=spec.name,
                    spec=wanted,
                    spec_version=1,
                    created=stamp,
                    updated=stamp,
                )
            )
            actions.append(f"Creating service {spec.name}")
        elif not _in(stack.name, current.spec.labels):
            raise ShoalError(
                f"service {spec.name} exists and does not belong to stack {stack.name}"
            )
        elif wanted != current.spec:
            tx.put(start_update(current, wanted, now, rollback=False))
            actions.append(f"Updating service {spec.name} (id: {current.id})")
    if prune:
        names = {s.name for s in specs}
        for s in services.values():
            if _in(stack.name, s.spec.labels) and s.name not in names:
                tx.delete(Service, s.id)
                actions.append(f"Removing service {s.name}")
