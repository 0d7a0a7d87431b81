"""The control API for services and nodes: what `shoal service ...` and `shoal node ...` ask
the leader. Every request is validated here; a bad one gets an error that says what is wrong
and changes nothing."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agent.manager.control.filters import SERVICES, TASKS
from agent.manager.control.networks import check_networks
from agent.manager.control.secrets import resolve_refs
from agent.manager.control.views import ps_order, service_row, task_row
from agent.manager.reconcile.allocator_loop import stored_allocation
from agent.manager.reconcile.orchestrator import live
from agent.manager.reconcile.scheduler import parse_constraint
from agent.manager.reconcile.updater import start_update
from agent.manager.store import Node, NodeAvailability, Service, Store, Task, Tx, View
from agent.model.errors import ShoalError
from agent.model.limits import (
    check_cluster_tasks,
    check_labels,
    check_replicas,
    check_service_spec,
    desired_tasks,
)
from agent.model.registry import bind
from agent.model.spec import ServiceSpec, SpecError
from agent.model.stamps import now_text
from certs.identity import new_node_id

__all__ = ["ControlAPI"]

_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,62}")
_LABEL_KEY = re.compile(r"[^\s=]{1,255}")

Command = Callable[[dict[str, Any]], Awaitable[Any]]


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise ShoalError(f"{key} is required")
    return value


def check_spec(raw: Any) -> ServiceSpec:
    try:
        spec = ServiceSpec.from_dict(raw)
    except SpecError as exc:
        raise ShoalError(f"invalid service spec: {exc}") from None
    if not _NAME.fullmatch(spec.name):
        raise ShoalError(
            f"invalid service name {spec.name!r}: use letters, digits, '-' and '_' (at most 63,"
            " starting with a letter or digit)"
        )
    check_service_spec(spec)
    for c in spec.task_template.placement.constraints:
        try:
            parse_constraint(c)
        except ValueError as exc:
            raise ShoalError(f"invalid constraint {c!r}: {exc}") from None
    mode = spec.mode
    if mode.kind in ("global", "global-job") and mode.replicas not in (0, 1):
        raise ShoalError("replicas can only be used with replicated or replicated-job mode")
    seen: set[tuple[str, int]] = set()
    for p in spec.endpoint_spec.ports:
        if p.published:
            key = (p.protocol, p.published)
            if key in seen:
                raise ShoalError(f"port {p.published}/{p.protocol} is published twice")
            seen.add(key)
    return spec


def check_total(view: View, current: Service | None, name: str, spec: ServiceSpec) -> None:
    """Refuse a spec that asks for more tasks than before when the cluster's total would pass
    its bound (asking for fewer is always allowed)."""
    nodes = len(view.list(Node))
    wanted = desired_tasks(spec, nodes)
    if current is not None and wanted <= desired_tasks(current.spec, nodes):
        return
    ident = current.id if current is not None else ""
    others = sum(desired_tasks(s.spec, nodes) for s in view.list(Service) if s.id != ident)
    check_cluster_tasks(others, wanted, name)


def find_service(view: View, ref: str) -> Service:
    services = view.list(Service)
    for s in services:
        if s.id == ref or s.name == ref:
            return s
    matches = [s for s in services if s.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ShoalError(f"service {ref} is ambiguous ({len(matches)} matches)")
    raise ShoalError(f"service {ref} not found")


def find_node(view: View, ref: str) -> Node:
    nodes = view.list(Node)
    for n in nodes:
        if n.id == ref:
            return n
    named = [n for n in nodes if n.hostname == ref]
    if len(named) == 1:
        return named[0]
    matches = [n for n in nodes if n.id.startswith(ref)]
    if len(matches) == 1 and not named:
        return matches[0]
    if len(named) > 1 or len(matches) > 1:
        raise ShoalError(f"node {ref} is ambiguous: use its id")
    raise ShoalError(f"node {ref} not found")


class ControlAPI:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.commands: dict[str, Command] = bind(self, "services")

    # services ----------------------------------------------------------------------------
    async def service_create(self, args: dict[str, Any]) -> dict[str, Any]:
        spec = check_spec(args.get("spec"))
        stamp = now_text()
        service = Service(
            id=new_node_id(),
            name=spec.name,
            spec=spec,
            spec_version=1,
            created=stamp,
            updated=stamp,
        )

        def create(tx: Tx) -> None:
            if any(s.name == spec.name for s in tx.list(Service)):
                raise ShoalError(f"service {spec.name} already exists")
            check_networks(tx, spec)
            resolved = resolve_refs(tx, spec)
            check_total(tx, None, spec.name, resolved)
            tx.put(dataclasses.replace(service, spec=resolved))
            tx.answer(answer)

        answer = {"id": service.id, "name": service.name, "spec_version": 1}
        await self.store.update(create)
        return answer

    async def service_ls(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        view = self.store.view()
        nodes = {n.id: n for n in view.list(Node)}
        by_service: dict[str, list[Task]] = {}
        for t in view.list(Task):
            by_service.setdefault(t.service_id, []).append(t)
        ports = stored_allocation(view).ports
        services = SERVICES.select(view.list(Service), args.get("filters"))
        return [
            service_row(s, by_service.get(s.id, ()), nodes, ports.get(s.id, ()))
            for s in sorted(services, key=lambda s: (s.name, s.id))
        ]

    async def service_spec(self, args: dict[str, Any]) -> dict[str, Any]:
        """What `service update` changes and sends back: the stored spec and its version
        (`inspect` shows the service in Docker's shape instead)."""
        s = find_service(self.store.view(), _text(args, "service"))
        spec = s.spec.to_dict()
        return {"id": s.id, "name": s.name, "spec": spec, "spec_version": s.spec_version}

    async def service_ps(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        TASKS.parse(args.get("filters"))
        view = self.store.view()
        s = find_service(view, _text(args, "service"))
        nodes = {n.id: n for n in view.list(Node)}
        now = self.clock()
        tasks = [t for t in view.list(Task) if t.service_id == s.id]
        if args.get("running_only"):
            tasks = [t for t in tasks if live(t)]
        rows = [task_row(t, s, nodes, now) for t in ps_order(tasks)]
        return TASKS.select(rows, args.get("filters"))

    async def task_ls(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        view = self.store.view()
        services = {s.id: s for s in view.list(Service)}
        nodes = {n.id: n for n in view.list(Node)}
        now = self.clock()
        return [task_row(t, services.get(t.service_id), nodes, now) for t in view.list(Task)]

    async def service_update(self, args: dict[str, Any]) -> dict[str, Any]:
        ref = _text(args, "service")
        spec = check_spec(args.get("spec"))
        expected = args.get("version")
        now = self.clock()
        result: dict[str, Any] = {}

        def update(tx: Tx) -> None:
            current = find_service(tx, ref)
            if isinstance(expected, int) and expected != current.spec_version:
                raise ShoalError(
                    f"update out of sequence: service {current.name} changed meanwhile (try again)"
                )
            if spec.name != current.name:
                raise ShoalError("a service cannot be renamed")
            check_networks(tx, spec)
            wanted = resolve_refs(tx, spec)
            check_total(tx, current, current.name, wanted)
            if wanted == current.spec:
                result.update(id=current.id, changed=False, spec_version=current.spec_version)
                return
            new = start_update(current, wanted, now, rollback=False)
            if not _tasks_change(current.spec, new.spec):
                new = dataclasses.replace(new, update_status=current.update_status)
            tx.put(new)
            result.update(id=new.id, changed=True, spec_version=new.spec_version)

        await self.store.update(update)
        return result

    async def service_rollback(self, args: dict[str, Any]) -> dict[str, Any]:
        ref = _text(args, "service")
        now = self.clock()
        result: dict[str, Any] = {}

        def rollback(tx: Tx) -> None:
            current = find_service(tx, ref)
            if current.previous_spec is None:
                raise ShoalError(f"service {current.name} has no previous spec to roll back to")
            new = start_update(current, current.previous_spec, now, rollback=True)
            tx.put(new)
            result.update(id=new.id, spec_version=new.spec_version)

        await self.store.update(rollback)
        return result

    async def service_scale(self, args: dict[str, Any]) -> dict[str, Any]:
        ref = _text(args, "service")
        replicas = args.get("replicas")
        if type(replicas) is not int or replicas < 0:
            raise ShoalError("replicas must be a whole number >= 0")
        check_replicas(replicas)
        stamp = now_text()
        result: dict[str, Any] = {}

        def scale(tx: Tx) -> None:
            current = find_service(tx, ref)
            mode = current.spec.mode
            if mode.kind not in ("replicated", "replicated-job"):
                raise ShoalError(
                    f"{current.name}: scale can only be used with replicated or replicated-job mode"
                )
            spec = dataclasses.replace(
                current.spec, mode=dataclasses.replace(mode, replicas=replicas)
            )
            check_total(tx, current, current.name, spec)
            tx.put(
                dataclasses.replace(
                    current,
                    spec=spec,
                    spec_version=current.spec_version + 1,
                    updated=stamp,
                )
            )
            result.update(id=current.id, name=current.name, spec_version=current.spec_version + 1)

        await self.store.update(scale)
        return result

    async def service_rm(self, args: dict[str, Any]) -> dict[str, Any]:
        ref = _text(args, "service")
        result: dict[str, Any] = {}

        def remove(tx: Tx) -> None:
            current = find_service(tx, ref)
            tx.delete(Service, current.id)
            result.update(id=current.id, name=current.name)

        await self.store.update(remove)
        return result

    # nodes -------------------------------------------------------------------------------
    async def node_ps(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        TASKS.parse(args.get("filters"))
        view = self.store.view()
        n = find_node(view, _text(args, "node"))
        services = {s.id: s for s in view.list(Service)}
        nodes = {x.id: x for x in view.list(Node)}
        now = self.clock()
        tasks = [t for t in view.list(Task) if t.node_id == n.id]
        rows = [task_row(t, services.get(t.service_id), nodes, now) for t in ps_order(tasks)]
        return TASKS.select(rows, args.get("filters"))

    async def node_update(self, args: dict[str, Any]) -> dict[str, Any]:
        ref = _text(args, "node")
        availability = args.get("availability")
        if availability is not None and availability not in tuple(NodeAvailability):
            raise ShoalError(f"invalid availability {availability!r}: use active, pause or drain")
        add = args.get("label_add") or {}
        rm = args.get("label_rm") or []
        if not isinstance(add, dict) or not isinstance(rm, list):
            raise ShoalError("malformed label changes")
        for key in [*add, *rm]:
            if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
                raise ShoalError(f"invalid label key {key!r}")
        for value in add.values():
            if not isinstance(value, str) or len(value) > 4096:
                raise ShoalError("label values must be text")
        stamp = now_text()
        result: dict[str, Any] = {}

        def update(tx: Tx) -> None:
            n = find_node(tx, ref)
            labels = dict(n.labels)
            for key in rm:
                if key not in labels:
                    raise ShoalError(f"node {n.hostname} has no label {key!r}")
                del labels[key]
            labels.update(add)
            check_labels(labels, f"labels of node {n.hostname}")
            new = dataclasses.replace(
                n,
                labels=labels,
                availability=NodeAvailability(availability) if availability else n.availability,
                updated=stamp,
            )
            if new != n:
                tx.put(new)
            result.update(id=n.id)

        await self.store.update(update)
        return result


def _tasks_change(old: ServiceSpec, new: ServiceSpec) -> bool:
    """Whether a spec change reaches the tasks (replicas alone do not)."""
    return old.task_template != new.task_template or old.endpoint_spec != new.endpoint_spec
